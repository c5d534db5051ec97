"""Hysteresis for balancing on live, noisy loads: the auto mode's rules.

Loads measured over a second are noisy; a planner run on each raw sample would move
work back and forth chasing noise. :class:`AutoBalancer` plans on smoothed loads
(an exponentially weighted mean per unit, so a unit's history moves with it, and
per processor for the load no unit explains), only when the smoothed beta stands
a trigger band above the floor, only moves that gain a minimum of beta each, never
a unit moved within its cool-down, and at most K moves per period. Dry-run computes
the same decisions without counting them as made. Pure: the caller feeds snapshots
and carries the moves out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from llmaos_tui.balance.model import (
    Budget,
    Constraints,
    Level,
    Move,
    Plan,
    Processor,
    Unit,
    finite,
)
from llmaos_tui.balance.planner import plan
from llmaos_tui.balance.thresholds import noise_min_gain


@dataclass(frozen=True)
class StabilityConfig:
    """The knobs. ``alpha`` is the weight of the newest sample in the moving mean;
    ``band`` the beta above the floor that triggers a plan; ``min_gain`` the beta a
    move must gain; ``cooldown`` the periods a moved unit stays put, and
    ``no_return`` the periods it may not go back to the processor it left;
    ``max_moves`` the K moves per period.

    ``band`` and ``min_gain`` None (the defaults) are derived each period from the
    measured noise (:func:`noise_thresholds`): fixed values suited one size of
    instance and not another (0.005 was most moves' whole gain on 64 cores x 640
    units)."""

    alpha: float = 0.2
    band: float | None = None
    min_gain: float | None = None
    cooldown: int = 10
    no_return: int = 60
    max_moves: int = 4

    def __post_init__(self) -> None:
        finite("stability: alpha", self.alpha)
        for name in ("band", "min_gain"):
            v = getattr(self, name)
            if v is not None and not finite(f"stability: {name}", v) >= 0.0:
                raise ValueError(f"stability: {name} must be >= 0, not {v!r}")
        for name in ("cooldown", "no_return", "max_moves"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"stability: {name} must be an int >= 0, not {v!r}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"stability: alpha must be in (0, 1], not {self.alpha!r}")


@dataclass(frozen=True)
class Decision:
    """What one period decided: the moves to make (empty when not triggered) and why."""

    period: int
    beta_smoothed: float
    floor: float
    triggered: bool
    moves: tuple[Move, ...]
    plan: Plan | None
    reason: str


class Ewma:
    """Exponentially weighted means keyed by id, with the spread of the samples around
    them (an exponentially weighted variance); ids not seen in an update are dropped."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.values: dict[str, float] = {}
        self.variances: dict[str, float] = {}

    def update(self, samples: dict[str, float]) -> dict[str, float]:
        a = self.alpha
        values: dict[str, float] = {}
        variances: dict[str, float] = {}
        for k, v in samples.items():
            if k not in self.values:
                values[k], variances[k] = v, 0.0
                continue
            diff = v - self.values[k]
            values[k] = self.values[k] + a * diff
            variances[k] = (1.0 - a) * (self.variances[k] + a * diff * diff)
        self.values, self.variances = values, variances
        return self.values

    def mean_variance(self, key: str) -> float:
        """The variance left in the moving mean of ``key`` by noise of the measured
        spread: ``alpha / (2 - alpha)`` of the samples' (white noise, steady state)."""
        return self.variances.get(key, 0.0) * self.alpha / (2.0 - self.alpha)


def noise_thresholds(processor_variances: Sequence[float], total: float) -> tuple[float, float]:
    """(band, min_gain) in beta, from the noise left in each processor's smoothed load.

    The band is what noise alone adds to beta on average (``E|N(0, s)| = s *
    sqrt(2 / pi)`` per processor, summed, over the load): below it, an imbalance is
    not told from noise. A move's predicted gain errs by about twice the noise of its
    source's and destination's loads (``2 * sqrt(2 s^2)`` for a typical s); a move
    must gain ``Z`` times that (:func:`.thresholds.noise_min_gain`).
    """
    n = len(processor_variances)
    if total <= 0.0 or n == 0:
        return 0.0, 0.0
    band = sum(math.sqrt(v) for v in processor_variances) * math.sqrt(2.0 / math.pi) / total
    typical = sum(processor_variances) / n
    return band, noise_min_gain(2.0 * math.sqrt(2.0 * typical), total, n)


@dataclass
class AutoBalancer:
    """Given successive snapshots of one level, returns at most K moves per period."""

    config: StabilityConfig = field(default_factory=StabilityConfig)
    level: Level = "cores"
    dry_run: bool = False
    constraints: Constraints = field(default_factory=Constraints)
    period: int = 0
    moved_at: dict[str, int] = field(default_factory=dict)
    left: dict[str, tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._units = Ewma(self.config.alpha)
        self._background = Ewma(self.config.alpha)

    def smooth(
        self, processors: Sequence[Processor], units: Sequence[Unit]
    ) -> tuple[list[Processor], list[Unit]]:
        """The snapshot with every load replaced by its moving mean."""
        on: dict[str, float] = {}
        for u in units:
            on[u.processor] = on.get(u.processor, 0.0) + u.load
        bg = self._background.update(
            {p.id: max(0.0, p.load - on.get(p.id, 0.0)) for p in processors}
        )
        ul = self._units.update({u.id: u.load for u in units})
        s_units = [replace(u, load=ul[u.id]) for u in units]
        s_on: dict[str, float] = {}
        for u in s_units:
            s_on[u.processor] = s_on.get(u.processor, 0.0) + u.load
        s_procs = [replace(p, load=bg[p.id] + s_on.get(p.id, 0.0)) for p in processors]
        return s_procs, s_units

    def thresholds(
        self, processors: Sequence[Processor], units: Sequence[Unit]
    ) -> tuple[float, float]:
        """(band, min_gain) for this period: the config's, or derived from the noise
        measured so far in each unit's and each processor's background samples."""
        cfg = self.config
        if cfg.band is not None and cfg.min_gain is not None:
            return cfg.band, cfg.min_gain
        var = {p.id: self._background.mean_variance(p.id) for p in processors}
        for u in units:
            var[u.processor] = var.get(u.processor, 0.0) + self._units.mean_variance(u.id)
        band, min_gain = noise_thresholds(list(var.values()), sum(p.load for p in processors))
        return (
            band if cfg.band is None else cfg.band,
            min_gain if cfg.min_gain is None else cfg.min_gain,
        )

    def step(self, processors: Sequence[Processor], units: Sequence[Unit]) -> Decision:
        """Feed one period's snapshot; the moves to make now (already counted unless dry-run)."""
        self.period += 1
        cfg = self.config
        procs, s_units = self.smooth(processors, units)
        cooling = frozenset(
            uid for uid, t in self.moved_at.items() if self.period - t < cfg.cooldown
        )
        back = frozenset(
            (uid, src) for uid, (src, t) in self.left.items() if self.period - t < cfg.no_return
        )
        constraints = replace(
            self.constraints,
            frozen=self.constraints.frozen | cooling,
            forbidden=self.constraints.forbidden | back,
        )
        band, min_gain = self.thresholds(procs, s_units)
        budget = Budget(max_moves=cfg.max_moves, min_gain=min_gain)
        # The greedy alone: its moves each gain min_gain on their own. The exact
        # refinement of small plans fits the smoothed loads to the last hundredth, which
        # here is noise: on a noisy 8-core test it made a third more moves for a worse
        # true beta.
        p = plan(
            procs, s_units, level=self.level, budget=budget, constraints=constraints, refine=False
        )
        if p.beta_before <= p.floor + band:
            return Decision(
                self.period, p.beta_before, p.floor, False, (), p, "within the band above the floor"
            )
        if not p.moves:
            return Decision(
                self.period, p.beta_before, p.floor, True, (), p, "no move gains enough"
            )
        if not self.dry_run:
            for m in p.moves:
                self.moved_at[m.unit] = self.period
                self.left[m.unit] = (m.src, self.period)
        return Decision(
            self.period,
            p.beta_before,
            p.floor,
            True,
            p.moves,
            p,
            "dry run: nothing counted as moved" if self.dry_run else f"{len(p.moves)} moves",
        )
