// The live charts: one point per /stats sample, the last five minutes of them, drawn with
// uPlot (vendored in /admin/vendor, loaded as the global `uPlot` by index.html).

const WINDOW = 300; // samples, one a second
const HEIGHT = 140;
const COLORS = { blue: "#2f7fe0", green: "#1f9d6b", orange: "#e0842f", red: "#d64545" };

// What each chart draws: its element, and its series as [label, color, value of a stats sample].
const CHARTS = [
  ["chart-connections", [["connections", COLORS.blue, (s) => s.total_connections]]],
  ["chart-users", [["users", COLORS.green, (s) => s.unique_users]]],
  [
    "chart-messages",
    [
      ["in/s", COLORS.blue, (s) => s.messages_in_per_sec],
      ["out/s", COLORS.orange, (s) => s.deliveries_per_sec],
    ],
  ],
  [
    "chart-latency",
    [
      ["p50 µs", COLORS.green, (s) => s.fanout_latency_us?.p50],
      ["p99 µs", COLORS.red, (s) => s.fanout_latency_us?.p99],
    ],
  ],
];

const axis = { stroke: "#5b6472", grid: { stroke: "#e8ebf0" }, ticks: { stroke: "#e8ebf0" } };
const hhmmss = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
const compact = new Intl.NumberFormat("en-US", { notation: "compact" });
const valueAxis = { ...axis, size: 44, values: (_u, ticks) => ticks.map((v) => compact.format(v)) };
const timeAxis = { ...axis, size: 30, space: 70, values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], hhmmss)) };

class LiveChart {
  constructor(el, series) {
    this.series = series;
    this.data = [[], ...series.map(() => [])];
    this.plot = new uPlot(
      {
        width: el.clientWidth || 300,
        height: HEIGHT,
        padding: [8, 20, 0, 0], // room on the right for the last time label
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { y: { range: (_u, min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [timeAxis, valueAxis],
        series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, points: { show: false } }))],
      },
      this.data,
      el,
    );
    // Charts follow their card's width as the window resizes.
    new ResizeObserver(() => this.plot.setSize({ width: el.clientWidth, height: HEIGHT })).observe(el);
  }

  push(time, stats) {
    this.data[0].push(time);
    this.series.forEach(([, , value], i) => this.data[i + 1].push(value(stats) ?? null));
    if (this.data[0].length > WINDOW) this.data.forEach((column) => column.shift());
    this.plot.setData(this.data);
  }
}

export class LiveCharts {
  constructor() {
    this.charts = CHARTS.map(([id, series]) => new LiveChart(document.getElementById(id), series));
  }

  // Adds a sample taken now (the page's clock: /stats has whole seconds only).
  push(stats) {
    const time = Date.now() / 1000;
    for (const chart of this.charts) chart.push(time, stats);
  }
}
