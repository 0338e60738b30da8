"""The monitor's steps called directly: probes, status rows and uptime, claims, traffic."""

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from agents.models import Agent, Conversation, Run
from console.models import Backend, BackendStatusChange
from monitoring import queries
from monitoring.collectors.gpu import GpuCollector
from monitoring.models import Heartbeat, Lease, Sample
from monitoring.worker import Monitor
from tests.support.fake_nvml import FakeNvml
from tests.support.llama_server import free_port

pytestmark = pytest.mark.django_db


def monitor(name="w1", nvml=None):
    return Monitor(gpu=GpuCollector(nvml or FakeNvml(driver=False)), worker=name,
                   fixed_probe_interval=30)


def latest(metric, scope):
    return Sample.objects.filter(metric=metric, scope=scope).order_by("-ts").first().value


def test_probes_set_status_rows_samples_and_engine_metrics(fake):
    vllm = fake("vllm")
    loading = fake("llamacpp", loading_polls=1)
    ollama = fake("ollama")
    a = Backend.objects.create(name="vllm", kind="vllm", base_url=vllm.url)
    b = Backend.objects.create(name="llama", kind="llamacpp", base_url=loading.url)
    c = Backend.objects.create(name="ollama", kind="ollama", base_url=ollama.url)
    d = Backend.objects.create(name="gone", kind="ollama",
                               base_url=f"http://127.0.0.1:{free_port()}")
    Backend.objects.create(name="off", kind="vllm", base_url=vllm.url, enabled=False)
    results = monitor().probe()
    assert len(results) == 4  # disabled backends are not probed
    statuses = dict(Backend.objects.values_list("name", "status"))
    assert statuses == {"vllm": "healthy", "llama": "degraded", "ollama": "healthy",
                        "gone": "unhealthy", "off": "unknown"}
    assert "connection refused" in Backend.objects.get(pk=d.pk).status_reason
    assert latest("backend_up", f"backend:{d.pk}") == 0.0
    assert latest("backend_up", f"backend:{a.pk}") == 1.0
    assert latest("probe_latency_ms", f"backend:{a.pk}") > 0
    assert latest("engine_requests_waiting", f"backend:{a.pk}") == 7.0
    assert latest("engine_requests_running", f"backend:{a.pk}") == 3.0
    assert latest("engine_vram_bytes", f"backend:{c.pk}") > 0
    assert not any("/v1/chat" in r["path"] for r in vllm.requests)  # never a completion

    monitor().probe()  # llama-server finished loading
    assert Backend.objects.get(pk=b.pk).status == "healthy"
    assert list(BackendStatusChange.objects.filter(backend=b).order_by("ts").values_list(
        "previous", "status")) == [("unknown", "degraded"), ("degraded", "healthy")]
    assert latest("engine_requests_waiting", f"backend:{b.pk}") == 4.0


def test_uptime_comes_from_status_change_rows():
    backend = Backend.objects.create(name="b", kind="vllm", base_url="http://10.0.0.1:8000")
    now = timezone.now()
    for hours_ago, previous, status in ((30, "unknown", "healthy"), (6, "healthy", "unhealthy"),
                                        (3, "unhealthy", "healthy")):
        row = BackendStatusChange.objects.create(backend=backend, previous=previous,
                                                 status=status)
        BackendStatusChange.objects.filter(pk=row.pk).update(ts=now - timedelta(hours=hours_ago))
    assert queries.uptime([backend.pk], timedelta(hours=24))[backend.pk] == pytest.approx(
        87.5, abs=0.1)  # down 3 h of 24
    fresh = Backend.objects.create(name="new", kind="vllm", base_url="http://10.0.0.2:8000")
    assert queries.uptime([fresh.pk], timedelta(hours=24))[fresh.pk] is None


def test_one_monitor_claims_each_round(fake):
    Backend.objects.create(name="vllm", kind="vllm", base_url=fake("vllm").url)
    first, second = monitor("host-a:1"), monitor("host-b:2")
    summary = first.round()
    assert summary["probed"] == 1 and "alerts" in summary and "recommendations" in summary
    assert second.round() == {}  # the interval is taken
    lease = Lease.objects.get(name="round")
    assert lease.owner == "host-a:1"
    Lease.objects.filter(name="round").update(until=timezone.now() - timedelta(seconds=1))
    assert second.round()["probed"] == 1
    assert Lease.objects.get(name="round").owner == "host-b:2"
    beat = Heartbeat.objects.get(worker="host-b:2")
    assert beat.last_round_at is not None and beat.rounds == 1


def test_host_and_gpu_readings_are_recorded_with_the_gpu_state(tmp_path):
    nvml = FakeNvml([{"name": "NVIDIA L4", "total": 24 << 30, "used": 6 << 30, "util": 97,
                      "temp": 70}])
    m = monitor(nvml=nvml)
    assert m.collect_host() > 10
    assert latest("gpu_utilization_percent", "gpu:0") == 97
    assert Sample.objects.filter(metric="cpu_percent", scope="host").exists()
    state = queries.gpu_state()
    assert state["available"] and state["devices"][0]["name"] == "NVIDIA L4"
    none = monitor("w2")
    none.collect_host()
    assert queries.gpu_state()["reason"].startswith("no GPU detected")


def test_traffic_samples_come_from_runs(operator_user):
    backend = Backend.objects.create(name="b", kind="vllm", base_url="http://10.0.0.1:8000")
    agent = Agent.objects.create(name="a", backend=backend, model="m")
    conversation = Conversation.objects.create(owner=operator_user, agent=agent)
    started = timezone.now() - timedelta(seconds=5)
    for outcome, error in (("success", ""), ("error", "HTTP 500"), ("cancelled", "")):
        Run.objects.create(conversation=conversation, agent=agent, backend=backend, model="m",
                           started_at=started, ttft_ms=120, total_ms=900, tokens_in=10,
                           tokens_out=40, tokens_per_s=51.3, outcome=outcome, error=error)
    m = monitor()
    assert m.traffic() == 3 and m.traffic() == 0  # a cursor: each run once
    for scope in (f"backend:{backend.pk}", f"agent:{agent.pk}"):
        sums = {metric: sum(Sample.objects.filter(metric=metric, scope=scope).values_list(
            "value", flat=True)) for metric in ("requests", "errors", "tokens_out")}
        assert sums == {"requests": 3, "errors": 1, "tokens_out": 120}
        # a stopped reply says nothing about latency
        assert Sample.objects.filter(metric="latency_ms", scope=scope).count() == 2


def test_monitor_once_prints_its_round(capsys, fake):
    Backend.objects.create(name="vllm", kind="vllm", base_url=fake("vllm").url)
    call_command("monitor", "--once")
    summary = json.loads(capsys.readouterr().out)
    assert summary["probed"] == 1 and summary["host_samples"] > 0
    assert Heartbeat.objects.count() == 1


def test_engine_metrics_are_normalised_and_missing_ones_stay_missing(fake):
    vllm = Backend.objects.create(name="vllm", kind="vllm", base_url=fake("vllm").url)
    llama = Backend.objects.create(name="llama", kind="llamacpp", base_url=fake("llamacpp").url)
    results = {r.backend.pk: r.engine for r in monitor().probe()}
    assert results[vllm.pk]["engine_ttft_avg_ms"] == pytest.approx(1000 * 1.25 / 9)
    assert results[vllm.pk]["engine_itl_avg_ms"] == pytest.approx(10.0)  # 1.88 s / 188
    assert results[llama.pk]["engine_prompt_tokens_total"] == 120
    assert "engine_kv_cache_usage" not in results[llama.pk]
    assert latest("engine_ttft_avg_ms", f"backend:{vllm.pk}") == pytest.approx(138.9, abs=0.1)


def test_engine_throughput_comes_from_the_token_counter():
    from console.backends import Report
    from monitoring.probes import ProbeResult

    backend = Backend.objects.create(name="b", kind="vllm", base_url="http://10.0.0.1:8000")
    m = monitor()
    first = ProbeResult(backend, Report("healthy"), {"engine_generation_tokens_total": 1000})
    assert m._throughput(first) == []
    m._counters[backend.pk] = (m._counters[backend.pk][0] - 2.0, 1000)  # two seconds ago
    second = ProbeResult(backend, Report("healthy"), {"engine_generation_tokens_total": 1500})
    [reading] = m._throughput(second)
    assert reading.metric == "engine_throughput_tokens_per_s"
    assert reading.value == pytest.approx(250, rel=0.05)
    restarted = ProbeResult(backend, Report("healthy"), {"engine_generation_tokens_total": 3})
    assert m._throughput(restarted) == []  # a counter going down is a restart, not a rate


def test_the_active_probe_measures_ttft_and_tokens_per_second(scripted):
    from tests.support.scripted_openai import finish, text

    backend = Backend.objects.create(name="cloud", kind="openai_compatible",
                                     base_url=scripted.url, active_probe_interval_s=300)
    Backend.objects.create(name="quiet", kind="openai_compatible", base_url=scripted.url)
    # 0.2 s between the chunks: the rate stays far under the bound even when a busy
    # machine hands the client the first chunk late
    scripted.add(("sleep", 0.05), text("Hi"), ("sleep", 0.2), text(" there", "!"),
                 finish("length"))
    m = monitor()
    assert m.active_probes() == 2  # samples: its TTFT and its tokens/s
    request = scripted.requests[-1]
    assert request["max_tokens"] == 8 and request["model"] == "scripted-1"
    assert latest("probe_ttft_ms", f"backend:{backend.pk}") >= 50
    assert 0 < latest("probe_tokens_per_s", f"backend:{backend.pk}") < 200  # 2 chunks in ≥ 200 ms
    assert m.active_probes() == 0  # not again before its interval
    assert len(scripted.requests) == 1


def test_a_slow_backend_is_degraded_with_the_reason(fake, settings):
    settings.TANGLAW_SLOW_MS = 50
    slow = fake("vllm", fault="stall", stall_s=0.2)
    backend = Backend.objects.create(name="slow", kind="vllm", base_url=slow.url)
    monitor().probe()
    backend.refresh_from_db()
    assert backend.status == "degraded" and backend.status_reason.startswith("slow: /health")
    assert latest("backend_up", f"backend:{backend.pk}") == 1.0  # slow is not down
    assert latest("probe_latency_ms", f"backend:{backend.pk}") >= 200
