from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    verbose_name = "Datasets and evaluations"

    def ready(self) -> None:
        # the datasets API joins console's (console never imports evals)
        from console.api import api
        from evals.api import router

        if router not in [r for _, r in api._routers]:
            api.add_router("/", router)
