// Charts: any element with data-metric and data-scope becomes a uPlot line chart of
// /api/metrics/series. The nearest [data-windows] container holds the window buttons
// (1h, 24h, 7d, 30d); charts also draw when htmx swaps them in.
(() => {
  const units = {
    ms: (v) => `${Math.round(v)} ms`, percent: (v) => `${v.toFixed(0)} %`,
    bytes: (v) => (v >= 1e9 ? `${(v / 1e9).toFixed(2)} GB` : v >= 1e6 ? `${(v / 1e6).toFixed(1)} MB`
                   : `${(v / 1e3).toFixed(1)} kB`),
    ratio: (v) => `${(v * 100).toFixed(1)} %`, rate: (v) => `${v.toFixed(1)}/s`,
    count: (v) => `${Math.round(v)}`, celsius: (v) => `${Math.round(v)} °C`,
    watts: (v) => `${Math.round(v)} W`, plain: (v) => `${+v.toFixed(2)}`,
  };
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
    const format = units[el.dataset.unit] || units.plain;
    if (drawn.has(el)) { drawn.get(el).destroy(); drawn.delete(el); }
    if (!data.points.length) {
      status.textContent = `${el.dataset.title}: no data in the last ${windowName} yet.`;
      return;
    }
    status.textContent = "";
    const xs = data.points.map((p) => p[0]);
    const ys = data.points.map((p) => p[1]);
    const plot = new uPlot({
      title: el.dataset.title, width: Math.max(el.clientWidth, 280), height: 180,
      series: [{}, { label: el.dataset.title, stroke: "#1565c0", width: 1.5,
                     fill: "rgba(21,101,192,0.08)", value: (u, v) => (v == null ? "—" : format(v)) }],
      axes: [{}, { values: (u, vals) => vals.map(format), size: 70 }],
      scales: { x: { time: true } }, legend: { live: true },
    }, [xs, ys], el);
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
  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  document.addEventListener("htmx:afterSwap", (e) => drawAll(e.target));
})();
