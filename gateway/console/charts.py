"""Inline SVG charts for the scorecard: no library, no script, no inline style.

Usage::

    svg = trend("Calls", [("W47", 120), ("W48", None), ("W49", 98)])
    svg = lines("Calls by queue", ["W47", "W48"], {"billing": [3, 4], "shipping": [1, None]})
    svg = bars("Calls by segment", [("smb", 40), ("enterprise", 12)])

Colours and fonts come from classes styled in ``static/console.css`` (the CSP allows no
inline style). A null figure (a denominator of 0) is a gap, never a zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.console.html import esc

__all__ = ["bars", "fmt", "lines", "trend"]

W, H = 320, 150
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 22, 26
SERIES = 6  # css classes s0..s5


def fmt(value: float | int | None, *, rate: bool = False) -> str:
    if value is None:
        return "—"
    if rate:
        return f"{value * 100:.1f}%"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return f"{int(value):,}"


def _scale(values: Sequence[float | None]) -> float:
    top = max((v for v in values if v is not None), default=0.0)
    return top if top > 0 else 1.0


def _frame(title: str, top: float, labels: Sequence[str], rate: bool) -> list[str]:
    x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, H - BOTTOM
    out = [
        f'<text class="title" x="4" y="14">{esc(title)}</text>',
        f'<line class="axis" x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}"/>',
        f'<line class="grid" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/>',
        f'<text class="tick" x="{x0 - 4}" y="{y0 + 4}" text-anchor="end">'
        f"{fmt(top, rate=rate)}</text>",
        f'<text class="tick" x="{x0 - 4}" y="{y1 + 4}" text-anchor="end">0</text>',
    ]
    n = len(labels)
    step = max(1, (n + 5) // 6)  # at most ~6 labels
    for i, label in enumerate(labels):
        if i % step == 0 or i == n - 1:
            out.append(
                f'<text class="tick" x="{_x(i, n):.1f}" y="{H - 8}" text-anchor="middle">'
                f"{esc(label)}</text>"
            )
    return out


def _x(i: int, n: int) -> float:
    x0, x1 = LEFT + 6, W - RIGHT - 6
    return x0 + (x1 - x0) * (i / (n - 1) if n > 1 else 0.5)


def _y(v: float, top: float) -> float:
    y0, y1 = TOP, H - BOTTOM
    return y1 - (y1 - y0) * (v / top)


def _svg(parts: list[str], label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{esc(label)}">{"".join(parts)}</svg>'
    )


def _path(values: Sequence[float | None], top: float, cls: str) -> list[str]:
    """A polyline per run of non-null values, and a dot per value."""
    n = len(values)
    out: list[str] = []
    run: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if len(run) > 1:
                out.append(f'<polyline class="line {cls}" points="{" ".join(run)}"/>')
            run = []
            continue
        point = f"{_x(i, n):.1f},{_y(v, top):.1f}"
        run.append(point)
        out.append(f'<circle class="dot {cls}" cx="{_x(i, n):.1f}" cy="{_y(v, top):.1f}" r="2.5"/>')
    if len(run) > 1:
        out.append(f'<polyline class="line {cls}" points="{" ".join(run)}"/>')
    return out


def trend(title: str, points: Sequence[tuple[str, float | None]], *, rate: bool = False) -> str:
    labels = [p[0] for p in points]
    values = [p[1] for p in points]
    top = 1.0 if rate else _scale(values)
    parts = _frame(title, top, labels, rate) + _path(values, top, "s0")
    return _svg(parts, f"{title}: " + ", ".join(f"{a} {fmt(b, rate=rate)}" for a, b in points))


def lines(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    rate: bool = False,
) -> str:
    everything = [v for vs in series.values() for v in vs]
    top = 1.0 if rate else _scale(everything)
    parts = _frame(title, top, labels, rate)
    legend = []
    for i, (name, values) in enumerate(series.items()):
        cls = f"s{i % SERIES}"
        parts += _path(values, top, cls)
        legend.append(f'<span class="key {cls}">{esc(name)}</span>')
    return (
        f'<figure class="chart">{_svg(parts, title)}'
        f'<figcaption class="legend">{" ".join(legend)}</figcaption></figure>'
    )


def bars(title: str, items: Sequence[tuple[str, float | None]], *, rate: bool = False) -> str:
    row, gap = 18, 4
    height = TOP + len(items) * (row + gap) + 6
    top = 1.0 if rate else _scale([v for _, v in items])
    x0, x1 = 96, W - 56
    parts = [f'<text class="title" x="4" y="14">{esc(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = TOP + i * (row + gap)
        width = 0.0 if value is None else (x1 - x0) * (value / top)
        parts.append(
            f'<text class="tick" x="{x0 - 4}" y="{y + 13}" text-anchor="end">'
            f"{esc(label[:14])}</text>"
            f'<rect class="bar s{i % SERIES}" x="{x0}" y="{y}" width="{width:.1f}" height="{row}"/>'
            f'<text class="value" x="{x0 + width + 4:.1f}" y="{y + 13}">'
            f"{fmt(value, rate=rate)}</text>"
        )
    return (
        f'<svg class="chart" viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'aria-label="{esc(title)}">{"".join(parts)}</svg>'
    )
