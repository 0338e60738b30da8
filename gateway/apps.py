from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # the gateway's management endpoints join console's API (console never imports it)
        from console.api import api
        from gateway.api import router

        if router not in [r for _, r in api._routers]:
            api.add_router("/", router)
