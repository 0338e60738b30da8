"""Several writers store a backend's status (the monitor, the list page's poll, "Test
connection"), each from a Backend it read a while ago: the status-change rows still form
one chain, and a model count nobody measured is unknown ("—", null), never 0."""

import re
import threading

import pytest

from console.actions.backends import record_probe
from console.backends import Report
from console.models import Backend, BackendStatusChange


def chain(backend):
    return list(BackendStatusChange.objects.filter(backend=backend).order_by("ts", "id")
                .values_list("previous", "status"))


def assert_one_chain(backend):
    rows = chain(backend)
    assert rows, "no status change was recorded"
    assert rows[0][0] == "unknown"
    for (_, before), (previous, _) in zip(rows, rows[1:], strict=False):
        assert previous == before, rows
    assert all(previous != status for previous, status in rows), rows
    backend.refresh_from_db()
    assert backend.status == rows[-1][1]


@pytest.mark.django_db
def test_interleaved_writers_with_stale_backends_record_one_chain():
    Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.1:11434")
    monitor, poll, test = (Backend.objects.get(name="edge") for _ in range(3))
    record_probe(monitor, Report("healthy"))
    record_probe(poll, Report("unhealthy", error="connection refused"))  # read as unknown
    record_probe(test, Report("healthy"))  # read as unknown too
    record_probe(monitor, Report("healthy"))  # it last wrote healthy; the row says otherwise
    assert chain(monitor) == [("unknown", "healthy"), ("healthy", "unhealthy"),
                              ("unhealthy", "healthy")]
    assert_one_chain(monitor)


@pytest.mark.usefixtures("live_db")
def test_concurrent_writers_record_one_chain():
    Backend.objects.create(name="edge", kind="ollama", base_url="http://10.0.0.1:11434")
    start = threading.Barrier(3)
    errors = []

    def writer(statuses):
        from django.db import connection

        backend = Backend.objects.get(name="edge")  # read once, as each writer does
        try:
            start.wait()
            for status in statuses:
                record_probe(backend, Report(status))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(plan * 15,)) for plan in (
        ["healthy", "unhealthy"], ["unhealthy", "degraded"], ["degraded", "healthy"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(chain(Backend.objects.get(name="edge"))) > 3
    assert_one_chain(Backend.objects.get(name="edge"))


def models_cell(rows: str, name: str) -> str:
    row = next(r for r in rows.split("<tr>") if f">{name}</a>" in r)
    return re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[6].strip()


@pytest.mark.django_db
def test_a_model_count_nobody_measured_is_a_dash_and_null_not_zero(operator_client, fake,
                                                                   settings):
    engine = fake("ollama")
    listed = Backend.objects.create(name="listed", kind="ollama", base_url=engine.url)
    fresh = Backend.objects.create(name="fresh", kind="ollama", base_url=engine.url,
                                   enabled=False)
    assert operator_client.post(f"/api/backends/{listed.pk}/test").json()["status"] == "healthy"
    listed.refresh_from_db()
    assert listed.model_count == 2
    settings.TANGLAW_STATUS_MAX_AGE_S = 0  # every poll re-probes (health only, no models)
    for _ in range(2):
        rows = operator_client.get("/backends/", headers={"HX-Request": "true"}).content.decode()
        assert models_cell(rows, "listed") == "2"  # the poll did not count models: kept
        assert models_cell(rows, "fresh") == "—"
    api = {b["name"]: b for b in operator_client.get("/api/backends").json()}
    assert api["listed"]["model_count"] == 2 and api["fresh"]["model_count"] is None
    assert operator_client.get(f"/api/backends/{fresh.pk}").json()["model_count"] is None

    engine.stop()
    assert operator_client.post(f"/api/backends/{listed.pk}/test").json()["status"] == (
        "unhealthy")
    rows = operator_client.get("/backends/", headers={"HX-Request": "true"}).content.decode()
    assert models_cell(rows, "listed") == "—"
    assert operator_client.get(f"/api/backends/{listed.pk}").json()["model_count"] is None
