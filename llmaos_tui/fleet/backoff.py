"""When a host's watcher tries again: one reconnect policy for every way a link fails.

Equal jitter on a capped exponential: after the n-th failure in a row the wait is
drawn uniformly from [c/2, c] with c = min(cap, base * 2**(n-1)). Why this form:

- The floor doubles with each failure, so how often a dead or refusing host is tried
  is bounded for sure, not just on average (full jitter can draw ~0 s twice running,
  which is the fast loop this policy exists to end). Over T seconds a host that never
  comes up is tried at most about log2(cap/base) + T/(cap/2) times.
- Half of every window is random, so a fleet cut off at once (the console's own
  network) comes back spread out, not in lockstep against sshd's MaxStartups.
- base 1 s, cap 30 s by default: the first retry is quick for a blip, and a host
  that returns is seen again within 30 s (plus the connect), while 200 dead hosts
  cost the console under ten connects a second between them. A longer cap would
  save little and leave a repaired host dark for a minute.

A failure is any attempt that did not end in a healthy session: an open that
failed, a handshake that failed, and a session that came up but ended within
``healthy_after`` seconds (a host that accepts and drops at once). Only a session
that stayed up that long resets the count. The pure functions take the random
draw and the times as arguments; :class:`Backoff` holds the count and injects a
random source and a clock, both replaceable in tests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

BASE = 1.0
CAP = 30.0
HEALTHY_AFTER = 30.0
"""A session must stay up this long for the next failure to start from ``base`` again."""


def ceiling(failures: int, base: float = BASE, cap: float = CAP) -> float:
    """The longest wait after ``failures`` failures in a row (the first is 1)."""
    if failures < 1:
        return 0.0
    # 2**n overflows a float past n = 1023: the cap is reached long before.
    return min(cap, base * 2.0 ** min(failures - 1, 64))


def delay(failures: int, draw: float, base: float = BASE, cap: float = CAP) -> float:
    """The wait after ``failures`` failures in a row, ``draw`` in [0, 1] its random part."""
    c = ceiling(failures, base, cap)
    return c / 2 + c / 2 * min(1.0, max(0.0, draw))


def healthy(up_for: float | None, healthy_after: float = HEALTHY_AFTER) -> bool:
    """Whether a session that was up ``up_for`` seconds (None: never up) resets the count."""
    return up_for is not None and up_for >= healthy_after


def failures_after(
    failures: int, up_for: float | None, healthy_after: float = HEALTHY_AFTER
) -> int:
    """The count of failures in a row once an attempt has ended (it is always one more,
    counted from zero again after a healthy session)."""
    return 1 if healthy(up_for, healthy_after) else failures + 1


class Backoff:
    """The policy's state for one host: failures in a row, and since when it is up.

    The watcher calls :meth:`up` when a session comes up and :meth:`failed` when an
    attempt ends, and waits the delay it returns. ``next``/``reset`` are the bare
    steps, for callers that judge health themselves.
    """

    def __init__(
        self,
        first: float = BASE,
        cap: float = CAP,
        *,
        healthy_after: float = HEALTHY_AFTER,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap, not {first} and {cap}")
        self.first = first
        self.cap = cap
        self.healthy_after = healthy_after
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._clock = clock
        self._up_since: float | None = None

    @property
    def attempt(self) -> int:
        """Failures in a row so far (the name older callers used)."""
        return self.failures

    def up(self) -> None:
        """A session came up now."""
        self._up_since = self._clock()

    def failed(self) -> float:
        """An attempt ended (a failed open or a session's end): the wait before the next.

        The session's length is measured to now, when it ended, and forgotten here, so
        a failed open long after a healthy session never counts as healthy again.
        """
        up_for = None if self._up_since is None else self._clock() - self._up_since
        self._up_since = None
        self.failures = failures_after(self.failures, up_for, self.healthy_after)
        return delay(self.failures, self._rng.random(), self.first, self.cap)

    def next(self) -> float:
        """One more failure, whatever came before: its wait."""
        self.failures += 1
        return delay(self.failures, self._rng.random(), self.first, self.cap)

    def reset(self) -> None:
        self.failures = 0
        self._up_since = None
