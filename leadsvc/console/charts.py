"""Charts as SVG images (pygal, offline: no script, no CDN), drawn from the overview's figures."""

from __future__ import annotations

import pygal
from pygal.style import Style

BRAND = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#111111",
    foreground_strong="#111111",
    foreground_subtle="#555555",
    colors=("#111111", "#1c69d4", "#b00020", "#2e7d32", "#8a8a8a", "#f0a500"),
    font_family="Helvetica Neue, Arial, sans-serif",
)


def _config(**extra):
    # js=[]: pygal would otherwise link its tooltip script from a CDN.
    return {
        "style": BRAND,
        "js": [],
        "width": 900,
        "height": 360,
        "legend_at_bottom": True,
        "show_minor_x_labels": False,
        "truncate_label": -1,
        **extra,
    }


def stacked_chart(title: str, labels: list[str], series: dict[str, list[int]]) -> bytes:
    """Stacked bars over time (days or hours), one colour per series."""
    chart = pygal.StackedBar(**_config(x_label_rotation=0, title=title))
    chart.x_labels = labels
    chart.x_labels_major = labels[:: max(len(labels) // 6, 1)]
    for name, values in series.items():
        chart.add(name, values)
    return chart.render()


def bounce_rate_chart(rows, days: int) -> bytes:
    """A line: the share of each day's emails that bounced, in per cent."""
    chart = pygal.Line(
        **_config(title=f"Bounce rate, last {days} days (%)", show_legend=False, min_scale=1)
    )
    chart.x_labels = [row.day.strftime("%b %d") for row in rows]
    chart.x_labels_major = chart.x_labels[:: max(len(rows) // 6, 1)]
    chart.add("Bounce rate", [round(row.rate * 100, 2) for row in rows])
    return chart.render()


def signups_chart(rows, days: int) -> bytes:
    """Stacked bars: new people, repeat signups and refused signups per day."""
    return stacked_chart(
        f"Signups by outcome, last {days} days",
        [day.strftime("%b %d") for day, *_ in rows],
        {
            "New": [row[1] for row in rows],
            "Repeat": [row[2] for row in rows],
            "Refused": [row[3] for row in rows],
        },
    )


def campaigns_chart(names: list[str], rows, days: int) -> bytes:
    """Stacked bars: new people per day by campaign."""
    return stacked_chart(
        f"New people by campaign, last {days} days",
        [day.strftime("%b %d") for day, _ in rows],
        {name: [values[i] for _, values in rows] for i, name in enumerate(names)},
    )


def jobs_chart(rows) -> bytes:
    """Stacked bars: outbound jobs finished per hour by outcome."""
    return stacked_chart(
        "Outbound jobs per hour, last 48 hours (UTC)",
        [hour.strftime("%H:00") for hour, *_ in rows],
        {
            "Sent": [row[1] for row in rows],
            "Failed": [row[2] for row in rows],
            "Outcome unknown": [row[3] for row in rows],
        },
    )


def bars_chart(title: str, rows: list[tuple[str, int]]) -> bytes:
    """Horizontal bars, one per label."""
    chart = pygal.HorizontalBar(**_config(title=title, show_legend=False))
    chart.x_labels = [label for label, _ in rows]
    chart.add(title, [count for _, count in rows])
    return chart.render()


def pie_chart(title: str, rows: list[tuple[str, int]]) -> bytes:
    chart = pygal.Pie(**_config(title=title, inner_radius=0.45))
    for label, count in rows:
        chart.add(label, count)
    return chart.render()
