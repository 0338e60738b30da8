"""The monitor against the real llama.cpp server: healthy with latency and engine metrics,
and a chat through an agent shows up in the backend's TTFT and tokens/s series."""

import pytest

from console.models import Backend
from monitoring.collectors.gpu import GpuCollector
from monitoring.models import Sample
from monitoring.worker import Monitor
from tests.support.fake_nvml import FakeNvml

pytestmark = [pytest.mark.engine, pytest.mark.django_db]


def test_probe_and_traffic_from_the_real_engine(llama_server, operator_client):
    backend = Backend.objects.create(name="llama", kind="llamacpp", base_url=llama_server.url,
                                     read_timeout_s=60)
    monitor = Monitor(gpu=GpuCollector(FakeNvml(driver=False)), worker="w",
                      fixed_probe_interval=30)
    [result] = monitor.probe()
    assert result.report.status == "healthy" and result.engine_error == ""
    backend.refresh_from_db()
    assert backend.status == "healthy" and backend.latency_ms > 0
    scope = f"backend:{backend.pk}"
    metrics = set(Sample.objects.filter(scope=scope).values_list("metric", flat=True))
    assert {"backend_up", "probe_latency_ms", "models_loaded", "engine_requests_running",
            "engine_requests_waiting"} <= metrics

    agent = operator_client.post("/api/agents", data={
        "name": "tiny", "backend_id": backend.pk, "model": "tiny", "max_tokens": 16},
        content_type="application/json").json()
    reply = operator_client.post(f"/api/agents/{agent['id']}/chat", data={"message": "hello"},
                                 content_type="application/json").json()
    assert reply["metrics"]["tokens_out"] > 0
    assert monitor.traffic() == 1
    for metric in ("ttft_ms", "tokens_per_s"):
        series = operator_client.get(f"/api/metrics/series?metric={metric}"
                                     f"&backend={backend.pk}&window=1h").json()
        assert len(series["points"]) == 1 and series["points"][0][1] > 0, metric
    health = operator_client.get("/api/health").json()
    assert health["backends"][0]["tokens_per_s_1h"] > 0
