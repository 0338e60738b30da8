"""Rollups equal a direct computation; pruning keeps exactly the configured windows; chart
queries use the series index and a fixed number of queries whatever the data size."""

import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from monitoring import store
from monitoring.models import Rollup, Sample

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)


def samples(n, metric="ttft_ms", scope="backend:1", start=NOW - timedelta(hours=3), step_s=7,
            seed=7):
    rng = random.Random(seed)
    rows = [Sample(ts=start + timedelta(seconds=i * step_s), metric=metric, scope=scope,
                   value=round(rng.lognormvariate(5, 0.6), 2)) for i in range(n)]
    Sample.objects.bulk_create(rows)
    return rows


def test_minute_and_hour_buckets_equal_a_direct_computation():
    rows = samples(1500)  # 7 s apart: about 3 hours
    store.rollup(NOW)
    for bucket in Rollup.objects.filter(tier=60):
        members = [r.value for r in rows
                   if bucket.bucket <= r.ts < bucket.bucket + timedelta(minutes=1)]
        assert bucket.count == len(members)
        assert bucket.sum == pytest.approx(sum(members))
        assert (bucket.min, bucket.max) == (min(members), max(members))
        assert sum(bucket.hist) == len(members)
    hours = list(Rollup.objects.filter(tier=3600).order_by("bucket"))
    assert len(hours) == 3
    for hour in hours:
        members = [r.value for r in rows if hour.bucket <= r.ts < hour.bucket + timedelta(hours=1)]
        assert (hour.count, hour.min, hour.max) == (len(members), min(members), max(members))
        assert hour.sum == pytest.approx(sum(members))
    before = list(Rollup.objects.values_list("tier", "bucket", "count", "sum"))
    store.rollup(NOW)  # again: the same rows, updated in place
    assert sorted(Rollup.objects.values_list("tier", "bucket", "count", "sum")) == sorted(before)


def test_a_late_sample_still_lands_in_its_minute():
    samples(20, start=NOW - timedelta(minutes=4), step_s=5)
    store.rollup(NOW)
    late_ts = NOW - timedelta(minutes=3, seconds=50)
    Sample.objects.create(ts=late_ts, metric="ttft_ms", scope="backend:1", value=9999)
    store.rollup(NOW + timedelta(seconds=20))
    bucket = Rollup.objects.get(tier=60, metric="ttft_ms", bucket=store._floor(late_ts, 60))
    assert bucket.max == 9999


def test_percentiles_from_buckets_are_close_to_exact_ones():
    rows = samples(3000, start=NOW - timedelta(hours=5, minutes=52), step_s=7)  # whole minutes
    store.rollup(NOW)
    stats = store.window_stats("ttft_ms", "backend:1", 6 * 3600, NOW)
    values = sorted(r.value for r in rows)
    exact = statistics.quantiles(values, n=100)
    assert stats["count"] == len(values)
    assert stats["avg"] == pytest.approx(statistics.fmean(values))
    assert stats["p50"] == pytest.approx(exact[49], rel=0.25)  # within the 1-2-5 bucket
    assert stats["p95"] == pytest.approx(exact[94], rel=0.35)
    assert stats["min"] <= stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]


def test_pruning_keeps_exactly_the_configured_windows(settings):
    settings.TANGLAW_RAW_RETENTION_H = 2
    settings.TANGLAW_MINUTE_RETENTION_D = 1
    settings.TANGLAW_HOUR_RETENTION_D = 3
    for hours in (1, 3):
        Sample.objects.create(ts=NOW - timedelta(hours=hours), metric="m", scope="host",
                              value=1)
    for tier, ages in ((60, (timedelta(hours=23), timedelta(hours=25))),
                       (3600, (timedelta(days=2), timedelta(days=4)))):
        for age in ages:
            Rollup.objects.create(tier=tier, bucket=NOW - age, metric="m", scope="host",
                                  count=1, sum=1, min=1, max=1)
    assert store.prune(NOW) == {"raw": 1, "minute": 1, "hour": 1}
    assert list(Sample.objects.values_list("ts", flat=True)) == [NOW - timedelta(hours=1)]
    assert sorted(Rollup.objects.values_list("tier", "bucket")) == [
        (60, NOW - timedelta(hours=23)), (3600, NOW - timedelta(days=2))]


@pytest.mark.parametrize("window, tier", [("1h", 0), ("24h", 60), ("7d", 3600), ("30d", 3600)])
def test_charts_read_the_tier_that_fits_the_window(window, tier):
    assert store.tier_for(store.WINDOWS[window]) == tier
    assert store.WINDOWS[window] / max(tier, 5) <= store.MAX_POINTS  # host samples every 5 s


def test_series_cost_a_fixed_number_of_queries(django_assert_num_queries):
    samples(50, start=NOW - timedelta(minutes=30), step_s=30)
    with django_assert_num_queries(1):
        small = store.series("ttft_ms", "backend:1", 3600, NOW)
    samples(5000, start=NOW - timedelta(minutes=59), step_s=0.7, seed=1)
    with django_assert_num_queries(1):
        big = store.series("ttft_ms", "backend:1", 3600, NOW)
    assert len(small["points"]) == 50 and len(big["points"]) <= store.MAX_POINTS
    store.rollup(NOW)
    with django_assert_num_queries(2):  # the rollups, and the minutes not rolled up yet
        day = store.series("ttft_ms", "backend:1", 86400, NOW)
    assert day["tier"] == 60 and 0 < len(day["points"]) <= 61
    with django_assert_num_queries(2):
        ratio = store.series("error_rate", "backend:1", 3600, NOW)  # tier 0: one per series
    assert ratio["points"] == []


def test_chart_queries_use_the_series_index():
    samples(200)
    store.rollup(NOW)
    with connection.cursor() as cursor:
        for table, where in (
                ("monitoring_sample", "metric = 'ttft_ms' AND scope = 'backend:1' AND ts >= '1'"),
                ("monitoring_rollup", "tier = 60 AND metric = 'ttft_ms' AND scope = 'backend:1' "
                                      "AND bucket >= '1'")):
            cursor.execute(f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE {where}")  # noqa: S608
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "USING INDEX" in plan and ("series" in plan or "autoindex" in plan), plan


def test_error_rate_and_requests_per_minute_are_sums_per_bucket():
    for i, failed in enumerate([0, 1, 0, 0]):
        ts = NOW - timedelta(minutes=10, seconds=-i * 5)
        Sample.objects.bulk_create([
            Sample(ts=ts, metric="requests", scope="backend:1", value=1),
            Sample(ts=ts, metric="errors", scope="backend:1", value=failed)])
    requests = store.series("requests", "backend:1", 3600, NOW)
    rate = store.series("error_rate", "backend:1", 3600, NOW)
    assert [p[1] for p in requests["points"]] == [4.0]
    assert [p[1] for p in rate["points"]] == [0.25]


def test_a_day_chart_reaches_up_to_now_before_the_next_rollup():
    samples(30, start=NOW - timedelta(minutes=10), step_s=20)
    store.rollup(NOW - timedelta(minutes=5))  # the last rollup ran five minutes ago
    day = store.series("ttft_ms", "backend:1", 86400, NOW)
    minutes = [p[0] for p in day["points"]]
    assert minutes == sorted(set(minutes))
    assert max(minutes) >= int((NOW - timedelta(minutes=1)).timestamp()) - 60
