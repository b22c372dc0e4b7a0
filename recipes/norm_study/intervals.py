"""Mean and 95 % confidence interval over seeds (Student's t; no SciPy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95 % quantiles of Student's t, t_{0.975, df}, df = 1..30; beyond 30 the normal 1.96 is close.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    return T_975[df - 1] if df <= len(T_975) else 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, half-width of the 95 % t interval (nan for one value) and the count of finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(finite) / n
    if n == 1:
        return mean, math.nan, 1
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    return mean, t_quantile(n - 1) * sd / math.sqrt(n), n


def format_ci(values: Sequence[float], digits: int = 3) -> str:
    mean, half, n = mean_ci(values)
    if n == 0:
        return ""
    return f"{mean:.{digits}g}" if math.isnan(half) else f"{mean:.{digits}g} ± {half:.2g}"
