"""Span kinds and statuses as OTLP names them, with the colour each shows in the UI."""

from django.db import models


class SpanKind(models.TextChoices):
    INTERNAL = "internal", "internal"
    SERVER = "server", "server"
    CLIENT = "client", "client"
    PRODUCER = "producer", "producer"
    CONSUMER = "consumer", "consumer"


class SpanStatus(models.TextChoices):
    UNSET = "unset", "unset"
    OK = "ok", "ok"
    ERROR = "error", "error"


STATUS_COLOURS = {SpanStatus.UNSET: "muted", SpanStatus.OK: "ok", SpanStatus.ERROR: "bad"}

# OTLP's enum numbers (opentelemetry.proto.trace.v1.Span.SpanKind, Status.StatusCode)
KIND_BY_NUMBER = {0: SpanKind.INTERNAL, 1: SpanKind.INTERNAL, 2: SpanKind.SERVER,
                  3: SpanKind.CLIENT, 4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}
STATUS_BY_NUMBER = {0: SpanStatus.UNSET, 1: SpanStatus.OK, 2: SpanStatus.ERROR}
