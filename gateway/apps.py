from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        # the gateway's management endpoints join console's API (console never imports it)
        from console.api import api
        from gateway.api import router
        from gateway.maf_api import router as maf_router

        attached = [r for _, r in api._routers]
        for each in (router, maf_router):
            if each not in attached:
                api.add_router("/", each)
