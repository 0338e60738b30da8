// Charts: any element with data-metric and data-scope becomes a uPlot line chart of
// /api/metrics/series. The nearest [data-windows] container holds the window buttons
// (1h, 24h, 7d, 30d); charts also draw when htmx swaps them in. What the axes show is
// decided in chart_axes.js; uPlot itself comes from the vendored IIFE (a global).
import { chartOptions, plotValues } from "./chart_axes.js";

const drawn = new Map();

async function draw(el) {
  const box = el.closest("[data-windows]");
  const windowName = (box && box.dataset.window) || "1h";
  const params = new URLSearchParams({ metric: el.dataset.metric, scope: el.dataset.scope,
                                       window: windowName });
  const status = el.querySelector(".chart-status") || el.appendChild(
    Object.assign(document.createElement("p"), { className: "chart-status muted" }));
  let data;
  try {
    const response = await fetch(`/api/metrics/series?${params}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    data = await response.json();
  } catch (error) {
    status.textContent = `Could not load ${el.dataset.title}: ${error.message}`;
    return;
  }
  if (drawn.has(el)) { drawn.get(el).destroy(); drawn.delete(el); }
  const hasData = data.points.some((p) => p[1] != null);
  // an empty chart still draws its window, so "nothing yet" and "nothing lately" differ
  status.textContent = hasData ? "" : `${el.dataset.title}: no data in the last ${windowName} yet.`;
  const xs = data.points.map((p) => p[0]);
  const ys = plotValues(el.dataset.unit, data.points.map((p) => p[1]));
  const plot = new uPlot(chartOptions({
    title: el.dataset.title, unit: el.dataset.unit, width: Math.max(el.clientWidth, 280),
    start: data.start, end: data.end, ys,
  }), [xs, ys], el);
  el.append(status); // below the chart, so the titles in a row of charts stay aligned
  el.uplot = plot; // the browser tests read the drawn scales from here
  drawn.set(el, plot);
}

function drawAll(root) {
  root.querySelectorAll("[data-metric][data-scope]").forEach(draw);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-set-window]");
  if (!button) return;
  const box = button.closest("[data-windows]");
  box.dataset.window = button.dataset.setWindow;
  box.querySelectorAll("[data-set-window]").forEach((b) =>
    b.setAttribute("aria-pressed", String(b === button)));
  drawAll(box);
});
// a module runs before DOMContentLoaded unless it is loaded late (async, injected)
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
} else {
  drawAll(document);
}
document.addEventListener("htmx:afterSwap", (e) => drawAll(e.target));
// a new theme: every drawn chart again, in its colours
document.addEventListener("tanglaw:theme", () => drawAll(document));
