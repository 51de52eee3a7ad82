#!/usr/bin/env python3
"""Draws the throughput bench's series as an SVG: delivery rate against events delivered, and
the router's resident set over each run.

Usage: python3 host/benches/plot.py [target/bench/throughput-series.csv] [docs/throughput.svg]

Reads the CSV that `cargo bench -p kfp-event-router --bench throughput` writes (columns
run, seconds, rss_mib, delivered); standard library only.
"""

import csv
import sys
from collections import OrderedDict

WIDTH, HEIGHT = 760, 300
PANEL_W, PANEL_H = 300, 200
MARGIN_X, MARGIN_Y = 70, 40
GAP = 80
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
WINDOW_S = 0.5


def read(path):
    runs = OrderedDict()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            runs.setdefault(row["run"], []).append(
                (float(row["seconds"]), float(row["rss_mib"]), int(row["delivered"]))
            )
    return runs


def rates(samples):
    """(delivered, events/s) over windows of WINDOW_S seconds."""
    out, start = [], samples[0]
    for sample in samples[1:]:
        if sample[0] - start[0] >= WINDOW_S:
            rate = (sample[2] - start[2]) / (sample[0] - start[0])
            out.append((sample[2], rate))
            start = sample
    return out


def nice_max(value):
    if value <= 0:
        return 1
    step = 10 ** (len(str(int(value))) - 1)
    return (int(value / step) + 1) * step


def panel(x0, title, xlabel, ylabel, series, x_max, y_max):
    parts = [
        f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_Y - 14}" text-anchor="middle" '
        f'font-weight="bold">{title}</text>',
        f'<rect x="{x0}" y="{MARGIN_Y}" width="{PANEL_W}" height="{PANEL_H}" '
        f'fill="none" stroke="#888"/>',
        f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_Y + PANEL_H + 34}" '
        f'text-anchor="middle">{xlabel}</text>',
        f'<text x="{x0 - 52}" y="{MARGIN_Y + PANEL_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {x0 - 52} {MARGIN_Y + PANEL_H / 2})">{ylabel}</text>',
    ]
    for i in range(5):
        fx, fy = i / 4, i / 4
        x = x0 + fx * PANEL_W
        y = MARGIN_Y + PANEL_H - fy * PANEL_H
        parts.append(
            f'<text x="{x}" y="{MARGIN_Y + PANEL_H + 16}" text-anchor="middle" '
            f'font-size="11">{x_max * fx:,.0f}</text>'
        )
        parts.append(
            f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end" font-size="11">'
            f"{y_max * fy:,.0f}</text>"
        )
        parts.append(
            f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{y}" y2="{y}" stroke="#eee"/>'
        )
    for colour, points in series:
        if not points:
            continue
        path = " ".join(
            f"{x0 + PANEL_W * x / x_max:.1f},{MARGIN_Y + PANEL_H - PANEL_H * y / y_max:.1f}"
            for x, y in points
        )
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        )
    return parts


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "target/bench/throughput-series.csv"
    target = sys.argv[2] if len(sys.argv) > 2 else "docs/throughput.svg"
    runs = read(source)
    names = list(runs)
    throughput = [(COLOURS[i % 4], rates(runs[n])) for i, n in enumerate(names)]
    memory = [
        (COLOURS[i % 4], [(s[0], s[1]) for s in runs[n]]) for i, n in enumerate(names)
    ]
    delivered_max = nice_max(max(s[2] for n in names for s in runs[n]))
    rate_max = nice_max(max((r for _, pts in throughput for _, r in pts), default=1))
    seconds_max = nice_max(max(s[0] for n in names for s in runs[n]))
    rss_max = nice_max(max(s[1] for n in names for s in runs[n]))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
    ]
    parts += panel(
        MARGIN_X, "Delivery rate", "events delivered", "events/s",
        throughput, delivered_max, rate_max,
    )
    parts += panel(
        MARGIN_X + PANEL_W + GAP, "Resident set", "seconds", "MiB",
        memory, seconds_max, rss_max,
    )
    for i, name in enumerate(names):
        x = MARGIN_X + i * 160
        parts.append(
            f'<line x1="{x}" x2="{x + 20}" y1="{HEIGHT - 12}" y2="{HEIGHT - 12}" '
            f'stroke="{COLOURS[i % 4]}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{x + 26}" y="{HEIGHT - 8}">{name}</text>')
    parts.append("</svg>")
    with open(target, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
