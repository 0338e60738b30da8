from django.apps import AppConfig


class TracesConfig(AppConfig):
    name = "traces"
    verbose_name = "Traces"

    def ready(self) -> None:
        # the traces API joins console's (console never imports traces)
        from console.api import api
        from traces.api import router

        if router not in [r for _, r in api._routers]:
            api.add_router("/", router)
