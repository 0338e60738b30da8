from django.urls import include, path

from gateway import v1_urls

urlpatterns = [
    # /v1/ is served by gateway.asgi (no middleware); listed here too so reverse()
    # and a plain Django test client find it
    *v1_urls.urlpatterns,
    # MAF declarative agents: export and import (gateway.maf)
    path("", include("gateway.maf_urls")),
    # keys, aliases and usage (gateway.pages)
    path("", include("gateway.page_urls")),
]
