"""The load model's formulas (DESIGN.md, "The load model"): beta and beta_fleet."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaos_agent.metrics import beta, beta_fleet

# Utilisations: idle, or at least a millionth busy (no subnormal floats: those lose
# the digits that scaling would need, which is float arithmetic, not the formula).
load_st = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1.0))
loads_st = st.lists(load_st, min_size=1, max_size=64)
scale_st = st.floats(min_value=1e-3, max_value=1e3)


def worst(n: int) -> float:
    """The design's bound: one busy processor among n."""
    return 2 * (n - 1) / n


def by_hand(loads: list[float]) -> float:
    """The definition, written out: sum_i |L_i - L/n| / L, 0 when L = 0."""
    total = math.fsum(loads)
    if total == 0:
        return 0.0
    return math.fsum(abs(x - total / len(loads)) for x in loads) / total


# ------------------------------------------------------------------- beta


@pytest.mark.parametrize("n", [1, 2, 3, 8, 64, 4096])
def test_equal_loads_are_balanced(n: int) -> None:
    assert beta([0.42] * n) == pytest.approx(0.0, abs=1e-12)
    assert beta([1 / 3] * n) == pytest.approx(0.0, abs=1e-12)
    assert beta([1.0] * n) == 0.0


@pytest.mark.parametrize("n", [1, 2, 16, 4096])
def test_no_load_is_balanced(n: int) -> None:
    assert beta([0.0] * n) == 0.0


def test_no_processors_is_balanced() -> None:
    assert beta([]) == 0.0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 64, 4096])
@pytest.mark.parametrize("busy", [1.0, 0.5, 0.01])
def test_one_busy_processor_is_the_worst_case(n: int, busy: float) -> None:
    for where in {0, n // 2, n - 1}:
        loads = [0.0] * n
        loads[where] = busy
        assert beta(loads) == pytest.approx(worst(n), rel=1e-12, abs=1e-15)


def test_examples_by_hand() -> None:
    # Two cores, 1.0 and 0.0: mean 0.5, |0.5| + |0.5| over 1.0.
    assert beta([1.0, 0.0]) == pytest.approx(1.0)
    # Four cores 1, 1, 0, 0: mean 0.5, deviations 0.5 each, 2.0 / 2.0.
    assert beta([1.0, 1.0, 0.0, 0.0]) == pytest.approx(1.0)
    # 0.9, 0.3, 0.3, 0.1: L = 1.6, mean 0.4; deviations .5 .1 .1 .3 = 1.0; 1.0 / 1.6.
    assert beta([0.9, 0.3, 0.3, 0.1]) == pytest.approx(0.625)
    # Three cores 0.6, 0.3, 0.0: L = 0.9, mean 0.3; deviations .3 0 .3; 0.6 / 0.9.
    assert beta([0.6, 0.3, 0.0]) == pytest.approx(2 / 3)


def test_more_imbalance_gives_a_larger_beta() -> None:
    assert beta([0.5, 0.5]) < beta([0.6, 0.4]) < beta([0.9, 0.1]) < beta([1.0, 0.0])


@pytest.mark.parametrize(
    "loads", [[-0.1], [0.5, -1e-9, 0.5], [float("nan"), 0.5], [float("inf"), 0.5]]
)
def test_bad_loads_are_refused(loads: list[float]) -> None:
    with pytest.raises(ValueError, match="load"):
        beta(loads)


@settings(deadline=None)
@given(loads_st)
def test_beta_is_the_definition(loads: list[float]) -> None:
    assert beta(loads) == pytest.approx(by_hand(loads), rel=1e-9, abs=1e-12)


@settings(deadline=None)
@given(loads_st)
def test_beta_is_within_its_bounds(loads: list[float]) -> None:
    assert 0.0 <= beta(loads) <= worst(len(loads))


@settings(deadline=None)
@given(loads_st, scale_st)
def test_beta_does_not_depend_on_units(loads: list[float], k: float) -> None:
    # Loads as percent or as fractions, or all doubled: the same imbalance.
    assert beta([x * k for x in loads]) == pytest.approx(beta(loads), rel=1e-9, abs=1e-12)


@settings(deadline=None)
@given(loads_st, st.randoms(use_true_random=False))
def test_beta_does_not_depend_on_core_order(loads: list[float], rnd: random.Random) -> None:
    shuffled = list(loads)
    rnd.shuffle(shuffled)
    assert beta(shuffled) == pytest.approx(beta(loads), rel=1e-9, abs=1e-12)


@settings(deadline=None)
@given(st.floats(min_value=1e-6, max_value=1.0), st.integers(min_value=1, max_value=256))
def test_equal_loads_property(load: float, n: int) -> None:
    assert beta([load] * n) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------- beta_fleet


def test_fleet_busy_in_proportion_to_capacity_is_balanced() -> None:
    # 8, 16 and 64 cores, each a quarter busy.
    assert beta_fleet([(8, 2), (16, 4), (64, 16)]) == pytest.approx(0.0, abs=1e-12)
    # Fully busy everywhere.
    assert beta_fleet([(4, 4), (128, 128)]) == pytest.approx(0.0, abs=1e-12)


def test_fleet_examples_by_hand() -> None:
    # 4 + 12 cores, 2 busy on each: B = 4, C = 16; shares 1 and 3; |2-1| + |2-3| = 2; 2/4.
    assert beta_fleet([(4, 2), (12, 2)]) == pytest.approx(0.5)
    # 8 + 8 cores, all 6 busy cores on the first: shares 3 and 3; 3 + 3 over 6.
    assert beta_fleet([(8, 6), (8, 0)]) == pytest.approx(1.0)
    # 2 + 6 cores, 4 busy on the small host: shares 1 and 3; 3 + 3 over 4.
    assert beta_fleet([(2, 4), (6, 0)]) == pytest.approx(1.5)
    # 10 + 30 cores, 5 and 15 busy: in proportion.
    assert beta_fleet([(10, 5), (30, 15)]) == pytest.approx(0.0, abs=1e-12)


def test_fleet_without_work_or_hosts_is_balanced() -> None:
    assert beta_fleet([]) == 0.0
    assert beta_fleet([(16, 0), (64, 0)]) == 0.0


def test_fleet_accepts_any_iterable() -> None:
    hosts = [(4, 2), (12, 2)]
    assert beta_fleet(iter(hosts)) == beta_fleet(hosts)
    assert beta_fleet(h for h in hosts) == beta_fleet(hosts)


@pytest.mark.parametrize(
    "hosts",
    [[(-1, 0)], [(4, -0.5)], [(4, 2), (8, -1)], [(float("nan"), 1)], [(4, float("inf"))]],
)
def test_fleet_refuses_bad_input(hosts: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError):
        beta_fleet(hosts)


hosts_st = st.lists(
    st.tuples(st.integers(min_value=1, max_value=512), load_st),
    min_size=1,
    max_size=32,
).map(lambda hs: [(float(c), c * f) for c, f in hs])  # busy cores never above capacity


@settings(deadline=None)
@given(hosts_st, scale_st)
def test_fleet_does_not_depend_on_units(hosts: list[tuple[float, float]], k: float) -> None:
    scaled = [(c * k, b * k) for c, b in hosts]
    assert beta_fleet(scaled) == pytest.approx(beta_fleet(hosts), rel=1e-9, abs=1e-12)
    # Busy counted in another unit (percent of a core) alone: the same too.
    busy_scaled = [(c, b * k) for c, b in hosts]
    assert beta_fleet(busy_scaled) == pytest.approx(beta_fleet(hosts), rel=1e-9, abs=1e-12)


@settings(deadline=None)
@given(hosts_st, load_st)
def test_fleet_proportional_load_is_balanced(hosts: list[tuple[float, float]], f: float) -> None:
    assert beta_fleet([(c, c * f) for c, _ in hosts]) == pytest.approx(0.0, abs=1e-9)


@settings(deadline=None)
@given(hosts_st)
def test_fleet_within_bounds(hosts: list[tuple[float, float]]) -> None:
    # The worst case is all busy cores on the smallest host: 2 (1 - C_min / C).
    cap = sum(c for c, _ in hosts)
    bound = 2 * (1 - min(c for c, _ in hosts) / cap)
    assert -1e-12 <= beta_fleet(hosts) <= bound + 1e-9


@settings(deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=64.0), min_size=1, max_size=32))
def test_fleet_of_equal_hosts_is_beta_over_hosts(busy: list[float]) -> None:
    # With equal capacities the weighting drops out: hosts are just processors.
    hosts = [(64.0, b) for b in busy]
    assert beta_fleet(hosts) == pytest.approx(beta(busy), rel=1e-9, abs=1e-12)


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=64), st.integers(min_value=1, max_value=64))
def test_fleet_with_all_work_on_one_host(c1: int, c2: int) -> None:
    # Everything on the first host, nothing on the second: 2 * C2 / C.
    assert beta_fleet([(c1, c1 / 2), (c2, 0)]) == pytest.approx(2 * c2 / (c1 + c2))
