from django.apps import AppConfig


class EnginesConfig(AppConfig):
    name = "engines"
    verbose_name = "Managed engines"

    def ready(self) -> None:
        # the engines API joins console's (console never imports engines)
        from console.api import api
        from engines.api import router

        if router not in [r for _, r in api._routers]:
            api.add_router("/", router)
