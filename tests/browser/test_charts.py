"""Charts in real Chromium: x spans exactly the chosen window whatever the number of points,
percent and ratio axes are 0–100, tick labels never repeat, gaps break the line. The axis
logic is called from its ES module, and read back from charts that uPlot drew on the
monitoring pages from series answers the test controls (page.route)."""

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from monitoring.store import WINDOWS
from tests.browser.conftest import sign_in
from tests.browser.test_chat_journey import add_backend
from tests.support.fake_engine import FakeEngine

pytestmark = pytest.mark.browser
SERIES = "/api/metrics/series?"


def series_url(url: str) -> bool:
    return SERIES in url

MODULE_CHECKS = """async () => {
  const m = await import("/static/js/chart_axes.js");
  const units = ["ms", "percent", "bytes", "rate", "count", "celsius", "watts", "plain"];
  const repeats = [];
  for (const unit of units) {
    for (let e = -4; e <= 11; e += 1) {
      for (const mult of [1, 2, 2.5, 5]) {
        const step = mult * 10 ** e;
        for (const first of [0, 37 * step, 3997 * step]) {
          const splits = [0, 1, 2, 3, 4, 5].map((i) => first + i * step);
          const labels = m.tickLabels(unit, splits, step);
          if (new Set(labels).size !== labels.length) repeats.push([unit, step, labels]);
        }
      }
    }
  }
  return {
    repeats,
    percentNear100: m.tickLabels("percent", [99.5, 99.75, 100], 0.25),
    percentWhole: m.tickLabels("percent", [0, 20, 40, 60, 80, 100], 20),
    gigabytes: m.tickLabels("bytes", [1.5e9, 1.505e9, 1.51e9], 5e6),
    megabytes: m.tickLabels("bytes", [0, 5e8, 1e9], 5e8),
    noNegativeZero: m.tickLabels("ms", [-1e-12, 0.5, 1], 0.5),
    ranges: {
      percentNear100: m.yRange("percent", 99.5, 99.9),
      percentEmpty: m.yRange("percent", null, null),
      ratioZero: m.yRange(m.plotUnit("ratio"), ...[0, 0].map((v) => v * 100)),
      percentOver: m.yRange("percent", 0, 180),
      msEmpty: m.yRange("ms", null, null),
      msZero: m.yRange("ms", 0, 0),
    },
    ratioAsPercent: m.plotValues("ratio", [0, 0.5, null, 1]),
    isolated: m.isolated([null, 1, null, 2, 3, null, 4]),
    legend: [m.valueLabel("percent", 99.73), m.valueLabel("bytes", 1.5e9),
             m.valueLabel("ms", null), m.valueLabel("ms", 1234.4)],
  };
}"""


def test_the_axis_module_keeps_percent_0_to_100_and_ticks_distinct(page, console):
    page.goto(console.url + "/login/")
    out = page.evaluate(MODULE_CHECKS)
    assert out["repeats"] == []
    assert out["percentNear100"] == ["99.50 %", "99.75 %", "100.00 %"]
    assert out["percentWhole"] == ["0 %", "20 %", "40 %", "60 %", "80 %", "100 %"]
    assert out["gigabytes"] == ["1.500 GB", "1.505 GB", "1.510 GB"]
    assert out["megabytes"] == ["0.0 GB", "0.5 GB", "1.0 GB"]
    assert out["noNegativeZero"][0] == "0.0 ms"
    assert out["ranges"] == {"percentNear100": [0, 100], "percentEmpty": [0, 100],
                             "ratioZero": [0, 100], "percentOver": [0, 180],
                             "msEmpty": [0, 1], "msZero": [0, 1.05]}
    assert out["ratioAsPercent"] == [0, 50, None, 100]
    assert out["isolated"] == [1, 6]
    assert out["legend"] == ["99.73 %", "1.5 GB", "—", "1234 ms"]
    assert page.js_errors == []


def answer(end, points_for):
    """A page.route handler answering /api/metrics/series with points_for(metric, start, end)
    for the window asked, like the server would."""
    def handle(route):
        query = parse_qs(urlparse(route.request.url).query)
        metric, window = query["metric"][0], query["window"][0]
        start = end - WINDOWS[window]
        body = {"metric": metric, "scope": query["scope"][0], "tier": 0, "start": start,
                "end": end, "points": points_for(metric, start, end)}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
    return handle


def host_points(metric, start, end):
    if metric == "cpu_percent":
        return [[end - 600, 99.7]]  # one point
    if metric == "swap_percent":
        return []
    if metric == "disk_percent":  # ten minutes, a gap, ten minutes
        return ([[end - 3000 + 5 * i, 40.0] for i in range(120)] + [[end - 1800, None]]
                + [[end - 1200 + 5 * i, 41.0] for i in range(120)])
    if metric == "net_recv_bytes_per_s":
        return [[end - 1200 + 5 * i, 1.5e9 + 1e5 * i] for i in range(200)]
    if metric == "load_1m":
        return [[end - 1200 + 5 * i, 0.51 + 0.0001 * i] for i in range(200)]
    return [[end - 1200 + 5 * i, 99.5 + 0.002 * i] for i in range(200)]  # memory


READ_CHARTS = """() => Object.fromEntries([...document.querySelectorAll(".chart")].map((el) => [
  el.dataset.metric, el.uplot && {
    x: [el.uplot.scales.x.min, el.uplot.scales.x.max],
    y: [el.uplot.scales.y.min, el.uplot.scales.y.max],
    ticks: el.uplot.axes[1]._values, ys: el.uplot.data[1],
    spanGaps: el.uplot.series[1].spanGaps,
    status: el.querySelector(".chart-status").textContent}]))"""


def read_charts(page, metrics):
    page.wait_for_function("(ms) => ms.every((m) => document.querySelector("
                           "`.chart[data-metric=${m}]`)?.uplot?.axes[1]._values)", arg=metrics)
    return page.evaluate(READ_CHARTS)


def assert_distinct_ticks(chart):
    assert len(set(chart["ticks"])) == len(chart["ticks"]) >= 2, chart["ticks"]


def test_host_charts_span_the_window_with_percent_axes_0_to_100(page, console):
    end = int(time.time())
    sign_in(page, console)
    page.route(series_url, answer(end, host_points))
    page.goto(console.url + "/monitoring/")
    metrics = ["cpu_percent", "memory_percent", "swap_percent", "disk_percent",
               "net_recv_bytes_per_s", "load_1m"]
    for window in ("1h", "7d", "30d"):
        if window != "1h":
            page.get_by_role("button", name=window, exact=True).click()
            page.wait_for_function(
                "(start) => document.querySelector('.chart[data-metric=cpu_percent]')"
                "?.uplot?.scales.x.min === start", arg=end - WINDOWS[window])
        charts = read_charts(page, metrics)
        for metric in metrics:
            assert charts[metric]["x"] == [end - WINDOWS[window], end], (window, metric)
            assert_distinct_ticks(charts[metric])
        for metric in ("cpu_percent", "memory_percent", "swap_percent", "disk_percent"):
            assert charts[metric]["y"] == [0, 100], (window, metric)
            assert charts[metric]["ticks"][-1] == "100 %"
        assert charts["swap_percent"]["status"] == "Swap: no data in the last " \
                                                  f"{window} yet."
        assert charts["cpu_percent"]["status"] == ""
        assert None in charts["disk_percent"]["ys"]
        assert charts["disk_percent"]["spanGaps"] is False
        assert all(t.endswith(" GB") for t in charts["net_recv_bytes_per_s"]["ticks"])
        assert charts["load_1m"]["y"][0] == 0
    assert page.js_errors == []


def test_a_zero_error_rate_reads_0_to_100_percent(page, console):
    engine = FakeEngine("vllm").start()
    try:
        sign_in(page, console)
        end = int(time.time())
        page.route(series_url, answer(end, lambda metric, start, end: (
            [[end - 1200 + 60 * i, 0.0] for i in range(20)] if metric in (
                "error_rate", "engine_kv_cache_usage") else [[end - 60, 12.0]])))
        add_backend(page, console, "edge-rate", "vllm", engine.url)
        expect(page.locator(".chart[data-metric=error_rate] .uplot")).to_be_visible(
            timeout=15000)
        charts = read_charts(page, ["error_rate", "engine_kv_cache_usage", "ttft_ms"])
    finally:
        engine.stop()
    for metric in ("error_rate", "engine_kv_cache_usage"):
        assert charts[metric]["y"] == [0, 100], metric
        assert charts[metric]["ticks"][0] == "0 %" and charts[metric]["ticks"][-1] == "100 %"
    for metric, chart in charts.items():
        assert chart["x"] == [end - 3600, end], metric
        assert_distinct_ticks(chart)
    assert page.js_errors == []
