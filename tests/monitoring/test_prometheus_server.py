"""Tanglaw beside a real Prometheus (Debian's): promtool finds nothing wrong with its
/metrics, and a Prometheus given only the http_sd URL discovers the fleet's exporters and
Tanglaw itself, and scrapes them."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.prometheus_server import PrometheusServer, check_metrics

pytestmark = pytest.mark.slow


@pytest.mark.django_db
def test_promtool_finds_nothing_wrong_with_tanglaws_metrics(actor):
    from datetime import timedelta

    from django.utils import timezone

    from agents.models import Agent, Conversation, Run
    from console.models import Backend
    from monitoring import fleet, store
    from monitoring.collectors import Reading

    backend = Backend.objects.create(name="edge", kind="vllm", base_url="http://10.0.0.1:8000")
    agent = Agent.objects.create(name="a", backend=backend, model="m")
    conversation = Conversation.objects.create(owner_id=actor.user_id, agent=agent)
    for total, outcome in ((300, "success"), (900, "error")):
        Run.objects.create(conversation=conversation, agent=agent, backend=backend, model="m",
                           started_at=timezone.now() - timedelta(seconds=5), total_ms=total,
                           tokens_out=10, outcome=outcome)
    fleet.create_host(actor, {"name": "jetson", "address": "10.0.0.1", "targets": [
        {"kind": "node_exporter", "url": "http://10.0.0.1:9100/metrics"}]})
    store.record([Reading("cpu_percent", "host", 12.5),
                  Reading("engine_requests_waiting", f"backend:{backend.pk}", 3)])
    response = Client().get("/metrics")
    assert response.status_code == 200
    checked = check_metrics(response.content.decode())
    assert checked.returncode == 0 and checked.stdout == "" and checked.stderr == "", \
        checked.stdout + checked.stderr


def test_a_real_prometheus_discovers_the_fleet_and_scrapes_tanglaw(tmp_path):
    import subprocess
    import sys

    from tests.support.console_server import ADMIN_PASSWORD, ROOT, ConsoleServer, signed_in
    from tests.support.node_exporter import NodeExporter

    exporter = NodeExporter(tmp_path).start()
    (tmp_path / "data").mkdir()
    console = ConsoleServer(tmp_path / "data").start()
    prometheus = None
    try:
        admin = signed_in(console.url, ADMIN_PASSWORD)
        csrf = {"X-CSRFToken": admin.cookies["csrftoken"], "Referer": console.url}
        made = admin.post("/api/hosts", headers=csrf, json={
            "name": "debian-box", "address": "127.0.0.1", "labels": {"site": "lab"},
            "targets": [{"kind": "node_exporter", "url": exporter.url}]})
        assert made.status_code == 201, made.text
        admin.close()
        token = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "admin", "--name", "prometheus"],
            cwd=ROOT, env=console.env, capture_output=True, text=True, check=True,
        ).stdout.strip().splitlines()[-1]
        import httpx

        direct = httpx.get(f"{console.url}/api/prometheus/targets",
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert direct.status_code == 200, (direct.status_code, direct.text, token[:6])
        # the prometheus.yml the README documents, with this console's address and token
        sd = [{"url": f"{console.url}/api/prometheus/targets", "refresh_interval": "1s",
               "authorization": {"type": "Bearer", "credentials": token}}]
        prometheus = PrometheusServer(tmp_path, {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                # the exporters and engines get no token; Tanglaw's own job carries it
                {"job_name": "tanglaw-fleet", "http_sd_configs": sd, "relabel_configs": [
                    {"source_labels": ["kind"], "regex": "tanglaw", "action": "drop"}]},
                {"job_name": "tanglaw", "http_sd_configs": sd,
                 "authorization": {"type": "Bearer", "credentials": token},
                 "relabel_configs": [{"source_labels": ["kind"], "regex": "tanglaw",
                                      "action": "keep"}]}]}).start()

        def healthy(targets):
            kinds = {t["labels"].get("kind"): t["health"] for t in targets}
            return kinds.get("node_exporter") == "up" and kinds.get("tanglaw") == "up"

        targets = prometheus.wait_for(healthy)
        node = next(t for t in targets if t["labels"].get("kind") == "node_exporter")
        assert node["labels"]["host"] == "debian-box" and node["labels"]["site"] == "lab"
        assert node["scrapePool"] == "tanglaw-fleet"  # the job without the token
        assert node["scrapeUrl"] == exporter.url
        own = next(t for t in targets if t["labels"].get("kind") == "tanglaw")
        assert own["scrapeUrl"] == f"{console.url}/metrics" and own["scrapePool"] == "tanglaw"
        assert {t["scrapePool"] for t in targets if t["labels"].get("kind") == "tanglaw"} \
            == {"tanglaw"}
        # and what it scraped from Tanglaw is there to query

        def queried(expr):
            return httpx.get(prometheus.url + "/api/v1/query", params={"query": expr},
                             timeout=5).json()["data"]["result"]

        prometheus.wait_for(lambda _: bool(queried('up{kind="tanglaw"}')))
        assert queried('up{kind="tanglaw"}')[0]["value"][1] == "1"
        assert queried("node_memory_MemTotal_bytes")
    finally:
        if prometheus is not None:
            prometheus.stop()
        console.stop()
        exporter.stop()
