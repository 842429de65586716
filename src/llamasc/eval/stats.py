"""Error bars and paired tests for accuracy numbers (stdlib only, exact where it matters)."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0/n and n/n, which
    matters for the small samples and tiny models this tool is used with.
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside 0..{n}")
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


def binom_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips.

    With p = 0.5 the distribution is symmetric, so the two-sided p-value is twice the smaller
    tail (capped at 1), which equals summing every outcome as unlikely as the one observed.
    """
    if n == 0:
        return 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} outside 0..{n}")
    tail = min(k, n - k)
    # exact integer arithmetic: math.comb is exact, one division at the end
    total = sum(math.comb(n, i) for i in range(tail + 1))
    return min(1.0, 2 * total / (1 << n))


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test: p-value for ``b`` A-only and ``c`` B-only correct items."""
    return binom_two_sided_p(b, b + c)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of A and B on the same items (True = correct)."""

    n: int
    both: int
    a_only: int
    b_only: int
    neither: int

    @property
    def acc_a(self) -> float:
        return (self.both + self.a_only) / self.n if self.n else 0.0

    @property
    def acc_b(self) -> float:
        return (self.both + self.b_only) / self.n if self.n else 0.0

    @property
    def diff(self) -> float:
        """acc(B) - acc(A)."""
        return (self.b_only - self.a_only) / self.n if self.n else 0.0

    @property
    def diff_se(self) -> float:
        """Standard error of the paired difference (per-item differences in {-1, 0, 1})."""
        if self.n < 2:
            return 0.0
        mean = self.diff
        discordant = self.a_only + self.b_only
        var = (discordant - self.n * mean * mean) / (self.n - 1)
        return math.sqrt(max(var, 0.0) / self.n)

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.a_only, self.b_only)


def pair(outcomes: list[tuple[bool, bool]]) -> Paired:
    """Count the 2x2 table of (A correct, B correct) outcomes."""
    both = sum(1 for a, b in outcomes if a and b)
    a_only = sum(1 for a, b in outcomes if a and not b)
    b_only = sum(1 for a, b in outcomes if b and not a)
    return Paired(
        n=len(outcomes),
        both=both,
        a_only=a_only,
        b_only=b_only,
        neither=len(outcomes) - both - a_only - b_only,
    )


def verdict(p: Paired, alpha: float = 0.05) -> str:
    """A plain-words reading of a paired comparison."""
    if p.n == 0:
        return "no paired questions to compare"
    if p.a_only + p.b_only == 0:
        return "identical outcomes on every question: no difference at this sample size"
    if p.p_value >= alpha:
        return (
            f"no significant difference at this sample size "
            f"(McNemar p={p.p_value:.3g} on {p.a_only + p.b_only} discordant of {p.n})"
        )
    better = "B" if p.b_only > p.a_only else "A"
    return (
        f"{better} is better: {abs(p.diff) * 100:.1f} points "
        f"(McNemar p={p.p_value:.3g}, significant at {alpha:g})"
    )


__all__ = [
    "Paired",
    "binom_two_sided_p",
    "mcnemar_exact",
    "pair",
    "verdict",
    "wilson_interval",
]
