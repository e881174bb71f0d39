from django.urls import include, path
from rest_framework.routers import SimpleRouter

from apps.catalog.api import views

router = SimpleRouter()
router.register("locations", views.LocationViewSet, basename="location")
router.register("items", views.ItemViewSet, basename="item")
router.register("products", views.ProductViewSet, basename="product")
router.register("stock/movements", views.MovementViewSet, basename="movement")
router.register("stock/levels", views.StockLevelViewSet, basename="stock-level")

urlpatterns = [path("", include(router.urls))]
