"""SVG line charts for perf/run, with the Python standard library only.

write_charts(records, folder, date, labels) draws, for each fan-out pace of the run,
latency p99 and server CPU per delivery against the subscriber count, one line per hub,
both axes logarithmic, and returns [(title, path)].

Also usable alone: python3 perf/charts.py perf/out/STAMP/summary.json OUT_FOLDER
"""

import json
import math
import sys
from pathlib import Path
from xml.sax.saxutils import escape

COLORS = {
    "neonex": "#d62728",
    "neonex-2shards": "#ff9896",
    "uws": "#1f77b4",
    "ws": "#2ca02c",
    "gorilla": "#17becf",
    "socketio": "#9467bd",
    "nchan": "#8c564b",
}
W, H = 760, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 40, 50


def _ticks(lo, hi):
    """Powers of ten and their 2x/5x between lo and hi (log axis)."""
    out = []
    e = math.floor(math.log10(lo))
    while 10**e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10**e
            if lo / 1.0001 <= v <= hi * 1.0001:
                out.append(v)
        e += 1
    return out


def _label(v):
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def _style(hub):
    color = COLORS.get(hub, "#333")
    dash = ' stroke-dasharray="6 4"' if hub == "neonex-2shards" else ""
    width = 3 if hub == "neonex" else 2
    return color, width, dash


def line_chart(path, title, xlabel, ylabel, series, labels):
    """series: {hub: [(x, y), ...]} with x, y > 0."""
    pts = [(x, y) for s in series.values() for x, y in s if x > 0 and y and y > 0]
    if not pts:
        return False
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 / 2, x1 * 2
    y0 = 10 ** math.floor(math.log10(min(ys)))
    y1 = 10 ** math.ceil(math.log10(max(ys)))
    if y0 == y1:
        y1 = y0 * 10
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x):
        return LEFT + pw * (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))

    def sy(y):
        return TOP + ph * (1 - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for v in _ticks(y0, y1):
        y = sy(v)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    for v in sorted(set(xs)):
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{_label(v)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">{escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + ph / 2})">{escape(ylabel)} (log scale)</text>'
    )
    # Lines: neonex last, so that it is drawn on top; legend: in the given order.
    order = sorted(series, key=lambda h: (h == "neonex", h == "neonex-2shards"))
    for hub in order:
        s = sorted((x, y) for x, y in series[hub] if x > 0 and y and y > 0)
        if not s:
            continue
        color, width, dash = _style(hub)
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(s))
        out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>')
        for x, y in s:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color}"/>')
    ly = TOP + 10
    for hub in series:
        if not any(x > 0 and y and y > 0 for x, y in series[hub]):
            continue
        color, width, dash = _style(hub)
        lx = LEFT + pw + 16
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="{width}"{dash}/>')
        out.append(f'<text x="{lx + 28}" y="{ly + 4}">{escape(labels.get(hub, hub))}</text>')
        ly += 20
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")
    return True


def write_charts(records, folder, date, labels):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    last = {}
    for r in records:
        last[(r["scenario"], r["variant"], r["n"], r["hub"])] = r
    variants = []
    for r in records:
        if r["scenario"] == "fanout" and r["variant"] not in variants:
            variants.append(r["variant"])
    made = []
    for v in variants:
        pace = v.replace("rate", "rate ").replace("window", "window ")
        lat, cpu = {}, {}
        for (s, vv, n, hub), rec in last.items():
            rep = rec.get("report")
            if s != "fanout" or vv != v or not rep:
                continue
            lat.setdefault(hub, []).append((n, rep["latency_us"]["p99"] / 1e3))
            per = (rep.get("server") or {}).get("cpu_us_per_delivery")
            cpu.setdefault(hub, []).append((n, per))
        p = folder / f"{date}-fanout-{v}-p99.svg"
        if line_chart(p, f"Fan-out, {pace}: latency p99", "subscribers", "p99 latency, ms", lat, labels):
            made.append((f"fan-out {pace}: p99 latency against subscribers", p))
        p = folder / f"{date}-fanout-{v}-cpu.svg"
        if line_chart(p, f"Fan-out, {pace}: server CPU per delivery", "subscribers",
                      "server CPU µs per delivery", cpu, labels):
            made.append((f"fan-out {pace}: server CPU per delivery against subscribers", p))
    return made


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: charts.py SUMMARY_JSON OUT_FOLDER")
    recs = json.loads(Path(sys.argv[1]).read_text())
    for title, path in write_charts(recs, sys.argv[2], "chart", {}):
        print(path)
