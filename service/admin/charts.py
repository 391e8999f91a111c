"""Server-side SVG charts: no JavaScript chart library needed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    first_label: str
    last_label: str


def bar_chart(days: Sequence[date], counts: list[int], width: int = 720, height: int = 160,
              fmt: Callable[[date], str] = date.isoformat) -> BarChart:
    """Bars scaled to the busiest day (or hour); each bar carries its label and count as a
    tooltip."""
    peak = max(counts, default=0)
    slot = width / max(len(counts), 1)
    bars = []
    for i, (day, n) in enumerate(zip(days, counts, strict=True)):
        h = (n / peak) * (height - 4) if peak else 0.0
        bars.append(
            Bar(
                x=round(i * slot + 0.5, 2),
                y=round(height - h, 2),
                width=round(max(slot - 1, 1), 2),
                height=round(h, 2),
                label=f"{fmt(day)}: {n}",
            )
        )
    return BarChart(
        width=width,
        height=height,
        bars=bars,
        peak=peak,
        first_label=fmt(days[0]) if days else "",
        last_label=fmt(days[-1]) if days else "",
    )
