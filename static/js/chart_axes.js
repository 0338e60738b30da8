// What a chart shows, apart from drawing it: the axes' ranges, tick and legend labels,
// which points stand alone. Pure functions of the series (no DOM, no uPlot), so the
// browser tests can call them directly as well as through a drawn chart.

const SUFFIX = {
  ms: " ms", percent: " %", rate: "/s", count: "", celsius: " °C", watts: " W", plain: "",
};
const BYTES = [[1e12, " TB"], [1e9, " GB"], [1e6, " MB"], [1e3, " kB"], [1, " B"]];

// A ratio (0–1) is drawn as a percent, so both share one axis: 0–100 %.
export function plotUnit(unit) {
  if (unit === "ratio") return "percent";
  return unit === "bytes" || unit in SUFFIX ? unit : "plain";
}

export function plotValues(unit, ys) {
  return unit === "ratio" ? ys.map((v) => (v == null ? null : v * 100)) : ys;
}

// The divisor and suffix for numbers of this size: one prefix for a whole axis, chosen
// by its largest tick, so "900 MB, 1.0 GB" never mixes units on one axis.
function scaleOf(unit, magnitude) {
  if (unit !== "bytes") return [1, SUFFIX[unit] ?? ""];
  return BYTES.find(([divisor]) => magnitude >= divisor) || BYTES[BYTES.length - 1];
}

// The fewest decimals that write `step` exactly (0.25 → 2, 0.5 → 1, 20 → 0).
export function decimalsFor(step) {
  if (!(step > 0) || !Number.isFinite(step)) return 0;
  for (let d = 0; d < 10; d += 1) {
    const scaled = step * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
  }
  return 10;
}

function fixed(value, decimals) {
  const text = value.toFixed(decimals);
  return Number(text) === 0 ? (0).toFixed(decimals) : text; // no "-0.0"
}

// Tick labels with as many decimals as the spacing of the ticks needs, and more if two
// would still read the same: ticks 99.5, 99.75 and 100 never all say "100 %".
export function tickLabels(unit, splits, step) {
  const magnitude = Math.max(0, ...splits.map((v) => Math.abs(v)));
  const [divisor, suffix] = scaleOf(unit, magnitude);
  let decimals = decimalsFor(step / divisor);
  const write = () => splits.map((v) => fixed(v / divisor, decimals) + suffix);
  let labels = write();
  while (new Set(labels).size < labels.length && decimals < 10) {
    decimals += 1;
    labels = write();
  }
  return labels;
}

// A single value (the legend), to about four significant digits.
export function valueLabel(unit, value) {
  if (value == null || !Number.isFinite(value)) return "—";
  const [divisor, suffix] = scaleOf(unit, Math.abs(value));
  const scaled = value / divisor;
  const digits = scaled === 0 ? 0 : Math.floor(Math.log10(Math.abs(scaled)));
  const decimals = Math.min(6, Math.max(0, 3 - digits));
  return `${Number(fixed(scaled, decimals))}${suffix}`;
}

// y from zero (everything charted here is a size, a duration, a rate or a count) to a
// little above the largest value; a percent always 0–100, more only if a value is.
export function yRange(unit, min, max) {
  const hasData = Number.isFinite(min) && Number.isFinite(max);
  if (unit === "percent") {
    return [0, hasData && max > 100 ? Math.ceil(max / 10) * 10 : 100];
  }
  if (!hasData) return [0, 1];
  const low = Math.min(0, min);
  const high = max > low ? max : low + Math.max(1, Math.abs(low));
  return [low, high + (high - low) * 0.05];
}

// Points with no neighbour on either side: a line cannot show them, so they get a dot.
export function isolated(ys) {
  const out = [];
  ys.forEach((v, i) => {
    if (v != null && ys[i - 1] == null && ys[i + 1] == null) out.push(i);
  });
  return out;
}

// The colours of the current theme, from the CSS custom properties of app.css (the
// toggle or prefers-color-scheme decide which set applies).
export function themeColours() {
  const css = getComputedStyle(document.documentElement);
  const get = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const dark = get("--tg-scheme", "light") === "dark";
  return {
    dark,
    line: get("--tg-chart-line", "#1565c0"),
    fill: get("--tg-chart-fill", "rgba(21,101,192,0.08)"),
    axis: get("--tg-chart-axis", "#3d4451"),
    grid: get("--tg-chart-grid", "rgba(0,0,0,0.08)"),
    // several lines in one chart: told apart in either theme
    palette: dark
      ? ["#64b5f6", "#81c784", "#ffb74d", "#ce93d8", "#4dd0e1", "#bdbdbd"]
      : ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#757575"],
  };
}

// An axis drawn in the theme's colours, on top of `extra`.
export function themedAxis(colours, extra = {}) {
  return { stroke: colours.axis, grid: { stroke: colours.grid }, ticks: { stroke: colours.grid },
           ...extra };
}

// uPlot options for one series: x is exactly the window the server answered for,
// whatever the number of points; the line breaks at null points (idle gaps).
export function chartOptions({ title, unit, width, start, end, ys }) {
  const shown = plotUnit(unit);
  const lonely = isolated(ys);
  const colours = themeColours();
  return {
    title, width, height: 180,
    series: [{}, {
      label: title, stroke: colours.line, width: 1.5, fill: colours.fill,
      spanGaps: false, value: (u, v) => valueLabel(shown, v),
      points: { filter: (u, seriesIdx, show) => (show || !lonely.length ? null : lonely) },
    }],
    axes: [themedAxis(colours), themedAxis(colours, {
      size: 70,
      values: (u, splits, axisIdx, space, step) => tickLabels(shown, splits, step),
    })],
    scales: {
      x: { time: true, range: () => [start, end] },
      y: { range: (u, min, max) => yRange(shown, min, max) },
    },
    legend: { live: true },
  };
}
