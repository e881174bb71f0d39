from rest_framework.routers import SimpleRouter

from apps.channels.api.views import ChannelViewSet, ListingViewSet

router = SimpleRouter()
router.register("channels", ChannelViewSet, basename="channel")
router.register("listings", ListingViewSet, basename="listing")

urlpatterns = router.urls
