"""Chart series: x spans exactly the chosen window, idle gaps come back as null points,
long windows read finer tiers where the coarse one has nothing yet, counters read per
minute in every tier, and the ~1,500-point cap holds on every path."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import store
from monitoring.models import Rollup, Sample

pytestmark = pytest.mark.django_db
# 40 minutes into an hour: the hour has no bucket yet, only minutes and raw samples
NOW = datetime(2026, 11, 24, 12, 40, 30, tzinfo=UTC)
MINUTE = store._floor(NOW, 60)  # 12:40:00, so per-minute sums are whole minutes


def add(metric, start, n, step_s, value=50.0, scope="host"):
    Sample.objects.bulk_create([
        Sample(ts=start + timedelta(seconds=i * step_s), metric=metric, scope=scope,
               value=value(i) if callable(value) else value) for i in range(n)])


def hours(metric, first, last, *, count=720, total=None, scope="host"):
    """Hour buckets `first` to `last` hours before NOW's hour (inclusive)."""
    top = store._floor(NOW, 3600)
    Rollup.objects.bulk_create([
        Rollup(tier=3600, bucket=top - timedelta(hours=h), metric=metric, scope=scope,
               count=count, sum=total if total is not None else 50.0 * count, min=50, max=50)
        for h in range(last, first + 1)])


def values(series):
    return [p[1] for p in series["points"] if p[1] is not None]


def nulls(series):
    return [p[0] for p in series["points"] if p[1] is None]


@pytest.mark.parametrize("window", list(store.WINDOWS))
@pytest.mark.parametrize("n", [0, 1, 50])
def test_the_series_spans_exactly_the_window_whatever_the_number_of_points(window, n):
    add("cpu_percent", NOW - timedelta(minutes=30), n, 30)
    store.rollup(NOW)
    out = store.series("cpu_percent", "host", store.WINDOWS[window], NOW)
    assert out["start"] == int(NOW.timestamp()) - store.WINDOWS[window]
    assert out["end"] == int(NOW.timestamp())
    assert all(out["start"] <= t <= out["end"] for t, _ in out["points"])
    assert (len(values(out)) > 0) == (n > 0)


def test_the_series_api_answers_the_window_it_was_asked_for(viewer_client):
    add("cpu_percent", datetime.now(UTC) - timedelta(minutes=5), 1, 5)
    for window, seconds in store.WINDOWS.items():
        before = int(time.time())
        out = viewer_client.get(f"/api/metrics/series?metric=cpu_percent&scope=host"
                                f"&window={window}").json()
        assert out["end"] - out["start"] == seconds
        assert before <= out["end"] <= time.time() + 1
        assert values(out) == [50.0], window


def two_runs(metric="cpu_percent", step_s=5, value=50.0, scope="host"):
    """Ten minutes of samples, twenty idle minutes, ten more minutes."""
    add(metric, MINUTE - timedelta(minutes=50), 10 * 60 // step_s, step_s, value, scope)
    add(metric, MINUTE - timedelta(minutes=20), 10 * 60 // step_s, step_s, value, scope)


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_an_idle_gap_comes_back_as_one_null_point_between_the_runs(window):
    two_runs()
    # a late tick or two inside a run is not a gap: no sample for twice the step is
    late = MINUTE - timedelta(minutes=15)
    Sample.objects.filter(ts__in=[late - timedelta(minutes=30, seconds=5),
                                  late, late + timedelta(seconds=5)]).delete()
    store.rollup(NOW)
    out = store.series("cpu_percent", "host", store.WINDOWS[window], NOW)
    idle_from = int((MINUTE - timedelta(minutes=40)).timestamp())
    idle_to = int((MINUTE - timedelta(minutes=20)).timestamp())
    [gap] = nulls(out)
    assert idle_from <= gap < idle_to
    xs = [p[0] for p in out["points"]]
    assert xs == sorted(set(xs))
    assert max(t for t in xs if t < gap) < idle_from
    assert min(t for t in xs if t > gap) == idle_to
    assert set(values(out)) == {50.0}


def test_counters_and_ratios_break_at_an_idle_gap_too():
    two_runs("requests", step_s=20, value=1.0, scope="backend:1")
    two_runs("errors", step_s=20, value=0.0, scope="backend:1")
    for metric in ("requests", "error_rate"):
        out = store.series(metric, "backend:1", 3600, NOW)
        assert len(nulls(out)) == 1, metric
        assert set(values(out)) == ({3.0} if metric == "requests" else {0.0})


@pytest.mark.parametrize("rolled_up", [False, True])
@pytest.mark.parametrize("window", ["7d", "30d"])
def test_long_windows_show_half_an_hour_of_data_before_any_hour_bucket(window, rolled_up):
    add("cpu_percent", MINUTE - timedelta(minutes=30), 360, 5)
    add("requests", MINUTE - timedelta(minutes=30), 180, 10, 1.0, "backend:1")
    add("errors", MINUTE - timedelta(minutes=30), 180, 10, 0.0, "backend:1")
    if rolled_up:
        store.rollup(NOW)
        assert not Rollup.objects.filter(tier=3600).exists()
    for metric, scope, value in (("cpu_percent", "host", 50.0), ("requests", "backend:1", 6.0),
                                 ("error_rate", "backend:1", 0.0)):
        out = store.series(metric, scope, store.WINDOWS[window], NOW)
        assert len(values(out)) == 30, metric  # one a minute
        assert set(values(out)) == {value}, metric
        assert out["points"][-1][0] == int(MINUTE.timestamp()) - 60
        assert nulls(out) == []


def test_long_windows_read_hours_then_minutes_then_raw_in_a_fixed_number_of_queries(
        django_assert_num_queries):
    hours("cpu_percent", 48, 2)  # the hour rollup has not run for the last hour
    add("cpu_percent", NOW - timedelta(minutes=100), 100 * 12, 5)
    store.rollup(NOW - timedelta(minutes=3))  # minutes up to 12:37, raw after
    Rollup.objects.filter(tier=3600, bucket__gte=store._floor(NOW, 3600) - timedelta(hours=1)
                          ).delete()
    with django_assert_num_queries(3):
        out = store.series("cpu_percent", "host", store.WINDOWS["7d"], NOW)
    xs = [p[0] for p in out["points"]]
    assert xs == sorted(set(xs)) and nulls(out) == []
    top = int(store._floor(NOW, 3600).timestamp())
    assert sum(1 for t in xs if t <= top - 2 * 3600) == 47  # hour buckets
    assert sum(1 for t in xs if t >= top - 3600) >= 95  # then every minute up to now
    assert xs[-1] >= int(NOW.timestamp()) - 60
    assert set(values(out)) == {50.0}
    with django_assert_num_queries(6):  # the two series of the ratio, three tiers each
        store.series("error_rate", "backend:1", store.WINDOWS["30d"], NOW)
    with django_assert_num_queries(2):
        store.series("cpu_percent", "host", store.WINDOWS["24h"], NOW)


def test_counters_read_per_minute_in_every_tier():
    hours("requests", 30, 2, count=120, total=120.0, scope="backend:1")  # 2 a minute
    add("requests", MINUTE - timedelta(minutes=30), 90, 20, 1.0, "backend:1")  # 3 a minute
    out = store.series("requests", "backend:1", store.WINDOWS["7d"], NOW)
    top = int(store._floor(NOW, 3600).timestamp())
    assert {v for t, v in out["points"] if t < top and v is not None} == {2.0}
    assert {v for t, v in out["points"] if t >= top and v is not None} == {3.0}


def test_the_point_cap_holds_when_minutes_stand_in_for_missing_hours():
    start = store._floor(NOW, 60) - timedelta(days=30)
    Rollup.objects.bulk_create([
        Rollup(tier=60, bucket=start + timedelta(minutes=i), metric="cpu_percent",
               scope="host", count=12, sum=12 * 40.0, min=40, max=40)
        for i in range(30 * 24 * 60)], batch_size=2000)
    out = store.series("cpu_percent", "host", store.WINDOWS["30d"], NOW)
    assert 1000 < len(out["points"]) <= store.MAX_POINTS
    assert set(values(out)) == {40.0} and nulls(out) == []
    assert all(out["start"] <= t <= out["end"] for t, _ in out["points"])
