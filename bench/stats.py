"""The percentile the bench scripts report: nearest rank at floor(p * n), as in the committed results."""

from __future__ import annotations


def pct(values: list[float], p: float, digits: int = 1) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))], digits)
