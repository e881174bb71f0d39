"""Staff web pages under /staff/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from apps.staff import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="staff-login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="staff-login"), name="staff-logout"),
    path("", views.dashboard, name="staff-dashboard"),
    path("safety-stock/", views.safety_stock, name="staff-safety-stock"),
    path("safety-stock/<str:sku>/<slug:location>/history/", views.safety_history, name="staff-safety-history"),
    path("items/<str:sku>/", views.item_detail, name="staff-item"),
]
