"""The kinds of engine Tanglaw can run, what an operator wants of one, and what the
supervisor last saw (with the colour each state shows)."""

from django.db import models


class EngineKind(models.TextChoices):
    # the same values as console's BackendKind: a managed engine registers a backend
    LLAMACPP = "llamacpp", "llama.cpp server"
    VLLM = "vllm", "vLLM"


class Desired(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class EngineState(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    QUEUED = "queued", "Waiting for a monitor"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    BACKOFF = "backoff", "Restarting soon"
    FAILED = "failed", "Failed"


STATE_COLOURS: dict[str, str] = {
    EngineState.STOPPED: "grey",
    EngineState.QUEUED: "grey",
    EngineState.STARTING: "amber",
    EngineState.RUNNING: "green",
    EngineState.STOPPING: "amber",
    EngineState.BACKOFF: "amber",
    EngineState.FAILED: "red",
}
