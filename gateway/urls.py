from django.urls import include, path

from gateway import views

urlpatterns = [
    path("v1/models", views.models, name="gateway_models"),
    path("v1/models/<path:model>", views.models, name="gateway_model"),
    path("v1/chat/completions", views.chat_completions, name="gateway_chat"),
    path("v1/responses", views.responses, name="gateway_responses"),
    # MAF declarative agents: export and import (gateway.maf)
    path("", include("gateway.maf_urls")),
]
