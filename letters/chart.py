"""A server-rendered SVG chart of verified signatures over time (no JavaScript needed)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from letters.i18n import format_number, gettext

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 36


def cumulative(per_day: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    total, points = 0, []
    for day, count in per_day:
        total += count
        points.append((day, total))
    return points


def _nice_ceiling(value: int) -> int:
    """The next round number at or above `value`, for the axis."""
    step = 1
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if value <= step * factor:
            return step * factor
    return step * 10


def chart_svg(per_day: Sequence[tuple[str, int]], title: str) -> str:
    """Cumulative verified signatures by day, as an accessible SVG (title + description)."""
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
    top_value = _nice_ceiling(max((total for _, total in points), default=1))
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        label = format_number(round(top_value * fraction))
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#d9d6cf" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#4a525c">{label}</text>'
        )
    if points:
        step = plot_w / max(len(points) - 1, 1)
        coords = [
            (LEFT + index * step, TOP + plot_h * (1 - total / top_value))
            for index, (_, total) in enumerate(points)
        ]
        if len(coords) == 1:
            coords.append((LEFT + plot_w, coords[0][1]))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1d6b3a" stroke-width="2.5"/>')
        for index in sorted({0, len(points) - 1}):
            x = LEFT + index * step if len(points) > 1 else LEFT
            anchor = "start" if index == 0 else "end"
            x = x if index == 0 else WIDTH - RIGHT
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}" font-size="12" '
                f'fill="#4a525c">{points[index][0]}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
