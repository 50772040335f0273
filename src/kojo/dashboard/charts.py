"""Small bar charts as inline SVG, drawn on the server: the overview's throughput and
failures per minute need no script, no build chain and nothing from a CDN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 600, 110  # the drawing's own units; CSS scales it to the page
TOP, BOTTOM, LEFT = 6, 18, 34  # room for the axis labels


@dataclass(frozen=True)
class Bar:
    at: datetime  # the minute's start (UTC)
    value: int


def bar_chart(bars: Sequence[Bar], label: str, css_class: str) -> Markup:
    """An SVG bar per minute, scaled to the largest; each bar's tooltip (<title>) gives its
    minute and value. `label` names the series ("finished", "failed")."""
    peak = max((bar.value for bar in bars), default=0)
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(bars), 1)
    total = sum(bar.value for bar in bars)
    parts = [
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(label)} per minute, last hour: {total} in all">',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for i, bar in enumerate(bars):
        height = plot_h * bar.value / peak if peak else 0.0
        x = LEFT + i * step
        tip = f"{bar.at:%H:%M} UTC: {bar.value} {label}"
        parts.append(
            f'<rect x="{x + 0.5:.1f}" y="{TOP + plot_h - height:.1f}" '
            f'width="{max(step - 1, 0.5):.1f}" height="{height:.1f}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    if bars:
        baseline = HEIGHT - 4
        parts.append(f'<text class="tick" x="{LEFT}" y="{baseline}">{bars[0].at:%H:%M}</text>')
        parts.append(
            f'<text class="tick" x="{WIDTH}" y="{baseline}" text-anchor="end">'
            f"{bars[-1].at:%H:%M} UTC</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # built from numbers and escaped text only
