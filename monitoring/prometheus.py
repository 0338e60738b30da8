"""`/metrics`: Prometheus text for Grafana users (bearer token, or from this machine only).

Gauges read the newest samples; counters and histograms are computed from the
runs table, which is never pruned, so they only ever grow as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from agents.choices import RunOutcome
from agents.models import Run
from console.actions.users import user_for_token
from console.clientaddr import came_through_proxy, client_ip
from console.models import Backend
from monitoring import queries, store
from monitoring.choices import AlertState
from monitoring.models import Alert

LATENCY_EDGES_MS = [100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000]
# Prometheus names: base units spelled out (promtool's lint refuses _ms, _s, …)
EXPOSED = {"net_sent_bytes_per_s": "net_sent_bytes_per_second",
           "net_recv_bytes_per_s": "net_recv_bytes_per_second",
           "gpu_temperature_c": "gpu_temperature_celsius", "gpu_power_w": "gpu_power_watts",
           "gpu_power_limit_w": "gpu_power_limit_watts"}
LOOPBACK = {"127.0.0.1", "::1"}
ENGINE = ("engine_requests_running", "engine_requests_waiting", "engine_kv_cache_usage",
          "engine_loaded_models", "engine_vram_bytes")


class Collector:
    def collect(self):
        backends = list(Backend.objects.all())
        names = {b.pk: b.name for b in backends}
        up = GaugeMetricFamily("tanglaw_backend_up", "1 unless the last probe found the "
                               "backend unhealthy", labels=["backend", "kind"])
        latency = GaugeMetricFamily("tanglaw_probe_latency_seconds", "health probe latency",
                                    labels=["backend"])
        for b in backends:
            up.add_metric([b.name, b.kind], 0.0 if b.status == "unhealthy" else 1.0)
            if b.latency_ms is not None:
                latency.add_metric([b.name], b.latency_ms / 1000)
        yield up
        yield latency

        since = timezone.now() - timedelta(minutes=10)
        wanted = [(m, f"backend:{b.pk}") for b in backends for m in ENGINE] + [
            (m, "host") for m in queries.HOST_METRICS]
        gpu = queries.gpu_state()
        wanted += [(m, f"gpu:{d['index']}") for d in gpu.get("devices", [])
                   for m in queries.GPU_METRICS]
        latest = store.latest_many(wanted, since)
        for metric in ENGINE:
            family = GaugeMetricFamily(f"tanglaw_{metric}", f"{metric} from the engine",
                                       labels=["backend"])
            for b in backends:
                if (metric, f"backend:{b.pk}") in latest:
                    family.add_metric([b.name], latest[(metric, f"backend:{b.pk}")])
            yield family
        for metric in queries.HOST_METRICS:
            if (metric, "host") in latest:
                yield GaugeMetricFamily(f"tanglaw_host_{EXPOSED.get(metric, metric)}",
                                        f"host {metric}", value=latest[(metric, "host")])
        for metric in queries.GPU_METRICS:
            family = GaugeMetricFamily(f"tanglaw_{EXPOSED.get(metric, metric)}", metric,
                                       labels=["gpu", "name"])
            for d in gpu.get("devices", []):
                key = (metric, f"gpu:{d['index']}")
                if key in latest:
                    family.add_metric([str(d["index"]), d["name"]], latest[key])
            yield family

        edges = {f"le_{e}": Count("pk", filter=Q(total_ms__lte=e)) for e in LATENCY_EDGES_MS}
        rows = Run.objects.values("backend_id").annotate(
            n=Count("pk"), errors=Count("pk", filter=Q(outcome=RunOutcome.ERROR)),
            tokens=Sum("tokens_out"), total=Sum("total_ms"),
            timed=Count("pk", filter=Q(total_ms__isnull=False)), **edges)
        requests = CounterMetricFamily("tanglaw_requests", "chat turns", labels=["backend"])
        errors = CounterMetricFamily("tanglaw_errors", "chat turns that failed",
                                     labels=["backend"])
        tokens = CounterMetricFamily("tanglaw_tokens_out", "tokens generated",
                                     labels=["backend"])
        histogram = HistogramMetricFamily("tanglaw_turn_latency_seconds",
                                          "whole-turn latency", labels=["backend"])
        for typed_row in rows:
            # the bucket columns are named at run time (le_<edge>): read the row as a map
            row: Mapping[str, Any] = typed_row
            label = [names.get(row["backend_id"], "none")]
            requests.add_metric(label, row["n"])
            errors.add_metric(label, row["errors"])
            tokens.add_metric(label, row["tokens"] or 0)
            buckets = [(f"{e / 1000:g}", row[f"le_{e}"]) for e in LATENCY_EDGES_MS]
            buckets.append(("+Inf", row["timed"]))
            histogram.add_metric(label, buckets, sum_value=(row["total"] or 0.0) / 1000)
        yield requests
        yield errors
        yield tokens
        yield histogram
        yield GaugeMetricFamily("tanglaw_alerts_firing", "alerts firing now",
                                value=Alert.objects.filter(state=AlertState.FIRING).count())


def _allowed(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return user_for_token(header[7:].strip()) is not None
    return client_ip(request) in LOOPBACK and not came_through_proxy(request)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("/metrics needs a bearer token (API tokens page) unless scraped "
                            "from this machine\n", status=401, content_type="text/plain")
    registry = CollectorRegistry()
    registry.register(Collector())
    return HttpResponse(generate_latest(registry),
                        content_type="text/plain; version=0.0.4; charset=utf-8")
