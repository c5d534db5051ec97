"""The greedy's frontier (llmaos_tui/balance/frontier.py) against a full rescan.

The frontier keeps each source's best move and re-scores it only where a move
touched it, instead of looking at every unit and destination at each step. What an
operator would check: its plans are as good as the full rescan's (each step the best
single move over every unit and every destination, by the exact change of the
deviation sum), they keep every constraint, and each move's gain is the real one.
"""

from __future__ import annotations

import pytest

from llmaos_tui.balance import Budget, Constraints, Processor, Unit, plan
from llmaos_tui.balance.state import State
from tests.test_planner import instance, replay


def rescan_greedy(ps: list[Processor], us: list[Unit], c: Constraints) -> float:
    """beta after the textbook greedy: at each step, every feasible single move of a
    unit not moved yet is tried, and the one lowering the deviation sum most made."""
    st = State.build(ps, us, c)
    movable = {k for lst in st.on for _w, k in lst}
    tol = 1e-12 * max(1.0, st.total)
    while True:
        best: tuple[float, int, int] | None = None
        for k in movable:
            i, w = st.where[k], st.units[k].load
            for j in st.members[st.dom[i]]:
                if j == i or not st.feasible(k, j):
                    continue
                gain = abs(st.exc[i]) + abs(st.exc[j]) - abs(st.exc[i] - w) - abs(st.exc[j] + w)
                if gain > tol and (best is None or gain > best[0]):
                    best = (gain, k, j)
        if best is None:
            return st.beta()
        st.apply(best[1], best[2])
        movable.discard(best[1])


# On 12 hosts with capacity, memory, GPU and replica limits, best fit (which host a
# unit fills best) and the rescan's largest single gain part ways on a few instances,
# either way, by up to 0.04 of beta: the greedy before the frontier ended on exactly
# the same betas on these 30 instances. On cores they agree closely.
@pytest.mark.parametrize(("hosts", "worst", "mean"), [(False, 0.01, 0.001), (True, 0.05, 0.004)])
def test_frontier_plans_are_as_good_as_a_full_rescan(
    hosts: bool, worst: float, mean: float
) -> None:
    c = Constraints(capacity=not hosts) if not hosts else Constraints(headroom=0.9)
    diffs = []
    for seed in range(30):
        ps, us = instance(500 + seed, 12, 90, hosts=hosts)
        p = plan(ps, us, level="hosts" if hosts else "cores", budget=Budget(None, 0.0),
                 constraints=c, refine=False)  # fmt: skip
        replay(ps, us, p, c)  # every constraint, and each move's predicted beta
        # Single moves each gain; a compound that makes room gains as a whole.
        assert all(m.gain > 0 for m in p.moves if "makes room" not in m.reason)
        assert p.beta_after_predicted <= p.beta_before
        diffs.append(p.beta_after_predicted - rescan_greedy(ps, us, c))
    # Never far worse on any instance, and no worse on the whole (the room-making
    # moves let it beat the single-move rescan where single moves stall).
    assert max(diffs) <= worst, diffs
    assert sum(diffs) / len(diffs) <= mean, diffs


def test_frontier_plan_reaches_near_the_floor_on_many_cores() -> None:
    # 512 cores x 4,000 units: the frontier re-scores only what moves touch; the plan
    # still ends near the floor (0.0097 against 0.0014 here, as the full rescan did).
    ps, us = instance(7, 512, 4000, pinned=0.1)
    c = Constraints(capacity=False)
    p = plan(ps, us, budget=Budget(None), constraints=c)
    assert len(p.moves) > 300
    assert p.beta_after_predicted <= p.floor + 0.01
