"""The load model's formulas: the imbalance factor beta, per host and across hosts.

The one implementation both the agent and the console use (DESIGN.md, "The load
model"). Pure functions, no I/O.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Sequence


def beta(loads: Sequence[float]) -> float:
    """Imbalance of a set of processors: ``sum_i |L_i - L/n| / L``.

    0 for perfect balance and for no load at all; ``2(n-1)/n`` for one busy
    processor among n. Loads are utilisations, so they must not be negative.
    """
    n = len(loads)
    if n == 0:
        return 0.0
    # The console works this out for every sample of every host (1,000 a second with
    # 1,000 hosts): the loops are the builtins' own, in C. A NaN or an infinity makes the
    # sum NaN or infinite and a negative load the minimum negative, so a total in range
    # with a minimum >= 0 means every load is valid; anything else is checked one by one.
    total = sum(loads)
    if not (0.0 <= total < math.inf and min(loads) >= 0.0):
        for x in loads:
            _check(x, "a load")
    if total <= 0.0:
        return 0.0
    dev: float = sum(map(abs, map(operator.sub, loads, itertools.repeat(total / n, n))))
    return min(dev / total, beta_max(n))


def beta_max(n: int) -> float:
    """The largest beta over n processors: one busy, the rest idle."""
    return 2.0 * (n - 1) / n if n > 0 else 0.0


def beta_fleet(hosts: Iterable[tuple[float, float]]) -> float:
    """Capacity-weighted imbalance across hosts of different sizes.

    ``hosts`` yields ``(capacity C_h, busy B_h)`` pairs, capacity in cores and
    busy in busy cores: ``sum_h |B_h - C_h*B/C| / B``.
    """
    pairs = list(hosts)
    cap = 0.0
    busy = 0.0
    for c, b in pairs:
        _check(c, "a host's capacity")
        _check(b, "a host's busy cores")
        cap += c
        busy += b
    if busy <= 0.0 or cap <= 0.0:
        return 0.0
    return sum(abs(b - c * busy / cap) for c, b in pairs) / busy


def _check(x: float, what: str) -> None:
    # `not x >= 0` also refuses NaN, which would otherwise turn the result into NaN.
    if not x >= 0 or math.isinf(x):
        raise ValueError(f"{what} must be a finite number >= 0, not {x}")


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
