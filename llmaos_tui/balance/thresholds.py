"""What a move must gain to be worth making, derived from the instance.

Two fixed thresholds stopped plans early (issue 15): ``Budget.min_gain = 1e-4`` of
beta per move is about one mean unit on 500 hosts but several on 2,000 (a move's
gain in beta shrinks as ``1 / L`` while the work left spreads over more
processors), and the auto mode's ``0.005`` was most moves' whole gain on 64 cores x
640 units. So, when the caller does not fix one:

- a plan (:func:`plan_min_gain`) asks of each move at least a share of the
  average processor's part of the gap left to the floor, ``GAP_SHARE * (D - D_floor)
  / n`` of D, and never less than ``RESOLUTION`` of the mean processor's load (below
  that, a move shifts less than what a load sample resolves). The first term
  shrinks as the plan closes the gap, so a noise-free plan runs on to near the
  floor, and it stops where single moves only shave what is left;
- the auto mode (:func:`noise_min_gain`) asks of each move what the noise of the
  smoothed loads cannot explain: ``Z`` standard deviations of the error of a
  move's gain, estimated from the measured spread of each unit's samples around its
  moving mean (see :mod:`.stability`).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from llmaos_tui.balance.model import Budget
from llmaos_tui.balance.state import State

# A move's gain, of D, given the state it is made on.
MinGain = Callable[[State], float]

# A move must close this share of the average processor's part of the gap to the floor.
GAP_SHARE = 0.5
# ... and shift at least this share of the mean processor's load.
RESOLUTION = 1e-3
# Standard deviations of noise a move's predicted gain must stand above. 1, not 2: on
# 32 x 200 and 64 x 640 noisy cores (bench/planner.py) 2 ended worse in true beta than
# naive re-planning on some seeds, 1 better on all.
Z = 1.0


def plan_min_gain(st: State, budget: Budget, floor_beta: float) -> MinGain:
    """The least gain of D per move: ``budget.min_gain`` of beta if set, else derived."""
    if budget.min_gain is not None:
        fixed = budget.min_gain * st.total
        return lambda _st: fixed
    n = max(1, len(st.procs))
    res = RESOLUTION * st.total / n
    d_floor = floor_beta * st.total
    share = GAP_SHARE / max(1, sum(len(lst) for lst in st.on))

    def derived(s: State) -> float:
        return max(res, share * (s.dev - d_floor))

    return derived


def noise_min_gain(move_sd: float, total: float, n: int) -> float:
    """The least gain of beta per move on smoothed loads.

    ``move_sd`` is the standard deviation of the error of a move's predicted gain of D
    (from the noise left in the smoothed loads of its source and destination);
    ``total`` the load, ``n`` the processors (for the resolution floor, as in a plan).
    """
    if total <= 0.0:
        return 0.0
    return max(Z * move_sd, RESOLUTION * total / max(1, n)) / total
