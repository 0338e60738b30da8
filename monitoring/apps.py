from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # monitoring adds its endpoints to console's API (console never imports monitoring)
        from console.api import api
        from monitoring.api import router

        if router not in [r for _, r in api._routers]:
            api.add_router("/", router)
