"""A lower bound on beta after at most k moves that counts what chunky units waste.

Pure arithmetic on excesses, deficits and unit loads (no planner state): the
planner's :func:`~llmaos_tui.balance.planner.k_move_bound` builds the inputs and takes
the largest of this bound and its others. Why it holds is proved below.

Notation, per domain: ``a_i = max(0, L_i - T_i)`` (excess), ``b_i = max(0, T_i - L_i)``
(deficit), ``E = sum_i a_i`` (beta is ``2E / L`` summed over domains, because
``sum_i (L_i - T_i) = 0`` in every domain, so excesses and deficits are equal). A plan
moves a set M of distinct units, unit u of load ``w_u`` from its home ``h(u)`` to
``t(u)``. With ``out_i``/``in_i`` the load leaving/reaching i and
``over_i = max(0, out_i - a_i)`` (what i sends beyond its excess; ``out_i`` when i is
at or under target), the final deficit of i is ``max(0, b_i - a_i + out_i - in_i)``, so
the decrease of E (equal to the decrease of the deficits) is exactly

    dE = sum_i min(b_i, in_i - over_i).                                     (1)

Fix any ``tau > 0``. For every processor j:

    min(b_j, in_j - over_j) <= sum_{u -> j} min(w_u, tau) + [in_j > 0] (b_j - tau)^+
                               - min(over_j, (tau - b_j)^+).                (2)

Proof. With no arrival, the left side is ``-over_j`` and the right side is
``-min(over_j, .) >= -over_j``. If some arrival has ``w_u >= tau``, the sum is at least
tau and the right side is at least ``tau + (b_j - tau)^+ - (tau - b_j)^+ = b_j``, which
bounds the left side. Otherwise every arrival is below tau, the sum is ``in_j``, and
the right side is at least ``in_j - over_j``, which bounds the left side too.

Summing (2) over j and regrouping the unit terms by home:

    dE <= sum_i f_i(S_i) + sum_{j receiving} (b_j - tau)^+,
    f_i(S) = sum_{u in S} min(w_u, tau) - min(max(0, W(S) - a_i), c_i),   c_i = (tau - b_i)^+,

where ``S_i`` are the units M takes from i and ``W(S)`` their load. At most k
processors receive, so the second sum is at most the k largest ``(b_j - tau)^+``.
For the first, :func:`_source_values` bounds ``F_i(m) = max f_i(S)`` over ``|S| = m``
(three cases of ``W(S)``, each bounded from above); the upper concave hull of those
values is concave in m, so the largest sum of hull values over ``sum m_i <= k`` is the
k largest hull increments. The result bounds dE from above for every tau, so the
smallest over the tried taus does, and ``2 (E - dE) / L`` bounds beta from below.
Capacity, memory, GPU and anti-affinity limits only shrink the set of plans, so
ignoring them keeps the bound valid.

Why it is tighter than counting loads: a unit larger than tau fills at most tau
wherever it lands, and a processor that sends more than its excess must be refilled
by the same amount, or loses it. A 1-core process on a core 0.5 above target, moved to
a core 0.5 below, gains nothing, and this bound knows it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

_NEG = -math.inf


def max_excess_drop(
    sources: Sequence[tuple[float, float, Sequence[float]]],
    deficits: Sequence[float],
    k: int,
) -> float:
    """An upper bound on the decrease of the total excess E by at most ``k`` moves.

    ``sources`` holds, per processor with movable units, its excess ``a``, its deficit
    ``b`` (one of them 0) and its movable units' loads; ``deficits`` every processor's
    deficit (all domains; a unit never leaves its domain, and one ``tau`` for all keeps
    each inequality valid). See the module docstring for the proof.
    """
    if k <= 0:
        return 0.0
    top = sorted((b for b in deficits if b > 0.0), reverse=True)[: k + 1]
    if not top:
        return 0.0  # no processor below target: nothing can decrease
    best = math.inf
    loads = [sorted((w for w in ws if w > 0.0), reverse=True) for _a, _b, ws in sources]
    for tau in sorted(set(top)):
        incs: list[float] = []
        for (a, b, _ws), ws in zip(sources, loads, strict=True):
            if ws:
                vals = _source_values(a, b, tau, ws, k)
                incs.extend(x for x in _hull_increments(vals) if x > 0.0)
        incs.sort(reverse=True)
        bonus = sum(max(0.0, b - tau) for b in top[:k])
        best = min(best, sum(incs[:k]) + bonus)
    return max(0.0, best)


def _source_values(a: float, b: float, tau: float, ws: list[float], k: int) -> list[float]:
    """``F(m)`` for m = 0..min(len(ws), k): upper bounds on ``max f(S)`` over ``|S| = m``.

    ``ws`` sorted by decreasing load. With ``V(S) = sum min(w, tau)`` and
    ``X(S) = sum max(0, w - tau) = W(S) - V(S)``, ``f(S)`` is ``V(S)`` when
    ``W(S) <= a``, ``a - X(S)`` when ``a < W(S) <= a + c`` and ``V(S) - c`` beyond.
    Each case is bounded over the m-sets that can be in it; every comparison leans
    towards admitting a case, which can only raise the bound.
    """
    c = max(0.0, tau - b)
    eps = 1e-12 * max(1.0, a + c)
    n = min(len(ws), k)
    v_pre = _prefix([min(w, tau) for w in ws])
    w_pre = _prefix(ws)
    # Case W <= a: only units <= a can be in S; V(S) <= W(S) <= a.
    fit = [w for w in ws if w <= a + eps]
    fit_small_pre = _prefix(sorted(fit))
    fit_v_pre = _prefix([min(w, tau) for w in fit])
    # Case W > a: S has j units above tau and m - j at most tau.
    small = [w for w in ws if w <= tau]
    big = [w for w in ws if w > tau]
    small_pre = _prefix(small)
    big_pre = _prefix(big)
    over_pre = _prefix(sorted(w - tau for w in big))
    out = [0.0]
    for m in range(1, n + 1):
        best = _NEG
        if m < len(fit_small_pre) and fit_small_pre[m] <= a + eps:
            best = min(a, fit_v_pre[m])
        # a - X(S): X(S) is at least the j smallest overshoots, and since the small
        # units bring at most the m - j largest, the big ones bring more than
        # a - that, so X(S) > a - small_top(m - j) - j * tau.
        least_x = math.inf
        for j in range(min(m, len(big)) + 1):
            if m - j >= len(small_pre):
                continue
            if big_pre[j] + small_pre[m - j] > a - eps:
                least_x = min(least_x, max(over_pre[j], a - small_pre[m - j] - j * tau))
        if least_x < math.inf:
            best = max(best, a - least_x)
        if w_pre[m] > a + c - eps:
            best = max(best, v_pre[m] - c)
        out.append(best)
    return out


def _prefix(xs: list[float]) -> list[float]:
    out = [0.0]
    for x in xs:
        out.append(out[-1] + x)
    return out


def _hull_increments(vals: list[float]) -> list[float]:
    """The slopes, one per unit step of m, of the upper concave hull of ``(m, vals[m])``.

    Non-increasing; the hull lies on or above every point, so greedy picks over the
    slopes of several hulls never undercount what the points allow.
    """
    pts = [(m, v) for m, v in enumerate(vals) if v > _NEG]
    hull: list[tuple[int, float]] = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # Drop the middle point when it lies on or under the chord to p.
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append(p)
    incs: list[float] = []
    for (x1, y1), (x2, y2) in itertools.pairwise(hull):
        incs.extend([(y2 - y1) / (x2 - x1)] * (x2 - x1))
    return incs
