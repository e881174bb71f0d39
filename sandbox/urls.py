"""Local runs and tests: the product's URLs and the demo's storefront (docs/stream.md). Never in production."""

from django.urls import path

from inventory_site.urls import urlpatterns as product_urlpatterns
from sandbox.demo.storefront import storefront_page, storefront_stream

urlpatterns = [
    path("demo/storefront/", storefront_page, name="demo-storefront"),
    path("demo/storefront/stream/", storefront_stream, name="demo-storefront-stream"),
    *product_urlpatterns,
]
