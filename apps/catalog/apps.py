from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "apps.catalog"
    label = "catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.catalog import availability_cache
        from apps.catalog.models import Location, ProductComponent
        from apps.catalog.signals import products_changed, stock_changed

        stock_changed.connect(availability_cache.on_stock_changed, dispatch_uid="availability_cache_stock")
        products_changed.connect(
            availability_cache.on_configuration_changed, dispatch_uid="availability_cache_products"
        )
        # Anything else a listing's quantity depends on: the locations a channel sells from, their
        # validity, the channel's and the listing's settings, the product's make-up.
        watched = [Location, ProductComponent]
        try:
            from apps.channels.models import Channel, ChannelLocation, Listing

            watched += [Channel, ChannelLocation]
            for signal in (post_save, post_delete):
                signal.connect(
                    availability_cache.on_listing_changed,
                    sender=Listing,
                    dispatch_uid=f"availability_cache_{signal is post_save}_Listing",
                )
        except ImportError:  # pragma: no cover - the channels app is part of every deployment
            pass
        for model in watched:
            for signal in (post_save, post_delete):
                signal.connect(
                    availability_cache.on_configuration_changed,
                    sender=model,
                    dispatch_uid=f"availability_cache_{signal is post_save}_{model.__name__}",
                )
