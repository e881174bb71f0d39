from django.urls import path

from apps.orders.api.serializers import ExchangeSerializer, LinesSerializer
from apps.orders.api.views import AvailabilityView, EventCreateView, OrderCreateView, OrderDetailView, action_view
from apps.orders.api.webhooks import PlatformWebhookView

urlpatterns = [
    path("availability/", AvailabilityView.as_view(), name="availability"),
    path("orders/", OrderCreateView.as_view(), name="order-list"),
    path("orders/<int:pk>/", OrderDetailView.as_view(), name="order-detail"),
    path("orders/<int:pk>/confirm/", action_view("confirm"), name="order-confirm"),
    path("orders/<int:pk>/cancel/", action_view("cancel"), name="order-cancel"),
    path("orders/<int:pk>/fulfil/", action_view("fulfil", LinesSerializer), name="order-fulfil"),
    path("orders/<int:pk>/return/", action_view("return", LinesSerializer), name="order-return"),
    path("orders/<int:pk>/exchange/", action_view("exchange", ExchangeSerializer), name="order-exchange"),
    path("events/", EventCreateView.as_view(), name="order-event"),
    path(
        "channels/<str:code>/webhooks/<str:connector>/", PlatformWebhookView.as_view(), name="channel-platform-webhook"
    ),
]
