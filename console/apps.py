from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Tanglaw console"

    def ready(self) -> None:
        from console.actions import security  # noqa: F401 - connects the auth signals
