"""Drift statistics between two distributions, each given as a reference profile gives it
(bin or category frequencies, quantile functions, rates). Pure numpy, no decisions: which value
counts as drift is the report's business (`refinery.assets.ml.drift.report`).

- PSI on frequency vectors (empty bins clipped to 1e-4, as Evidently does, so PSI stays finite
  when a bin or category appears or vanishes);
- Jensen-Shannon distance (natural log, as `scipy.spatial.distance.jensenshannon` computes it);
- Wasserstein-1 distance of two quantile functions;
- a KS statistic estimated from the quantile functions, with its asymptotic p-value;
- a two-proportion z-test p-value (the label rate).
"""

from __future__ import annotations

import math

import numpy as np

PSI_EPSILON = 1e-4


def _as_distribution(frequencies: list[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(frequencies, dtype=float)
    total = values.sum()
    return values / total if total > 0 else values


def population_stability_index(
    reference: list[float] | np.ndarray, current: list[float] | np.ndarray
) -> float:
    """PSI = sum((c - r) * ln(c / r)) over bins; empty bins count as 1e-4 (no log 0)."""
    ref = _as_distribution(reference).copy()
    cur = _as_distribution(current).copy()
    if ref.shape != cur.shape:
        raise ValueError(f"bin counts differ: reference {ref.shape}, current {cur.shape}")
    ref[ref == 0] = PSI_EPSILON
    cur[cur == 0] = PSI_EPSILON
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon_distance(
    reference: list[float] | np.ndarray, current: list[float] | np.ndarray
) -> float:
    """sqrt of the JS divergence in nats (scipy's `jensenshannon` default); 0 <= d <= sqrt(ln 2)."""
    p = _as_distribution(reference)
    q = _as_distribution(current)
    if p.shape != q.shape:
        raise ValueError(f"bin counts differ: reference {p.shape}, current {q.shape}")
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    m = (p + q) / 2

    def kl_to_m(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log(x[mask] / m[mask])))

    divergence = max((kl_to_m(p) + kl_to_m(q)) / 2, 0.0)
    return math.sqrt(divergence)


def wasserstein_from_quantiles(reference: list[float], current: list[float]) -> float:
    """W1 = integral over p of |Q_ref(p) - Q_cur(p)|, trapezoid rule on the shared p grid."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.shape != cur.shape or ref.size < 2:
        raise ValueError(
            f"quantile functions need the same grid of >= 2 points: {ref.size} vs {cur.size}"
        )
    gaps = np.abs(ref - cur)
    step = 1.0 / (ref.size - 1)
    return float(step * (gaps.sum() - (gaps[0] + gaps[-1]) / 2))


def _cdf_from_quantiles(quantiles: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x) read off a quantile function on an even p grid: the largest p with Q(p) <= x."""
    steps = quantiles.size - 1
    at_or_below = np.searchsorted(quantiles, x, side="right")
    return np.clip((at_or_below - 1) / steps, 0.0, 1.0) * (at_or_below > 0)


def ks_from_quantiles(reference: list[float], current: list[float]) -> float:
    """sup |F_ref - F_cur|, both CDFs read off their quantile functions (resolution 1/(n-1))."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    points = np.union1d(ref, cur)
    return float(
        np.max(np.abs(_cdf_from_quantiles(ref, points) - _cdf_from_quantiles(cur, points)))
    )


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sample KS p-value from the asymptotic Kolmogorov distribution (Stephens' correction)."""
    if n_reference <= 0 or n_current <= 0:
        return 1.0
    effective = n_reference * n_current / (n_reference + n_current)
    root = math.sqrt(effective)
    lam = (root + 0.12 + 0.11 / root) * statistic
    if lam < 1e-3:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(2 * total, 0.0), 1.0))


def two_proportion_p_value(rate_a: float, n_a: int, rate_b: float, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    if n_a <= 0 or n_b <= 0:
        return 1.0
    pooled = (rate_a * n_a + rate_b * n_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 1.0 if rate_a == rate_b else 0.0
    z = abs(rate_a - rate_b) / math.sqrt(variance)
    return math.erfc(z / math.sqrt(2))
