"""The fleet: hosts registered by their exporters, scraped by the monitor into the same
sample store (the real node exporter from Debian; dcgm-exporter and nvidia_gpu_exporter
payloads from the fake), host status and the Host down alert, two monitors sharing the
scrapes, the API and its errors, the pages, Prometheus http_sd."""

import json
import time

import pytest

from console.models import AuditEvent, Backend
from monitoring import alerts, fleet, scrape
from monitoring.models import Alert, AlertRule, Host, HostTarget, Sample
from monitoring.worker import Monitor
from tests.support.fake_exporters import DCGM, NVIDIA_SMI, FakeExporters

pytestmark = pytest.mark.django_db


def post(client, url, body, method="post"):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def exporters():
    server = FakeExporters().start()
    yield server
    server.stop()


def next_interval():
    """The scrape leases of this interval run out (as they do after a probe interval)."""
    from monitoring.models import Lease

    Lease.objects.filter(name__startswith="scrape:").delete()


def latest(metric, scope):
    return Sample.objects.filter(metric=metric, scope=scope).order_by("-ts").values_list(
        "value", flat=True).first()


NODE_1 = """# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100
node_cpu_seconds_total{cpu="0",mode="user"} 50
node_cpu_seconds_total{cpu="1",mode="idle"} 100
node_cpu_seconds_total{cpu="1",mode="iowait"} 10
node_memory_MemTotal_bytes 8e9
node_memory_MemAvailable_bytes 2e9
node_memory_SwapTotal_bytes 1e9
node_memory_SwapFree_bytes 7.5e8
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1e11
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4e10
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1e9
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1e9
node_network_receive_bytes_total{device="eth0"} 1000
node_network_receive_bytes_total{device="lo"} 999999
node_network_transmit_bytes_total{device="eth0"} 500
node_load1 0.75
"""


def test_node_exporter_names_become_host_readings():
    first = scrape.interpret("node_exporter", NODE_1, 7, {}, now=1000.0)
    assert first.ok and first.counters["cpu_total"] == 260
    got = {r.metric: r.value for r in first.readings}
    assert got["memory_percent"] == 75.0 and got["memory_total_bytes"] == 8e9
    assert got["swap_percent"] == 25.0 and got["disk_percent"] == 60.0
    assert got["load_1m"] == 0.75 and "cpu_percent" not in got  # a rate needs two
    assert {r.scope for r in first.readings} == {"host:7"}
    # 10 s later: 40 s more CPU time of which 10 idle → 75 % busy; eth0 +2,000 bytes
    second_text = (NODE_1.replace('mode="user"} 50', 'mode="user"} 80')
                   .replace('cpu="1",mode="idle"} 100', 'cpu="1",mode="idle"} 110')
                   .replace('device="eth0"} 1000', 'device="eth0"} 3000'))
    second = scrape.interpret("node_exporter", second_text, 7, first.counters, now=1010.0)
    got = {r.metric: r.value for r in second.readings}
    assert got["cpu_percent"] == pytest.approx(75.0)
    assert got["net_recv_bytes_per_s"] == pytest.approx(200.0)
    assert second.latest["cpus"] == 2


def test_gpu_exporters_give_each_gpu_of_each_host():
    dcgm = scrape.interpret("dcgm_exporter", DCGM, 3, {})
    assert [g["index"] for g in dcgm.gpus] == ["0", "1"] and dcgm.gpus[0]["name"] == "NVIDIA L4"
    by = {(r.metric, r.scope): r.value for r in dcgm.readings}
    assert by[("gpu_utilization_percent", "gpu:3/0")] == 87
    assert by[("gpu_memory_used_bytes", "gpu:3/0")] == 21504 * 2**20
    assert by[("gpu_memory_total_bytes", "gpu:3/0")] == 22528 * 2**20
    assert by[("gpu_memory_percent", "gpu:3/1")] == pytest.approx(100 * 2048 / 22528)
    assert by[("gpu_power_w", "gpu:3/1")] == 19.25 and by[("gpu_temperature_c", "gpu:3/0")] == 71
    smi = scrape.interpret("nvidia_gpu_exporter", NVIDIA_SMI, 4, {})
    by = {(r.metric, r.scope): r.value for r in smi.readings}
    assert by[("gpu_utilization_percent", "gpu:4/0")] == pytest.approx(42.0)
    assert by[("gpu_memory_percent", "gpu:4/0")] == pytest.approx(75.0)
    assert [g["name"] for g in smi.gpus] == ["NVIDIA GeForce RTX 4060", "NVIDIA GeForce RTX 3060"]


@pytest.mark.parametrize("kind,text,says", [
    ("node_exporter", "<html>login</html>", "not the Prometheus text format"),
    ("node_exporter", DCGM, "is this the node exporter?"),
    ("dcgm_exporter", NODE_1, "is this dcgm-exporter?"),
    ("nvidia_gpu_exporter", DCGM, "is this nvidia_gpu_exporter?"),
])
def test_an_answer_that_is_not_the_exporter_says_so(kind, text, says):
    result = scrape.interpret(kind, text, 1, {})
    assert not result.ok and says in result.error and result.readings == []


def test_register_scrape_and_read_back(operator_client, viewer_client, exporters):
    made = post(operator_client, "/api/hosts", {
        "name": "edge-1", "address": "127.0.0.1", "labels": {"site": "manila", "rack": "a3"},
        "targets": [{"kind": "dcgm_exporter", "url": exporters.url("/dcgm")},
                    {"kind": "nvidia_gpu_exporter", "url": exporters.url("/nvidia")}]})
    assert made.status_code == 201, made.content
    host = made.json()
    assert host["status"] == "unknown" and len(host["targets"]) == 2
    assert AuditEvent.objects.get(action="host.created").after["labels"] == {
        "site": "manila", "rack": "a3"}
    llama = Backend.objects.create(name="llama", kind="llamacpp",
                                   base_url="http://127.0.0.1:8080")
    Monitor(worker="m1").scrape_hosts()
    got = operator_client.get(f"/api/hosts/{host['id']}").json()
    assert got["status"] == "up" and got["status_reason"] == ""
    assert all(t["ok"] and t["families"] >= 5 for t in got["targets"])
    assert len(got["latest"]["gpus"]) == 4
    assert got["backends"] == [{"id": llama.pk, "name": "llama", "status": llama.status}]
    assert latest("gpu_utilization_percent", f"gpu:{host['id']}/0") is not None
    assert latest("host_up", f"host:{host['id']}") == 1.0
    # the list, the viewer's read, and what a viewer may not do
    assert [h["name"] for h in viewer_client.get("/api/hosts").json()] == ["edge-1"]
    assert post(viewer_client, "/api/hosts", {"name": "x"}).status_code == 403
    assert viewer_client.post(f"/api/hosts/{host['id']}/test").status_code == 403
    # Test: what each target returned, now
    tested = operator_client.post(f"/api/hosts/{host['id']}/test").json()["targets"]
    assert [t["ok"] for t in tested] == [True, True]
    assert "gpu_power_w" in tested[0]["readings"]
    assert AuditEvent.objects.filter(action="host.tested").count() == 1
    # one exporter failing: degraded, with the reason
    exporters.down.add("/nvidia")
    next_interval()
    Monitor(worker="m1").scrape_hosts()
    got = operator_client.get(f"/api/hosts/{host['id']}").json()
    assert got["status"] == "degraded" and "HTTP 503" in got["status_reason"]
    changed = post(operator_client, f"/api/hosts/{host['id']}", {
        "targets": [{"kind": "dcgm_exporter", "url": exporters.url("/dcgm")}]}, "patch")
    assert changed.status_code == 200 and len(changed.json()["targets"]) == 1
    assert operator_client.delete(f"/api/hosts/{host['id']}").status_code == 204
    assert not Host.objects.exists() and not HostTarget.objects.exists()
    assert AuditEvent.objects.filter(action__in=["host.updated", "host.deleted"]).count() == 2


@pytest.mark.parametrize("body,field", [
    ({"address": "10.0.0.5", "targets": [{"kind": "node_exporter",
                                          "url": "http://10.0.0.5:9100/metrics"}]}, "name"),
    ({"name": "b", "address": "http://10.0.0.5", "targets": []}, "address"),
    ({"name": "b", "address": "", "targets": []}, "address"),
    ({"name": "b", "address": "10.0.0.5"}, "targets"),
    ({"name": "b", "address": "10.0.0.5", "targets": "http://x"}, "targets"),
    ({"name": "b", "address": "10.0.0.5", "targets": [{"kind": "snmp",
                                                       "url": "http://10.0.0.5/"}]},
     "targets[0].kind"),
    ({"name": "b", "address": "10.0.0.5", "targets": [{"kind": "node_exporter",
                                                       "url": "ftp://10.0.0.5/"}]},
     "targets[0].url"),
    ({"name": "b", "address": "10.0.0.5", "targets": [{"kind": "node_exporter",
                                                       "url": "http://169.254.169.254/"}]},
     "targets[0].url"),
    ({"name": "b", "address": "10.0.0.5", "targets": [{"kind": "node_exporter",
                                                       "url": "http://0x7f.1:9100/?x=1"}]},
     "targets[0].url"),
    ({"name": "b", "address": "10.0.0.5", "targets": [{"kind": "node_exporter", "url": 5}]},
     "targets[0].url"),
    ({"name": "b", "address": "10.0.0.5", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.5:9100/metrics", "port": 1}]},
     "targets[0].port"),
    ({"name": "b", "address": "10.0.0.5", "labels": {"site": 5}, "targets": []},
     "labels.site"),
    ({"name": "b", "address": "10.0.0.5", "labels": {"bad key": "x"}, "targets": []},
     "labels.bad key"),
    ({"name": "b", "address": "10.0.0.5", "labels": ["site"], "targets": []}, "labels"),
    ({"name": "b", "address": "10.0.0.5", "enabled": "yes", "targets": []}, "enabled"),
    ({"name": "b", "address": "10.0.0.5", "colour": "red", "targets": []}, "colour"),
    ({"name": "b" * 101, "address": "10.0.0.5", "targets": []}, "name"),
    ({"name": "b\u0000", "address": "10.0.0.5", "targets": []}, "name"),
    ({"name": "b", "address": "10.0.0.5:9100", "targets": []}, "address"),
    ({"name": "b", "address": "]]]", "targets": []}, "address"),
    ({"name": "b", "address": "a..b", "targets": []}, "address"),
    ({"name": "b", "address": "10.0.0.5", "labels": {"site": "a,b"}, "targets": []},
     "labels.site"),
    ({"name": "b", "address": "10.0.0.5", "labels": "", "targets": []}, "labels"),
    ({"name": "b", "address": "10.0.0.5", "targets": [{"kind": "node_exporter",
                                                       "url": "http://10.0.0.5/" + "m" * 500}]},
     "targets[0].url"),
    ({"name": "b", "address": "10.0.0.5", "targets": [
        {"kind": "snmp", "url": "http://10.0.0.5/a"},
        {"kind": "node_exporter", "url": "http://10.0.0.5:9100/metrics"},
        {"kind": "node_exporter", "url": "http://10.0.0.5:9100/metrics"}]}, "targets[2].url"),
])
def test_bad_input_names_the_field_and_adds_nothing(operator_client, body, field):
    response = post(operator_client, "/api/hosts", body)
    assert response.status_code == 422, response.content
    assert field in response.json()["errors"], response.json()
    assert not Host.objects.exists() and not AuditEvent.objects.filter(
        action="host.created").exists()


def test_a_name_is_taken_once(operator_client):
    body = {"name": "edge", "address": "10.0.0.5",
            "targets": [{"kind": "node_exporter", "url": "http://10.0.0.5:9100/metrics"}]}
    assert post(operator_client, "/api/hosts", body).status_code == 201
    again = post(operator_client, "/api/hosts", body)
    assert again.status_code == 422 and "exists already" in again.json()["errors"]["name"][0]


def test_an_alert_on_one_gpus_memory_of_one_host(operator_client, exporters, actor):
    host = fleet.create_host(actor, {"name": "edge-1", "address": "127.0.0.1", "targets": [
        {"kind": "dcgm_exporter", "url": exporters.url("/dcgm")}]})
    rule = alerts.save_rule(actor, {"name": "GPU 0 memory", "metric": "gpu_memory_percent",
                                    "scope": f"gpu:{host.pk}/0", "comparator": ">",
                                    "threshold": 90, "window_s": 0, "severity": "warning"})
    Monitor(worker="m1").scrape_hosts()
    alerts.evaluate()
    alert = Alert.objects.get(rule=rule)
    assert alert.scope == f"gpu:{host.pk}/0" and alert.state == "firing"
    assert "GPU 0 of host edge-1" in alert.message
    # GPU 1 (9 % used) has none; the fleet page counts the alert on its host
    assert not Alert.objects.filter(scope=f"gpu:{host.pk}/1").exists()
    page = operator_client.get("/fleet/").content.decode()
    assert "1 firing" in page


def test_two_monitors_scrape_each_target_once_per_interval(exporters, actor):
    paths = [f"/n{i}" for i in range(10)]
    for i, path in enumerate(paths):
        exporters.pages[path] = NODE_1
        fleet.create_host(actor, {"name": f"edge-{i}", "address": f"10.0.0.{i + 1}",
                                  "targets": [{"kind": "node_exporter",
                                               "url": exporters.url(path)}]})
    first, second = Monitor(worker="m1"), Monitor(worker="m2")
    assert first.scrape_hosts() > 0
    assert second.scrape_hosts() == 0  # every lease is held for this interval
    assert all(exporters.hits.get(p) == 1 for p in paths), exporters.hits


def test_prometheus_http_sd_lists_exporters_backends_and_tanglaw(operator_client, actor):
    fleet.create_host(actor, {"name": "jetson-03", "address": "10.0.0.23",
                              "labels": {"site": "cebu"}, "targets": [
                                  {"kind": "node_exporter", "url": "http://10.0.0.23:9100/metrics"},
                                  {"kind": "jetson", "url": "http://10.0.0.23:9101/metrics"}]})
    Backend.objects.create(name="vllm-a", kind="vllm", base_url="http://10.0.0.23:8000/v1")
    Backend.objects.create(name="ollama", kind="ollama", base_url="http://10.0.0.9:11434")
    groups = operator_client.get("/api/prometheus/targets").json()
    assert groups[0] == {"targets": ["10.0.0.23:9100"], "labels": {
        "host": "jetson-03", "kind": "node_exporter", "__scheme__": "http",
        "__metrics_path__": "/metrics", "label_site": "cebu", "site": "cebu"}}
    assert groups[2]["targets"] == ["10.0.0.23:8000"]
    assert groups[2]["labels"]["backend"] == "vllm-a" and groups[2]["labels"]["host"] == "jetson-03"
    assert groups[-1]["labels"]["kind"] == "tanglaw" and len(groups) == 4  # no Ollama


def test_the_fleet_pages(operator_client, viewer_client, exporters):
    empty = operator_client.get("/fleet/").content.decode()
    assert "No hosts yet" in empty and "apt install prometheus-node-exporter" in empty
    added = operator_client.post("/fleet/", {
        "action": "add", "name": "edge-1", "address": "127.0.0.1", "labels": "site=manila",
        "kind-0": "dcgm_exporter", "url-0": exporters.url("/dcgm")}, follow=True)
    assert b"Added edge-1" in added.content
    host = Host.objects.get()
    assert host.labels == {"site": "manila"}
    refused = operator_client.post("/fleet/", {"action": "add", "name": "x",
                                               "address": "h", "labels": "no equals"})
    assert b"labels" in refused.content and b"The host was not added" in refused.content
    Monitor(worker="m1").scrape_hosts()
    page = operator_client.get(f"/fleet/{host.pk}/").content.decode()
    assert f'data-scope="host:{host.pk}"' in page and f'data-scope="gpu:{host.pk}/1"' in page
    assert "NVIDIA L4" in page and "Test the exporters now" in page
    tested = operator_client.post(f"/fleet/{host.pk}/", {"action": "test"}).content.decode()
    assert "with 5 metric families" in tested and "gpu_power_w" in tested
    card = operator_client.get("/fleet/").content.decode()
    assert "edge-1" in card and "1 up" in card
    assert b"Test the exporters now" not in viewer_client.get(f"/fleet/{host.pk}/").content
    assert viewer_client.post(f"/fleet/{host.pk}/", {"action": "test"}).status_code == 403
    gone = operator_client.post(f"/fleet/{host.pk}/delete/", follow=True)
    assert b"Removed edge-1" in gone.content and not Host.objects.exists()


def test_discovery_finds_the_exporters_on_an_address(operator_client, exporters,
                                                     monkeypatch):
    monkeypatch.setattr(fleet, "DISCOVERED", (("node_exporter", exporters.port),
                                              ("dcgm_exporter", 1)))
    exporters.pages["/metrics"] = NODE_1
    found = fleet.discover("127.0.0.1")
    assert found == [{"kind": "node_exporter", "url": exporters.url("/metrics")}]
    assert "host name or IP" in fleet.discover("http://x/")
    page = operator_client.post("/fleet/", {"action": "discover", "address": "127.0.0.1",
                                            "name": "edge"}).content.decode()
    assert "Found 1 exporter(s)" in page and exporters.url("/metrics") in page


@pytest.mark.slow
def test_the_real_node_exporter_up_down_and_back(tmp_path, actor, operator_client):
    from tests.support.node_exporter import NodeExporter

    exporter = NodeExporter(tmp_path).start()
    try:
        host = fleet.create_host(actor, {"name": "debian-box", "address": "127.0.0.1",
                                         "targets": [{"kind": "node_exporter",
                                                      "url": exporter.url}]})
        rule = AlertRule.objects.get(name="Host down")
        monitor = Monitor(worker="m1")
        monitor.scrape_hosts()
        time.sleep(1.1)  # CPU seconds advance: a rate from two scrapes
        next_interval()
        monitor.scrape_hosts()
        scope = f"host:{host.pk}"
        for metric in ("cpu_percent", "memory_percent", "memory_total_bytes",
                       "disk_percent", "net_recv_bytes_per_s", "load_1m"):
            assert latest(metric, scope) is not None, metric
        assert 0 <= latest("cpu_percent", scope) <= 100
        host.refresh_from_db()
        assert host.status == "up"
        series = operator_client.get(f"/api/metrics/series?metric=memory_percent&scope={scope}"
                                     "&window=1h").json()
        assert series["points"], series
        # the exporter stops: the host is down and the Host down alert fires
        exporter.stop()
        next_interval()
        monitor.scrape_hosts()
        host.refresh_from_db()
        assert host.status == "down" and "connection refused" in host.status_reason
        alerts.evaluate()
        assert not Alert.objects.filter(rule=rule, scope=scope, state="firing").exists()
        next_interval()
        monitor.scrape_hosts()  # down twice running: the rule's two samples
        alerts.evaluate()
        assert Alert.objects.get(rule=rule, scope=scope).state == "firing"
        # and back on the same port: resolved
        exporter.start()
        next_interval()
        monitor.scrape_hosts()
        alerts.evaluate()
        assert Alert.objects.get(rule=rule, scope=scope).state == "resolved"
    finally:
        exporter.stop()


def test_host_is_a_filter_on_alerts_recommendations_and_the_report(operator_client, actor):
    from django.utils import timezone

    from monitoring.models import Recommendation

    host = fleet.create_host(actor, {"name": "jetson", "address": "10.0.0.23", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.23:9100/metrics"}]})
    there = Backend.objects.create(name="on-jetson", kind="llamacpp",
                                   base_url="http://10.0.0.23:8080")
    here = Backend.objects.create(name="on-console", kind="llamacpp",
                                  base_url="http://127.0.0.1:8080")
    rule = AlertRule.objects.get(name="Backend unhealthy")
    now = timezone.now()
    for scope in (f"backend:{there.pk}", f"backend:{here.pk}", f"gpu:{host.pk}/0"):
        Alert.objects.create(rule=rule, scope=scope, state="firing", pending_since=now,
                             threshold=1, message=f"alert on {scope}")
        Recommendation.objects.create(key=f"unload_idle:{scope}", rule="unload_idle",
                                      scope=scope, title=f"rec {scope}", action="do",
                                      evidence=[], severity="warning")
    page = operator_client.get(f"/alerts/?host={host.pk}").content.decode()
    assert f"alert on backend:{there.pk}" in page and f"alert on gpu:{host.pk}/0" in page
    assert f"alert on backend:{here.pk}" not in page
    everything = operator_client.get("/alerts/?host=nope").content.decode()
    assert f"alert on backend:{here.pk}" in everything
    recs = operator_client.get(f"/recommendations/?host={host.pk}").content.decode()
    assert f"rec backend:{there.pk}" in recs and f"rec backend:{here.pk}" not in recs
    report = operator_client.get(f"/api/reports/performance?host={host.pk}").json()
    assert [r["name"] for r in report["rows"]] == ["on-jetson"]
    assert report["rows"][0]["host"] == "jetson"
    whole = operator_client.get("/api/reports/performance").json()
    assert {r["name"]: r["host"] for r in whole["rows"]} == {"on-console": "this machine",
                                                            "on-jetson": "jetson"}
    assert operator_client.get("/api/reports/performance?host=99999").status_code == 404
    assert "on jetson" in operator_client.get(
        f"/monitoring/report/?host={host.pk}").content.decode()


def test_a_jetson_gives_its_host_and_its_tegrastats_gpu():
    text = NODE_1 + ("# TYPE tegrastats_gpu_utilization_percent gauge\n"
                     "tegrastats_gpu_utilization_percent 61\n"
                     "tegrastats_gpu_temperature_celsius 48.5\n"
                     "tegrastats_power_watts 9.8\n")
    result = scrape.interpret("jetson", text, 5, {})
    by = {(r.metric, r.scope): r.value for r in result.readings}
    assert by[("gpu_utilization_percent", "gpu:5/0")] == 61
    assert by[("gpu_power_w", "gpu:5/0")] == 9.8 and by[("memory_percent", "host:5")] == 75
    assert result.latest["gpus"][0]["name"] == "Jetson GPU"
    # without tegrastats' lines it is a host without a GPU, as the node exporter is
    plain = scrape.interpret("jetson", NODE_1, 5, {})
    assert plain.ok and plain.gpus == []


def test_a_backend_can_be_chosen_for_a_host(operator_client, actor):
    named = Backend.objects.create(name="by-name", kind="vllm",
                                   base_url="http://gpu-box.lan:8000/v1")
    matched = Backend.objects.create(name="by-address", kind="vllm",
                                     base_url="http://10.0.0.7:8000/v1")
    made = post(operator_client, "/api/hosts", {
        "name": "gpu-box", "address": "10.0.0.7", "backend_ids": [named.pk],
        "targets": [{"kind": "node_exporter", "url": "http://10.0.0.7:9100/metrics"}]})
    assert made.status_code == 201, made.content
    assert [b["name"] for b in made.json()["backends"]] == ["by-address", "by-name"]
    # chosen for one host, it is not matched to another by its address
    other = fleet.create_host(actor, {"name": "lan", "address": "gpu-box.lan", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.8:9100/metrics"}]})
    assert fleet.host_dict(other)["backends"] == []
    assert fleet.host_scopes()[named.pk] == f"host:{made.json()['id']}"
    assert fleet.host_scopes()[matched.pk] == f"host:{made.json()['id']}"
    for bad in ("1", [99999], [True], None):
        refused = post(operator_client, f"/api/hosts/{made.json()['id']}",
                       {"backend_ids": bad}, "patch")
        assert refused.status_code == 422 and "backend_ids" in refused.json()["errors"], bad


def test_choosing_backends_on_the_host_page(operator_client, actor):
    named = Backend.objects.create(name="by-name", kind="vllm",
                                   base_url="http://gpu-box.lan:8000/v1")
    host = fleet.create_host(actor, {"name": "gpu-box", "address": "10.0.0.7", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.7:9100/metrics"}]})
    page = operator_client.get(f"/fleet/{host.pk}/").content.decode()
    assert 'name="backend"' in page and "by-name" in page
    saved = operator_client.post(f"/fleet/{host.pk}/", {
        "action": "save", "name": "gpu-box", "address": "10.0.0.7", "labels": "",
        "kind-0": "node_exporter", "url-0": "http://10.0.0.7:9100/metrics",
        "backends-shown": "1", "backend": [str(named.pk)]}, follow=True)
    assert b"Saved gpu-box." in saved.content
    assert list(host.backends.values_list("pk", flat=True)) == [named.pk]
    operator_client.post(f"/fleet/{host.pk}/", {
        "action": "save", "name": "gpu-box", "address": "10.0.0.7", "labels": "",
        "kind-0": "node_exporter", "url-0": "http://10.0.0.7:9100/metrics",
        "backends-shown": "1"})
    assert not host.backends.exists()


@pytest.mark.parametrize("kind,text", [
    ("dcgm_exporter", 'DCGM_FI_DEV_GPU_UTIL{gpu="0"} NaN\nDCGM_FI_DEV_FB_USED{gpu="0"} +Inf\n'),
    ("dcgm_exporter", 'DCGM_FI_DEV_GPU_UTIL{gpu="' + "9" * 80 + '"} 5\n'),
    ("nvidia_gpu_exporter", 'nvidia_smi_index{uuid="u"} +Inf\n'
                            'nvidia_smi_utilization_gpu_ratio{uuid="u"} NaN\n'),
    ("nvidia_gpu_exporter", 'nvidia_smi_index{uuid="u"} NaN\n'),
    ("jetson", "node_load1 1\ntegrastats_gpu_utilization_percent NaN\n"),
    ("dcgm_exporter", "".join(f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i}"}} 5\n' for i in range(500))),
])
def test_odd_answers_never_stop_the_fleet(exporters, actor, kind, text):
    """Values that are not numbers, indexes that are not small numbers, too many GPUs:
    the target gets what can be read, never a failed round for every host."""
    exporters.pages["/odd"] = text
    exporters.pages["/good"] = NODE_1
    odd = fleet.create_host(actor, {"name": "odd", "address": "10.0.0.1", "targets": [
        {"kind": kind, "url": exporters.url("/odd")}]})
    good = fleet.create_host(actor, {"name": "good", "address": "10.0.0.2", "targets": [
        {"kind": "node_exporter", "url": exporters.url("/good")}]})
    Monitor(worker="m1").scrape_hosts()
    good.refresh_from_db()
    assert good.status == "up"
    target = HostTarget.objects.get(host=odd)
    assert target.last_scrape_at is not None
    assert all(len(s) <= 64 for s in Sample.objects.values_list("scope", flat=True))
    assert len({s for s in Sample.objects.filter(scope__startswith=f"gpu:{odd.pk}/")
                .values_list("scope", flat=True)}) <= scrape.MOST_GPUS
    json.dumps(target.latest, allow_nan=False)  # stored as JSON: no NaN


def test_a_changed_exporter_is_in_the_audit_and_its_lease_goes(operator_client, exporters,
                                                               actor):
    from monitoring.models import Lease, State

    host = fleet.create_host(actor, {"name": "h", "address": "10.0.0.1", "targets": [
        {"kind": "node_exporter", "url": exporters.url("/a")}]})
    exporters.pages["/a"] = NODE_1
    Monitor(worker="m1").scrape_hosts()
    old = HostTarget.objects.get(host=host).pk
    assert Lease.objects.filter(name=f"scrape:{old}").exists()
    changed = post(operator_client, f"/api/hosts/{host.pk}", {"targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.1:9100"}]}, "patch")
    assert changed.json()["targets"][0]["url"] == "http://10.0.0.1:9100/metrics"
    event = AuditEvent.objects.get(action="host.updated")
    assert event.after["targets"] == [{"kind": "node_exporter",
                                       "url": "http://10.0.0.1:9100/metrics"}]
    assert event.before["targets"][0]["url"] == exporters.url("/a")
    assert not Lease.objects.filter(name=f"scrape:{old}").exists()
    assert not State.objects.filter(key=f"scrape:{old}").exists()


def test_exporters_only_on_the_fleets_networks(operator_client, settings, exporters, actor):
    body = {"name": "far", "address": "8.8.8.8", "targets": [
        {"kind": "node_exporter", "url": "http://8.8.8.8:9100/metrics"}]}
    refused = post(operator_client, "/api/hosts", body)
    assert refused.status_code == 422
    assert "TANGLAW_FLEET_NETWORKS" in refused.json()["errors"]["targets[0].url"][0]
    assert "TANGLAW_FLEET_NETWORKS" in fleet.discover("8.8.8.8")
    settings.TANGLAW_FLEET_NETWORKS = [*settings.TANGLAW_FLEET_NETWORKS, "8.8.8.0/24"]
    fleet.policy.cache_clear()
    try:
        assert post(operator_client, "/api/hosts", body).status_code == 201
        # a name is checked when it resolves: here, to loopback, which stays allowed
        named = post(operator_client, "/api/hosts", {
            "name": "named", "address": "localhost", "targets": [
                {"kind": "dcgm_exporter",
                 "url": exporters.url("/dcgm").replace("127.0.0.1", "localhost")}]})
        assert named.status_code == 201, named.content
        settings.TANGLAW_FLEET_NETWORKS = ["10.0.0.0/8"]
        fleet.policy.cache_clear()
        host = Host.objects.get(name="named")
        tested = fleet.test_host(actor, host)
        assert not tested[0]["ok"] and "allow-list" in tested[0]["error"]
    finally:
        fleet.policy.cache_clear()
