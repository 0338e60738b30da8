"""The gateway's /v1/ URLs, served by gateway.asgi without the console's middleware."""

from django.urls import path

from gateway import otlp, views

urlpatterns = [
    path("v1/models", views.models, name="gateway_models"),
    path("v1/models/<path:model>", views.models, name="gateway_model"),
    path("v1/chat/completions", views.chat_completions, name="gateway_chat"),
    path("v1/responses", views.responses, name="gateway_responses"),
    # OTLP/HTTP (gateway.otlp)
    path("v1/traces", otlp.traces, name="otlp_traces"),
    path("v1/metrics", otlp.metrics, name="otlp_metrics"),
]
