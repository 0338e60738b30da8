from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # agents adds its endpoints to console's API (console never imports agents)
        from agents.api import router
        from console.api import api

        if router not in [r for _, r in api._routers]:
            api.add_router("/", router)
