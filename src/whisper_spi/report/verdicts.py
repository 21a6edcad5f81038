"""The one verdict rule every Finding goes through, and the one power calculation: a claim
is an inequality on one cell, value < threshold (``below``) or value > threshold
(``above``), judged from the cell's interval; :data:`RULE` states both as the report prints
them."""

from __future__ import annotations

import math
from typing import Any

from whisper_spi.theory.summary import MIN_SPEAKERS

__all__ = ["ABOVE", "BELOW", "FAILS", "HOLDS", "NOT_RUN", "N_MIN", "RULE", "UNDECIDED",
           "VERDICTS", "finite", "power_n", "verdict", "why_not"]  # fmt: skip

HOLDS, FAILS, UNDECIDED, NOT_RUN = "holds", "does not hold", "undecided at this n", "not run here"
VERDICTS = (HOLDS, FAILS, UNDECIDED, NOT_RUN)
BELOW, ABOVE = "below", "above"
N_MIN = 10  # fewer units: a percentile interval is too coarse to trust at its ends
RULE = (
    "Verdict: a claim is an inequality on one cell, value < or > a threshold; it holds when the "
    "cell's whole 95% interval is on the claimed side, does not hold when the whole interval is "
    "on the other side (the threshold included), and is undecided at this n otherwise, or when "
    f"the interval is not finite or rests on fewer than {N_MIN} units (Theorem 1's lines: "
    f"fewer than {MIN_SPEAKERS} speakers, the theory stage's own rule). What it would take: a "
    "power calculation at the observed spread, n_needed = n (w / |e|)², with e the estimate's "
    "distance to the threshold and w its distance to the interval's end on the threshold's "
    "side: the n at which an interval shrinking as 1/√n about the same estimate would just "
    "exclude the threshold (about 50% power; 80% needs about twice that), at least the minimum "
    "n; not estimable when e or w is 0 or the interval is not finite. 'not run here': a claim "
    "of the paper about a model this run does not include."
)


def finite(*xs: Any) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def verdict(lo, hi, direction: str, threshold=0.0, n: int | None = None, n_min=N_MIN) -> str:
    """The claim "value < threshold" (``direction`` below) or "value > threshold" (above) from
    its interval [lo, hi]: ``holds`` when the whole interval is on the claimed side (hi < t;
    lo > t), ``does not hold`` when it is on the other side, the threshold included (lo >= t;
    hi <= t: a strict claim fails on [0, 0]), else ``undecided at this n``, which it also is
    whatever the interval says when lo, hi or the threshold is not finite, lo > hi, or ``n``
    (None: not checked) is below ``n_min``."""
    if direction not in (BELOW, ABOVE):
        raise ValueError(f"direction must be {BELOW!r} or {ABOVE!r}, got {direction!r}")
    if not finite(lo, hi, threshold) or lo > hi or (n is not None and n < n_min):
        return UNDECIDED
    if direction == BELOW:
        return HOLDS if hi < threshold else FAILS if lo >= threshold else UNDECIDED
    return HOLDS if lo > threshold else FAILS if hi <= threshold else UNDECIDED


def power_n(value, lo, hi, n: int | None, threshold=0.0, n_min=N_MIN) -> int | None:
    """The n that would decide the claim at the observed spread: with e = value - threshold
    and w the distance from value to the interval's end on the threshold's side (value - lo if
    e > 0, else hi - value), an interval shrinking as 1/sqrt(n) about the same estimate just
    excludes the threshold at ceil(n (w / |e|)^2); at least ``n_min``, and more than n when
    the interval reaches the threshold at n. None when not estimable: e = 0 (no n decides
    it), w <= 0 (no spread), anything not finite, no n."""
    if not finite(value, lo, hi, threshold) or not n or value == threshold:
        return None
    effect = value - threshold
    w = value - lo if effect > 0 else hi - value
    if w <= 0:
        return None
    needed = max(n_min, math.ceil(n * (w / abs(effect)) ** 2 - 1e-9))
    # An interval that reaches the threshold at n (the threshold included) leaves the claim
    # undecided at n itself: only a larger n decides it.
    return max(needed, n + 1) if w >= abs(effect) else needed


def approx_n(n: int) -> str:
    """An n from power_n as shown: two significant digits from 1,000 up, since a calculation
    at the observed spread is no more precise than that (the CSV keeps the exact value)."""
    if n < 1000:
        return str(n)
    return f"{round(n, 1 - int(math.log10(n))):,}"


def why_not(value, lo, hi, n, threshold) -> str:
    if not finite(value, lo, hi, threshold):
        return "not estimable: the estimate, its interval or the threshold is not finite"
    if not n:
        return "not estimable: n = 0"
    if value == threshold:
        return "not estimable: the estimate sits on the threshold, no n decides it"
    return f"not estimable: zero-width interval at n = {n} (every replicate the same)"
