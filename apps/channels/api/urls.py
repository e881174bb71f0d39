from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.channels.api.views import ChannelViewSet, ListingViewSet
from apps.channels.stream.views import AvailabilityStreamView

router = SimpleRouter()
router.register("channels", ChannelViewSet, basename="channel")
router.register("listings", ListingViewSet, basename="listing")

urlpatterns = [
    # Async (docs/stream.md): served on the event loop of the web process's ASGI application.
    path("availability/stream/", AvailabilityStreamView.as_view(), name="availability-stream"),
    *router.urls,
]
