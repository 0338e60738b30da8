"""Managed engines in the Django admin: browse only (changes go through engines.actions,
from the Engines page, the API or the site config, so each is validated and audited)."""

from django.contrib import admin

from console.admin import ReadOnlyAdmin as ReadOnly
from engines.models import EngineEvent, ManagedEngine


@admin.register(ManagedEngine)
class ManagedEngineAdmin(ReadOnly):
    list_display = ["name", "kind", "desired", "state", "pid", "restarts", "last_exit_code",
                    "port", "backend"]
    list_filter = ["kind", "state", "desired"]
    search_fields = ["name", "model_path"]


@admin.register(EngineEvent)
class EngineEventAdmin(ReadOnly):
    list_display = ["at", "engine", "state", "pid", "exit_code", "detail"]
    list_filter = ["state"]
