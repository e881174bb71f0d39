"""The safety-stock math against a hand-computed example and against the properties it promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.forecasting.services.math import poisson_quantile, safety_level, safety_levels, weighted_stats


def test_weighted_stats_match_the_hand_computed_example():
    # Weeks oldest -> latest: 2, 4, 0, 2 units; half-life 1 week, so weights 1/8, 1/4, 1/2, 1.
    stats = weighted_stats([[2, 4, 0, 2]], [[True] * 4], half_life_weeks=1)
    # mean = (2/8 + 4/4 + 0/2 + 2) / (15/8) = 26/15
    assert stats.mean[0] == pytest.approx(26 / 15)
    # biased = sum w (x - mean)^2 / V1 = (645/225) / (15/8); unbiased x V1^2 / (V1^2 - V2) = 645 / 262.5
    assert stats.var[0] == pytest.approx(645 / 262.5)
    assert stats.weeks[0] == 4


def test_weeks_before_the_item_existed_do_not_count_as_zero_demand():
    observed = weighted_stats([[0, 0, 3, 3]], [[False, False, True, True]], half_life_weeks=4)
    assert observed.mean[0] == pytest.approx(3)
    assert observed.var[0] == pytest.approx(0)
    assert observed.weeks[0] == 2


def test_safety_level_hand_computed_example():
    # 15-minute window: m = 26/15 * 0.25 = 0.4333, v = 2.4571 * 0.25 = 0.6143.
    # normal: ceil(0.4333 + 1.6449 * 0.7838) = ceil(1.72) = 2; Poisson(0.4333): P(X<=1) = 0.929, P(X<=2) = 0.990 -> 2.
    mean, var = 26 / 15, 645 / 262.5
    assert safety_level(mean_per_hour=mean, var_per_hour=var, window_hours=0.25, service_level=0.95) == 2
    # At 99%: normal ceil(0.4333 + 2.3263 * 0.7838) = 3; Poisson P(X<=2) = 0.990 < 0.99 -> 3.
    assert safety_level(mean_per_hour=mean, var_per_hour=var, window_hours=0.25, service_level=0.99) == 3


def test_a_slow_mover_still_gets_the_poisson_floor():
    # Mean 0.25 in the window, no spread measured: P(0) = 0.78, P(<=1) = 0.974 -> 1 at 95%, normal gives 2.
    assert poisson_quantile(0.95, [0.25])[0] == 1
    assert safety_level(mean_per_hour=1, var_per_hour=0, window_hours=0.25, service_level=0.95) == 2


def test_poisson_quantile_matches_the_distribution():
    for mean in (0.1, 1.0, 4.5, 20.0, 59.0):
        k = int(poisson_quantile(0.95, [mean])[0])
        cdf = sum(math.exp(-mean) * mean**i / math.factorial(i) for i in range(k + 1))
        below = sum(math.exp(-mean) * mean**i / math.factorial(i) for i in range(k))
        assert cdf >= 0.95 > below


def test_no_demand_means_the_floor():
    assert safety_level(mean_per_hour=0, var_per_hour=0, window_hours=0.25, service_level=0.95) == 0
    assert safety_level(mean_per_hour=0, var_per_hour=0, window_hours=0.25, service_level=0.95, safety_min=3) == 3


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        safety_level(mean_per_hour=1, var_per_hour=1, window_hours=0.25, service_level=1.0)
    with pytest.raises(ValueError):
        safety_level(mean_per_hour=1, var_per_hour=1, window_hours=-1, service_level=0.9)


rates = st.floats(min_value=0, max_value=500, allow_nan=False)
variances = st.floats(min_value=0, max_value=5000, allow_nan=False)
windows = st.floats(min_value=0.01, max_value=4, allow_nan=False)
levels = st.floats(min_value=0.5, max_value=0.999, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(mean=rates, var=variances, extra=variances, window=windows, level=levels)
def test_more_variance_never_lowers_the_level(mean, var, extra, window, level):
    low = safety_level(mean_per_hour=mean, var_per_hour=var, window_hours=window, service_level=level)
    high = safety_level(mean_per_hour=mean, var_per_hour=var + extra, window_hours=window, service_level=level)
    assert high >= low


@settings(max_examples=300, deadline=None)
@given(mean=rates, var=variances, window=windows, a=levels, b=levels)
def test_a_higher_service_level_never_lowers_the_level(mean, var, window, a, b):
    lower, higher = sorted((a, b))
    at_lower = safety_level(mean_per_hour=mean, var_per_hour=var, window_hours=window, service_level=lower)
    at_higher = safety_level(mean_per_hour=mean, var_per_hour=var, window_hours=window, service_level=higher)
    assert at_higher >= at_lower


@settings(max_examples=300, deadline=None)
@given(
    mean=rates,
    var=variances,
    window=windows,
    level=levels,
    low=st.integers(min_value=0, max_value=50),
    span=st.integers(min_value=0, max_value=50),
    unbounded=st.booleans(),
)
def test_bounds_hold(mean, var, window, level, low, span, unbounded):
    high = None if unbounded else low + span
    value = safety_level(
        mean_per_hour=mean, var_per_hour=var, window_hours=window, service_level=level, safety_min=low, safety_max=high
    )
    assert value >= low
    if high is not None:
        assert value <= high


def test_vectorised_levels_equal_one_by_one():
    rng = np.random.default_rng(7)
    mean = rng.gamma(1.0, 3.0, size=200)
    var = rng.gamma(1.0, 6.0, size=200)
    together = safety_levels(mean_per_hour=mean, var_per_hour=var, window_hours=0.5, service_level=0.95)
    alone = [
        safety_level(mean_per_hour=m, var_per_hour=v, window_hours=0.5, service_level=0.95)
        for m, v in zip(mean, var, strict=True)
    ]
    assert together.tolist() == alone
