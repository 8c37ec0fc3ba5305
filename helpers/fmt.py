"""The one format for numbers that change from run to run (timings, ratios, rates).

Stored notebook outputs are compared by nbval. Anything measured with a clock is printed
through these functions, and ``tests/nbval_sanitize.cfg`` rewrites exactly these shapes to
stable placeholders, so a notebook's text stays comparable while the numbers stay visible.
Deterministic figures (row counts, pages, statement counts, sizes) are printed as they are.
"""
from __future__ import annotations

import math

# Kept in step with tests/nbval_sanitize.cfg (tests/test_fmt.py checks every shape below).
TIME_EXAMPLES = ("0.081 ms", "12.3 ms", "1.25 s", "43.0 s")


def fmt_time(seconds: float) -> str:
    """A duration as ``0.081 ms``, ``12.3 ms`` or ``1.25 s`` (three significant digits)."""
    if seconds is None or math.isnan(seconds):
        return "n/a ms"
    ms = seconds * 1000.0
    if ms < 1000:
        return f"{_sig3(ms)} ms"
    return f"{_sig3(seconds)} s"


def fmt_ratio(ratio: float) -> str:
    """A speed-up or size ratio as ``41×`` or ``1.3×`` (the × sign marks it for the sanitizer)."""
    if ratio is None or math.isnan(ratio) or math.isinf(ratio):
        return "n/a×"
    return f"{_sig2(ratio)}×"


def fmt_ratio_range(low: float, high: float) -> str:
    """An uncertainty range of a ratio, ``38×–44×``."""
    return f"{fmt_ratio(low)}–{fmt_ratio(high)}"


def fmt_rate(per_second: float, unit: str = "rows") -> str:
    """A throughput as ``12,300 rows/s``."""
    return f"{per_second:,.0f} {unit}/s"


def _sig3(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _sig2(x: float) -> str:
    if x >= 10:
        return f"{x:,.0f}"
    return f"{x:.1f}"
