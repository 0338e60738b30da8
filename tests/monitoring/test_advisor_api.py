"""Recommendations from crafted samples; the one-click unload; /metrics; the monitoring API
and pages."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.models import Agent, Conversation, Run
from console.actions.users import create_token
from console.models import AuditEvent, Backend
from monitoring import advisor
from monitoring.models import Alert, AlertRule, Heartbeat, Recommendation, Sample

pytestmark = pytest.mark.django_db


def add(metric, scope, values, every_s=20):
    now = timezone.now()
    Sample.objects.bulk_create([
        Sample(ts=now - timedelta(seconds=i * every_s), metric=metric, scope=scope, value=v)
        for i, v in enumerate(values)])


@pytest.fixture
def backend(db):
    return Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000",
                                  status="healthy")


def open_rules():
    return {r.rule: r for r in Recommendation.objects.filter(state="open")}


def test_each_rule_fires_from_measurements_with_its_evidence(backend):
    spare = Backend.objects.create(name="spare", kind="vllm", base_url="http://10.0.0.2:8000",
                                   status="healthy")
    scope = f"backend:{backend.pk}"
    add("latency_ms", scope, [4200, 3900, 5100, 4800, 4400, 6000])
    add("engine_requests_waiting", scope, [9, 12, 8])
    add("requests", scope, [1] * 12)
    add("errors", scope, [1] * 5 + [0] * 7)
    add("gpu_utilization_percent", "gpu:0", [98, 99, 97])
    assert advisor.run() == {"open": 4, "resolved": 0}
    found = open_rules()
    assert set(found) == {"latency_over_target", "queue_backlog", "error_spike",
                          "gpu_saturated"}
    latency = found["latency_over_target"].evidence[0]
    assert latency["metric"] == "latency_ms p95" and latency["value"] > 3000
    assert latency["window"] == "15m" and latency["threshold"] == 3000
    assert "spare" in found["error_spike"].title and spare.name in found["error_spike"].action
    assert found["error_spike"].severity == "critical"

    Sample.objects.all().delete()  # the evidence goes away
    assert advisor.run() == {"open": 0, "resolved": 4}
    assert not Recommendation.objects.filter(state="open").exists()


def test_idle_gpu_and_tight_memory(fake, operator_client):
    ollama = fake("ollama")
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=ollama.url)
    add("gpu_utilization_percent", "gpu:0", [5] * 30, every_s=60)
    add("memory_percent", "host", [88, 91, 90])
    add("models_loaded", f"backend:{backend.pk}", [2])
    advisor.run()
    found = open_rules()
    assert set(found) == {"gpu_idle", "unload_idle"}
    rec = found["unload_idle"]
    assert rec.apply == {"kind": "unload_loaded", "backend_id": backend.pk}
    response = operator_client.post(f"/recommendations/{rec.pk}/apply/", follow=True)
    assert "Unloaded qwen2.5:0.5b on ollama" in response.content.decode()
    unloads = [json.loads(r["body"]) for r in ollama.requests if r["path"] == "/api/generate"]
    assert unloads == [{"model": "qwen2.5:0.5b", "keep_alive": 0}]
    rec.refresh_from_db()
    assert rec.state == "applied" and rec.applied_by == "oscar"
    assert AuditEvent.objects.filter(action="recommendation.applied").exists()


def test_metrics_is_valid_prometheus_text(client, backend, operator_user, actor):
    agent = Agent.objects.create(name="a", backend=backend, model="m")
    conversation = Conversation.objects.create(owner=operator_user, agent=agent)
    for total, outcome in ((300, "success"), (2500, "success"), (900, "error")):
        Run.objects.create(conversation=conversation, agent=agent, backend=backend, model="m",
                           started_at=timezone.now(), total_ms=total, tokens_out=10,
                           outcome=outcome)
    add("cpu_percent", "host", [12.5])
    add("engine_requests_waiting", f"backend:{backend.pk}", [3])
    response = client.get("/metrics")  # the test client comes from 127.0.0.1
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert families["tanglaw_backend_up"].samples[0].labels == {"backend": "edge",
                                                                "kind": "vllm"}
    assert families["tanglaw_requests"].samples[0].value == 3
    assert families["tanglaw_errors"].samples[0].value == 1
    histogram = {s.labels.get("le"): s.value
                 for s in families["tanglaw_turn_latency_seconds"].samples
                 if s.name.endswith("_bucket")}
    assert histogram["0.5"] == 1 and histogram["1"] == 2 and histogram["+Inf"] == 3
    assert families["tanglaw_host_cpu_percent"].samples[0].value == 12.5
    assert families["tanglaw_engine_requests_waiting"].samples[0].value == 3
    remote = Client(REMOTE_ADDR="10.1.2.3")
    assert remote.get("/metrics").status_code == 401
    _, token = create_token(actor, operator_user, "prometheus")
    assert remote.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert remote.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_monitoring_api(operator_client, viewer_client, backend):
    scope = f"backend:{backend.pk}"
    add("ttft_ms", scope, [120, 140, 160])
    series = viewer_client.get(f"/api/metrics/series?metric=ttft_ms&backend={backend.pk}"
                               f"&window=1h").json()
    assert series["tier"] == 0 and series["scope"] == scope
    assert sorted(p[1] for p in series["points"]) == [120, 140, 160]
    assert viewer_client.get("/api/metrics/series?metric=ttft_ms&window=2y").status_code == 422
    health = viewer_client.get("/api/health").json()
    assert health["backends"][0]["name"] == "edge" and health["monitor"]["running"] is False
    assert set(health) >= {"status", "backends", "host", "gpus", "alerts_firing", "monitor"}

    rule = operator_client.post("/api/alert-rules", data={
        "name": "TTFT", "metric": "ttft_ms", "scope": scope, "threshold": 100,
        "window_s": 600}, content_type="application/json")
    assert rule.status_code == 201, rule.json()
    bad = operator_client.post("/api/alert-rules", data={
        "name": "TTFT", "metric": "nope", "scope": "moon", "threshold": 1},
        content_type="application/json").json()["errors"]
    assert set(bad) == {"name", "metric", "scope"}
    assert viewer_client.post("/api/alert-rules", data={"name": "x", "metric": "ttft_ms",
                                                        "threshold": 1},
                              content_type="application/json").status_code == 403
    from monitoring import alerts
    AlertRule.objects.exclude(name="TTFT").update(enabled=False)
    alerts.evaluate()
    firing = viewer_client.get("/api/alerts?state=firing").json()
    assert [a["rule"] for a in firing] == ["TTFT"] and firing[0]["metric"] == "ttft_ms"
    assert viewer_client.post(f"/api/alerts/{firing[0]['id']}/ack").status_code == 403
    acked = operator_client.post(f"/api/alerts/{firing[0]['id']}/ack").json()
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "oscar"
    assert operator_client.post(f"/api/alerts/{firing[0]['id']}/ack").status_code == 409
    patched = operator_client.patch(f"/api/alert-rules/{rule.json()['id']}",
                                    data={"threshold": 500},
                                    content_type="application/json").json()
    assert patched["threshold"] == 500
    assert operator_client.put("/api/monitor/settings", data={"probe_interval_s": 2},
                               content_type="application/json").status_code == 422
    assert operator_client.put("/api/monitor/settings", data={"probe_interval_s": 15},
                               content_type="application/json").json() == {
        "probe_interval_s": 15}
    csv = operator_client.get("/api/reports/performance?window=24h&format=csv")
    assert csv.content.decode().splitlines()[0].startswith("scope,name,requests,errors")
    report = operator_client.get("/api/reports/performance?window=1h").json()
    assert report["rows"][0]["name"] == "edge"
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"alert_rule.created", "alert_rule.updated", "alert.acknowledged",
            "monitor.settings_changed"} <= actions


def test_pages_show_the_monitor_state_and_no_gpu(operator_client, viewer_client, backend):
    panel = viewer_client.get("/monitoring/panel/overview/").content.decode()
    assert "Monitor not running" in panel and "manage.py monitor" in panel
    Heartbeat.objects.create(worker="w", pid=1, hostname="h", started_at=timezone.now(),
                             seen_at=timezone.now(), last_round_at=timezone.now())
    panel = viewer_client.get("/monitoring/panel/overview/").content.decode()
    assert "Monitor not running" not in panel and "no GPU reading yet" in panel
    host = viewer_client.get("/monitoring/").content.decode()
    assert 'data-metric="cpu_percent"' in host and "Probe interval" not in host
    assert "Probe interval (s)" in operator_client.get("/monitoring/").content.decode()
    import socket

    from monitoring.models import State

    State.objects.create(key=f"gpu:{socket.gethostname()}", value={
        "available": True, "reason": "", "driver": "550", "devices": [
            {"index": 0, "name": "L4", "uuid": "u", "memory_total_bytes": 24e9}]})
    host = viewer_client.get("/monitoring/").content.decode()
    assert 'data-metric="gpu_power_w" data-scope="gpu:0"' in host and "GPU 0 · L4" in host
    assert 'data-metric="disk_percent" data-scope="host"' in host and "Data disk" in host
    detail = viewer_client.get(f"/monitoring/panel/backend/{backend.pk}/").content.decode()
    assert f'data-scope="backend:{backend.pk}"' in detail and "Uptime 24 h" in detail
    home = viewer_client.get("/").content.decode()
    assert 'hx-get="/monitoring/panel/overview/"' in home
    alerts_page = operator_client.post("/alerts/", {"name": "Hot", "metric": "cpu_percent",
                                                    "scope": "host", "comparator": ">",
                                                    "threshold": "90", "window_s": "60",
                                                    "for_s": "0", "severity": "warning",
                                                    "enabled": "on"})
    assert alerts_page.status_code == 302 and AlertRule.objects.filter(name="Hot").exists()
    bad = operator_client.post("/alerts/", {"name": "", "metric": "x", "threshold": "a"})
    assert "The rule was not saved" in bad.content.decode()
    assert viewer_client.post("/alerts/", {"name": "v"}).status_code == 403
    report = viewer_client.get("/monitoring/report/?window=7d").content.decode()
    assert "edge" in report and "Performance report" in report
    assert "No recommendations" in viewer_client.get("/recommendations/").content.decode()
    assert Alert.objects.count() == 0


def test_a_model_that_does_not_fit_gets_a_smaller_quantization(backend):
    from console import sizing
    from monitoring.models import State

    gb = 1e9
    add("memory_total_bytes", "host", [16 * gb])
    add("memory_used_bytes", "host", [10.5 * gb])  # 5.5 GB free, no GPU
    State.objects.create(key=f"models:{backend.pk}", value=[
        {"id": "qwen2.5:7b-instruct-q8_0", "size_bytes": 8.1 * gb, "parameter_size": "7.6B",
         "quantization": "Q8_0", "loaded": False},
        {"id": "qwen2.5:0.5b", "size_bytes": 0.4 * gb, "parameter_size": "494M",
         "quantization": "Q4_K_M", "loaded": False}])
    advisor.run()
    [rec] = Recommendation.objects.filter(rule="model_too_big")
    assert "qwen2.5:7b-instruct-q8_0" in rec.title and "free RAM" in rec.title
    expected = sizing.estimate_bytes(7.6e9, "Q4_K_M")
    assert sizing.estimate_bytes(7.6e9, "Q5_K_M") > 5.5 * gb > expected
    assert f"Use Q4_K_M instead (about {expected / gb:.1f} GB)" in \
        rec.action
    assert rec.evidence[0]["threshold"] == 5.5


def test_sizing_parses_parameter_counts_and_picks_the_best_fit():
    from console import sizing

    assert sizing.parameters("7.6B") == 7.6e9 and sizing.parameters("494.03M") == 494.03e6
    assert sizing.parameters("") is None and sizing.parameters("lots") is None
    assert sizing.estimate_bytes(8e9, "Q8_0") == pytest.approx(8e9 * 8.5 / 8 * 1.1)
    assert sizing.best_fit(8e9, 9.4e9) == ("Q8_0", pytest.approx(9.35e9))
    assert sizing.best_fit(8e9, 9.3e9)[0] == "Q5_K_M"
    assert sizing.best_fit(8e9, 6.3e9)[0] == "Q5_K_M"
    assert sizing.best_fit(8e9, 5.4e9)[0] == "Q4_K_M"
    assert sizing.best_fit(8e9, 1e9) is None


def test_a_fleet_hosts_backend_is_sized_against_that_hosts_memory(backend, actor):
    """The backend on 10.0.0.1 runs on the fleet host with that address: this machine's
    plentiful memory says nothing about whether its model fits."""
    from monitoring import fleet
    from monitoring.models import State

    gb = 1e9
    host = fleet.create_host(actor, {"name": "jetson", "address": "10.0.0.1", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.1:9100/metrics"}]})
    local = Backend.objects.create(name="here", kind="vllm", base_url="http://127.0.0.1:8000")
    add("memory_total_bytes", "host", [64 * gb])
    add("memory_used_bytes", "host", [8 * gb])  # 56 GB free here
    add("memory_total_bytes", host.scope, [8 * gb])
    add("memory_used_bytes", host.scope, [6 * gb])  # 2 GB free on the Jetson
    model = {"id": "qwen2.5:7b", "size_bytes": 4.7 * gb, "parameter_size": "7.6B",
             "quantization": "Q4_K_M", "loaded": False}
    for b in (backend, local):
        State.objects.create(key=f"models:{b.pk}", value=[model])
    advisor.run()
    [rec] = Recommendation.objects.filter(rule="model_too_big")
    assert rec.scope == f"backend:{backend.pk}" and "only 2.0 GB is free" in rec.action
    # memory tight on the Jetson: its idle backend is named, not this machine's
    add("memory_percent", host.scope, [92, 91, 93])
    add("memory_percent", "host", [20, 21])
    State.objects.create(key=f"unloads:{backend.pk}", value=True)
    State.objects.create(key=f"unloads:{local.pk}", value=True)
    add("models_loaded", f"backend:{backend.pk}", [1])
    add("models_loaded", f"backend:{local.pk}", [1])
    advisor.run()
    assert [r.scope for r in Recommendation.objects.filter(rule="unload_idle")] == [
        f"backend:{backend.pk}"]


def test_right_sizing_before_a_pull_reads_the_backends_host(backend, actor):
    from console import rightsizing
    from monitoring import fleet

    gb = 1e9
    host = fleet.create_host(actor, {"name": "jetson", "address": "10.0.0.1", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.1:9100/metrics"}]})
    add("memory_total_bytes", "host", [64 * gb])
    add("memory_used_bytes", "host", [8 * gb])
    add("memory_total_bytes", host.scope, [8 * gb])
    add("memory_used_bytes", host.scope, [6 * gb])
    on_jetson = rightsizing.warnings("qwen2.5:7b", 4.7 * gb, "7.6B", backend.pk)
    assert on_jetson and "only 2.0 GB is free" in on_jetson[0]
    assert rightsizing.warnings("qwen2.5:7b", 4.7 * gb, "7.6B") == []  # this machine
