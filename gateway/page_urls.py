"""The gateway's pages (keys, aliases, usage); included at the site root by gateway.urls."""

from django.urls import path

from gateway import pages

urlpatterns = [
    path("gateway/keys/", pages.keys, name="gateway_keys"),
    path("gateway/keys/<int:pk>/edit/", pages.key_edit, name="gateway_key_edit"),
    path("gateway/keys/<int:pk>/revoke/", pages.key_revoke, name="gateway_key_revoke"),
    path("gateway/aliases/", pages.aliases, name="gateway_aliases"),
    path("gateway/aliases/new/", pages.alias_form, name="gateway_alias_new"),
    path("gateway/aliases/<int:pk>/edit/", pages.alias_form, name="gateway_alias_edit"),
    path("gateway/aliases/<int:pk>/delete/", pages.alias_delete, name="gateway_alias_delete"),
    path("gateway/usage/", pages.usage, name="gateway_usage"),
]
