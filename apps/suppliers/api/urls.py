from django.urls import include, path
from rest_framework.routers import SimpleRouter

from apps.suppliers.api import views

router = SimpleRouter()
router.register("suppliers", views.SupplierViewSet, basename="supplier")
router.register("supplier-products", views.SupplierProductViewSet, basename="supplier-product")
router.register("feed-runs", views.FeedRunViewSet, basename="feed-run")

urlpatterns = [
    path("suppliers/<str:code>/webhook/", views.SupplierWebhookView.as_view(), name="supplier-webhook"),
    path("", include(router.urls)),
]
