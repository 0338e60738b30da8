"""The overview's first-run checklist: backend → model → agent → tool → alert channel.

Each app adds its own steps (settings.TANGLAW_FIRST_RUN_STEPS names one function per
app, called with the request), so the console never imports the apps built on it.
The checklist shows until every step is done.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from django.utils.module_loading import import_string

from console.models import Backend


@dataclass(frozen=True)
class Step:
    title: str
    done: bool
    href: str  # where to do it (or, when done, to see it)
    action: str  # the link's words
    detail: str = ""


def console_steps(request) -> list[Step]:
    backends = list(Backend.objects.values_list("model_count", flat=True))
    with_models = sum(1 for n in backends if n)
    return [
        Step("Register a backend", bool(backends), reverse("backend_discover")
             if not backends else reverse("backend_list"),
             "Discover" if not backends else "Backends",
             f"{len(backends)} registered" if backends
             else "an engine on this machine or one you reach by URL"),
        Step("Have a model on it", bool(with_models), reverse("fleet_models"),
             "Models", "then press Chat on it to talk to it right away" if with_models
             else "pull or load one on the backend's models page"),
    ]


def checklist(request) -> list[Step]:
    steps: list[Step] = []
    for path in settings.TANGLAW_FIRST_RUN_STEPS:
        steps.extend(import_string(path)(request))
    return steps
