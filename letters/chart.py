"""A server-rendered SVG chart of verified signatures over time (no JavaScript needed).

Honest by construction: the x-axis is proportional to time, so quiet days take their
width and the line stays flat across them; y-ticks are round numbers drawn exactly where
their value lies. The drawing is narrow enough that its text stays readable on a phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from html import escape

from letters.i18n import format_number, gettext

WIDTH, HEIGHT = 480, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 34
FONT = 15
INK, GRID, LINE = "#4a525c", "#d9d6cf", "#1d6b3a"


def cumulative(per_day: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    total, points = 0, []
    for day, count in per_day:
        total += count
        points.append((day, total))
    return points


def tick_step(top: int, most: int = 4) -> int:
    """The smallest round step (1, 2 or 5 times a power of ten) that needs at most `most`
    steps to reach `top`."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * most >= top:
                return step
        magnitude *= 10


def y_ticks(top: int) -> list[int]:
    """Round values from 0 to at least `top`, evenly spaced."""
    step = tick_step(max(top, 1))
    last = -(-max(top, 1) // step) * step
    return list(range(0, last + 1, step))


def _text(x: float, y: float, label: str, anchor: str) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{FONT}" '
        f'fill="{INK}">{escape(label)}</text>'
    )


def chart_svg(per_day: Sequence[tuple[str, int]], title: str, until: date | None = None) -> str:
    """Cumulative verified signatures by day, as an accessible SVG (title + description).

    `per_day` holds the days with changes, in order; `until` (today) extends the line,
    flat, past the last of them.
    """
    points = cumulative(per_day)
    description = (
        gettext("No verified signatures yet.")
        if not points
        else gettext(
            "From %(first)s to %(last)s, verified signatures grew to %(total)s. "
            "The table below gives the figure for each day.",
            first=points[0][0],
            last=points[-1][0],
            total=format_number(points[-1][1]),
        )
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(description)}</desc>',
    ]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ticks = y_ticks(max((total for _, total in points), default=0))
    top_value = ticks[-1]

    def y_of(value: int) -> float:
        return TOP + plot_h * (1 - value / top_value)

    for value in ticks:
        y = y_of(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        parts.append(_text(LEFT - 6, y + FONT / 3, format_number(value), "end"))
    if points:
        days = [date.fromisoformat(day) for day, _ in points]
        first = days[0]
        last = max(days[-1], until or days[-1])
        span = max((last - first).days, 1)

        def x_of(day: date) -> float:
            return LEFT + plot_w * (day - first).days / span

        coords: list[tuple[float, float]] = []
        previous = 0
        for day, (_, total) in zip(days, points, strict=True):
            if coords:
                # Flat until the day before this one changed: quiet days keep their width.
                coords.append((x_of(day - timedelta(days=1)), y_of(previous)))
            coords.append((x_of(day), y_of(total)))
            previous = total
        coords.append((x_of(last), y_of(previous)))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2.5"/>')
        parts.append(_text(LEFT, HEIGHT - 10, first.isoformat(), "start"))
        if last != first:
            parts.append(_text(WIDTH - RIGHT, HEIGHT - 10, last.isoformat(), "end"))
    parts.append("</svg>")
    return "".join(parts)
