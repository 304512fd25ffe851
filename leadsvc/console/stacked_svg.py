"""Stacked bar charts over time, drawn as SVG text directly.

pygal drew the overview's stacked bars (90 days x up to 6 series: 540 bars) in 0.2-0.4 s of CPU
a chart, most of it in its per-bar tooltip machinery, which an <img> never runs. Here each bar
is one <rect> with a <title> (shown when the image is opened on its own); the axes, grid and
legend look like the other charts' (`charts.BRAND`). Labels and series names (UTM campaigns
come from the form's visitors) are escaped.
"""

from __future__ import annotations

import math
from html import escape

WIDTH, HEIGHT = 900, 360
#: The plot's box: left, top, right, bottom.
PLOT = (60, 40, 885, 290)
FONT = 'font-family="Helvetica Neue, Arial, sans-serif"'


def nice_ticks(top: int, count: int = 5) -> list[int]:
    """Round values from 0 to at least `top` for the y axis (1, 2 or 5 times a power of 10)."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(int(step), 1)
    return list(range(0, int(math.ceil(top / step)) * step + 1, step))


def _axes(ticks: list[int], labels: list[str], major: set[int], slot: float) -> list[str]:
    left, top, right, bottom = PLOT
    scale = (bottom - top) / ticks[-1]
    parts = []
    for tick in ticks:
        y = bottom - tick * scale
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#555555">{tick:,}</text>'
        )
    for index in sorted(major):
        x = left + (index + 0.5) * slot
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11" '
            f'fill="#555555">{escape(labels[index])}</text>'
        )
    return parts


def _legend(names: list[str], colours: tuple[str, ...]) -> list[str]:
    parts, x = [], PLOT[0]
    for number, name in enumerate(names):
        colour = colours[number % len(colours)]
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 34}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16}" y="{HEIGHT - 24}" font-size="12" fill="#111111">'
            f"{escape(name)}</text>"
        )
        x += 28 + 7 * len(name)
    return parts


def stacked_bars_svg(
    title: str,
    labels: list[str],
    series: dict[str, list[int]],
    major: list[str],
    colours: tuple[str, ...],
) -> bytes:
    """One bar per label, the series stacked in order; `major` are the labels written under
    the axis."""
    left, top, right, bottom = PLOT
    names = list(series)
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    ticks = nice_ticks(max(totals, default=0))
    scale = (bottom - top) / ticks[-1]
    slot = (right - left) / max(len(labels), 1)
    width = max(slot * 0.8, 1.0)
    wanted = set(major)
    parts = _axes(ticks, labels, {i for i, label in enumerate(labels) if label in wanted}, slot)
    for index, label in enumerate(labels):
        x, base = left + index * slot + (slot - width) / 2, float(bottom)
        for number, name in enumerate(names):
            value = series[name][index]
            if value <= 0:
                continue
            height = value * scale
            base -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{width:.1f}" height="{height:.1f}" '
                f'fill="{colours[number % len(colours)]}"><title>{escape(label)}, '
                f"{escape(name)}: {value:,}</title></rect>"
            )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" {FONT} role="img"><title>{escape(title)}</title>'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>'
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="16" fill="#111111">'
        f"{escape(title)}</text>" + "".join(parts + _legend(names, colours)) + "</svg>"
    )
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + svg).encode()
