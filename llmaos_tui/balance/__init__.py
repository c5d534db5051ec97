"""The migration planner (pure, no I/O): proposes moves that lower beta with few, cheap moves.

- :mod:`.model`: processors, units, constraints, budget, moves and plans;
- :mod:`.planner`: ``plan`` (the greedy, refined on small instances), the floor and
  the k-move lower bound;
- :mod:`.greedy`: the greedy itself, with :mod:`.frontier` (each source's best move,
  kept between steps); :mod:`.state`: the working state both it and :mod:`.exact`
  use (so that neither imports the other's internals);
- :mod:`.thresholds`: what a move must gain, derived from the instance;
- :mod:`.exact`: an exact solver for small instances (tests, and refining small plans);
- :mod:`.stability`: smoothing, trigger band, cool-down: the auto mode;
- :mod:`.snapshot`: planner input from a ``snapshot --json`` document.
"""

from llmaos_tui.balance.model import (
    Budget,
    Constraints,
    Level,
    Move,
    Plan,
    Processor,
    Unit,
    beta_of,
)
from llmaos_tui.balance.planner import floor, k_move_bound, plan, single_move_gain
from llmaos_tui.balance.snapshot import SnapshotError, plan_from_snapshot, problem_from_snapshot
from llmaos_tui.balance.stability import AutoBalancer, Decision, StabilityConfig

__all__ = [
    "AutoBalancer",
    "Budget",
    "Constraints",
    "Decision",
    "Level",
    "Move",
    "Plan",
    "Processor",
    "SnapshotError",
    "StabilityConfig",
    "Unit",
    "beta_of",
    "floor",
    "k_move_bound",
    "plan",
    "plan_from_snapshot",
    "problem_from_snapshot",
    "single_move_gain",
]
