"""The safety-stock math, on numpy arrays so that a whole catalog is one call.

For each (item, location, slot) we have the offline demand of that hour-of-week slot in each
of the recent weeks. Recent weeks weigh more: week age ``a`` has weight ``0.5 ** (a / half_life)``.
The weighted mean and (reliability-weighted, unbiased) variance give a demand rate per hour;
the exposure window (sync latency + reaction time) is a fraction or multiple of an hour, and
demand in it is taken as a sum of independent increments, so mean and variance both scale with
its length. The safety stock is the service-level quantile of that demand:

    safety = max(poisson_quantile(p, m), ceil(m + z_p * sqrt(max(v, m))))

with ``m`` and ``v`` the window's mean and variance. The Poisson term keeps slow movers honest
(one sale in a window is a real risk even at a tiny mean); the normal term takes over-dispersed
demand. Both terms only grow with the variance and with the service level, so neither "more
variance" nor "a higher service level" can ever lower the level. Bounds apply last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Above this window mean the Poisson and the normal quantile agree to within a unit.
_POISSON_MAX_MEAN = 60.0


def week_weights(ages: ArrayLike, half_life_weeks: float) -> NDArray[np.float64]:
    """Weight of a week by its age in weeks (0 = the latest full week)."""
    return np.power(0.5, np.asarray(ages, dtype=np.float64) / float(half_life_weeks))


@dataclass(frozen=True)
class WeightedStats:
    mean: NDArray[np.float64]  # per row, demand per slot-hour
    var: NDArray[np.float64]
    weeks: NDArray[np.int64]  # observed weeks per row


def weighted_stats(demand: ArrayLike, observed: ArrayLike, half_life_weeks: float) -> WeightedStats:
    """Exponentially weighted mean and variance over weeks.

    ``demand`` is rows x weeks (column 0 = the oldest week, the last column = the latest);
    ``observed`` is a boolean mask of the same shape (False before an item was stocked there,
    so that weeks it could not sell do not count as zero demand).
    """
    x = np.atleast_2d(np.asarray(demand, dtype=np.float64))
    seen = np.atleast_2d(np.asarray(observed, dtype=bool))
    n_weeks = x.shape[1]
    w = week_weights(np.arange(n_weeks - 1, -1, -1), half_life_weeks)[None, :] * seen
    v1 = w.sum(axis=1)
    v2 = (w * w).sum(axis=1)
    safe_v1 = np.where(v1 > 0, v1, 1.0)
    mean = (w * x).sum(axis=1) / safe_v1
    biased = (w * (x - mean[:, None]) ** 2).sum(axis=1) / safe_v1
    # Reliability weights: unbiased when the effective sample size allows, else no spread information.
    denom = v1 * v1 - v2
    var = np.where(denom > 1e-12, biased * v1 * v1 / np.where(denom > 1e-12, denom, 1.0), 0.0)
    mean = np.where(v1 > 0, mean, 0.0)
    return WeightedStats(mean=mean, var=np.maximum(var, 0.0), weeks=seen.sum(axis=1).astype(np.int64))


def poisson_quantile(p: float, mean: ArrayLike) -> NDArray[np.int64]:
    """Smallest k with P(X <= k) >= p for X ~ Poisson(mean), element-wise; exact up to the cut-over."""
    m = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    out = np.zeros(m.shape, dtype=np.int64)
    small = m <= _POISSON_MAX_MEAN
    if small.any():
        ms = m[small]
        pmf = np.exp(-ms)
        cdf = pmf.copy()
        k_out = np.zeros(ms.shape, dtype=np.int64)
        k_max = math.ceil(_POISSON_MAX_MEAN + 12 * math.sqrt(_POISSON_MAX_MEAN) + 12)
        for k in range(1, k_max + 1):
            below = cdf < p
            if not below.any():
                break
            k_out[below] = k
            pmf = pmf * ms / k
            cdf = cdf + pmf
        out[small] = k_out
    large = ~small
    if large.any():
        z = NormalDist().inv_cdf(p)
        ml = m[large]
        out[large] = np.ceil(ml + z * np.sqrt(ml) - 0.5).astype(np.int64)  # continuity correction
    return out


def safety_levels(
    *,
    mean_per_hour: ArrayLike,
    var_per_hour: ArrayLike,
    window_hours: ArrayLike,
    service_level: float,
    safety_min: ArrayLike = 0,
    safety_max: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """Safety stock per row: the service-level quantile of offline demand in the exposure window, bounded.

    ``safety_max`` may hold NaN (or be None) for "no upper bound".
    """
    if not 0 < service_level < 1:
        raise ValueError("service_level must be strictly between 0 and 1")
    window = np.asarray(window_hours, dtype=np.float64)
    if (window < 0).any():
        raise ValueError("window_hours must not be negative")
    mu = np.atleast_1d(np.maximum(np.asarray(mean_per_hour, dtype=np.float64), 0.0)) * window
    var = np.atleast_1d(np.maximum(np.asarray(var_per_hour, dtype=np.float64), 0.0)) * window
    z = NormalDist().inv_cdf(service_level)
    # A tiny tolerance so that 2.0000000001 does not become 3 through float noise.
    normal = np.ceil(mu + z * np.sqrt(np.maximum(var, mu)) - 1e-9)
    level = np.maximum(poisson_quantile(service_level, mu), np.maximum(normal, 0)).astype(np.int64)
    level = np.where(mu > 0, level, 0)
    low = np.broadcast_to(np.asarray(safety_min, dtype=np.float64), level.shape)
    level = np.maximum(level, low).astype(np.int64)
    if safety_max is not None:
        high = np.broadcast_to(np.asarray(safety_max, dtype=np.float64), level.shape)
        level = np.where(np.isnan(high), level, np.minimum(level, np.nan_to_num(high, nan=0.0))).astype(np.int64)
    return level


def safety_level(
    *,
    mean_per_hour: float,
    var_per_hour: float,
    window_hours: float,
    service_level: float,
    safety_min: int = 0,
    safety_max: int | None = None,
) -> int:
    """One safety stock (see ``safety_levels``)."""
    return int(
        safety_levels(
            mean_per_hour=[mean_per_hour],
            var_per_hour=[var_per_hour],
            window_hours=window_hours,
            service_level=service_level,
            safety_min=[safety_min],
            safety_max=None if safety_max is None else [safety_max],
        )[0]
    )
