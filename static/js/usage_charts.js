// Gateway usage charts: the series travel in the page itself (the data-series attribute
// of #usage-charts: no second request, nothing executed), drawn with the vendored uPlot
// (a global) and the axis rules of chart_axes.js. Each [data-usage-chart] element names
// what it draws; the charts are drawn again when htmx swaps in another window or group.
import { isolated, themeColours, themedAxis, tickLabels, valueLabel, yRange } from "./chart_axes.js";

// whole numbers only on count axes: half a request is not a thing
const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4,
                     1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 1e8, 1e9, 1e10];
const drawn = [];

// The lines of each chart: [label, values] pairs.
export function linesFor(kind, data) {
  if (kind === "requests") return data.by_group.map((g) => [g.label, g.requests]);
  if (kind === "tokens") return [["tokens in", data.tokens_in], ["tokens out", data.tokens_out]];
  if (kind === "errors") return [["errors", data.errors], ["refused by a key's limit", data.limited]];
  return [["TTFT p95", data.ttft_p95_ms]];
}

function options(el, data, lines) {
  const unit = el.dataset.unit;
  const step = data.step === "day" ? 86400 : 3600;
  const start = data.ts[0];
  const end = data.ts[data.ts.length - 1] + step; // the last bucket, still filling, whole
  const counts = unit === "count";
  const colours = themeColours();
  return {
    title: el.dataset.title, width: Math.max(el.clientWidth, 280), height: 200,
    series: [{}, ...lines.map(([label, ys], i) => {
      const lonely = isolated(ys);
      return {
        label, stroke: colours.palette[i % colours.palette.length], width: 1.5, spanGaps: false,
        value: (u, v) => valueLabel(unit, v),
        // a count holds for its whole bucket: a step, not a slope between buckets
        paths: counts ? uPlot.paths.stepped({ align: 1 }) : undefined,
        points: { filter: (u, seriesIdx, show) => (show || !lonely.length ? null : lonely) },
      };
    })],
    axes: [themedAxis(colours), themedAxis(colours, {
      size: 70, incrs: counts ? COUNT_STEPS : undefined,
      values: (u, splits, axisIdx, space, incr) => tickLabels(unit, splits, incr),
    })],
    scales: {
      x: { time: true, range: () => [start, end] },
      y: { range: (u, min, max) => yRange(unit, min, max) },
    },
    legend: { live: true },
  };
}

function drawAll() {
  while (drawn.length) drawn.pop().destroy();
  const source = document.getElementById("usage-charts");
  if (!source) return;
  const data = JSON.parse(source.dataset.series);
  document.querySelectorAll("[data-usage-chart]").forEach((el) => {
    el.replaceChildren();
    const lines = linesFor(el.dataset.usageChart, data);
    const counts = el.dataset.unit === "count";
    // a count holds until its bucket ends: one more point at the window's end carries the
    // last bucket's step across it (measurements get a gap there instead)
    const step = data.step === "day" ? 86400 : 3600;
    const xs = [...data.ts, data.ts[data.ts.length - 1] + step];
    const ys = lines.map(([, values]) => [...values, counts ? values[values.length - 1] : null]);
    const plot = new uPlot(options(el, data, lines), [xs, ...ys], el);
    if (!ys.some((values) => values.some((v) => v != null && v !== 0))) {
      el.append(Object.assign(document.createElement("p"), {
        className: "chart-status muted",
        textContent: `${el.dataset.title}: nothing measured in this window.`,
      }));
    }
    el.uplot = plot; // the browser test reads what was drawn from here
    drawn.push(plot);
  });
}

// a phone turned sideways, a window made narrower: the charts follow their boxes
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => drawn.forEach((plot) => {
    plot.setSize({ width: Math.max(plot.root.parentElement.clientWidth, 280), height: 200 });
  }), 100);
});

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", drawAll);
} else {
  drawAll();
}
document.addEventListener("htmx:afterSwap", drawAll);
document.addEventListener("tanglaw:theme", drawAll);
