"""Wilson intervals and McNemar's exact test against known values, plus their properties."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamasc.eval.stats import binom_two_sided_p, mcnemar_exact, pair, verdict, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # textbook values (Newcombe 1998, table I; Wikipedia "Binomial proportion CI")
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
    ],
)
def test_wilson_known_values(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(low, abs=5e-4)
    assert got[1] == pytest.approx(high, abs=5e-4)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        (3, 3, 1.0),
        (0, 5, 2 / 32),  # 2 * (1/2)^5
        (1, 6, 2 * (1 + 7) / 128),
        (2, 10, 2 * (1 + 12 + 66) / 4096),
        (10, 2, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_exact_known_values(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


@given(st.integers(0, 400), st.integers(1, 400))
def test_wilson_contains_the_estimate_and_stays_in_bounds(k: int, n: int) -> None:
    k = min(k, n)
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n + 1e-12
    assert k / n - 1e-12 <= high <= 1.0


@given(st.integers(1, 200), st.integers(0, 100))
def test_wilson_narrows_with_more_data(n: int, pct: int) -> None:
    k = n * pct // 100
    small = wilson_interval(k, n)
    big = wilson_interval(4 * k, 4 * n)
    assert big[1] - big[0] < small[1] - small[0]


@given(st.integers(0, 300), st.integers(0, 300))
def test_mcnemar_is_symmetric_and_a_probability(b: int, c: int) -> None:
    p = mcnemar_exact(b, c)
    assert p == mcnemar_exact(c, b)
    assert 0.0 < p <= 1.0 or (b + c > 1000 and p >= 0.0)


@given(st.integers(0, 80), st.integers(0, 80))
def test_exact_p_matches_the_definition(k: int, extra: int) -> None:
    # two-sided exact p: the probability of every outcome no likelier than the observed one
    n = k + extra
    probs = [Fraction(math.comb(n, i), 2**n) for i in range(n + 1)]
    expected = sum(p for p in probs if p <= probs[k])
    assert binom_two_sided_p(k, n) == pytest.approx(float(min(expected, 1)), rel=1e-9)


@given(st.integers(0, 60), st.integers(0, 60))
def test_more_lopsided_is_never_less_significant(b: int, c: int) -> None:
    if c >= b:
        assert mcnemar_exact(b, c + 1) <= mcnemar_exact(b, c)


def test_pairing_counts_and_difference() -> None:
    outcomes = [(True, True)] * 5 + [(True, False)] * 1 + [(False, True)] * 6 + [(False, False)] * 8
    p = pair(outcomes)
    assert (p.n, p.both, p.a_only, p.b_only, p.neither) == (20, 5, 1, 6, 8)
    assert p.acc_a == pytest.approx(6 / 20)
    assert p.acc_b == pytest.approx(11 / 20)
    assert p.diff == pytest.approx(5 / 20)
    assert p.p_value == pytest.approx(2 * 8 / 128)
    assert "no significant difference at this sample size" in verdict(p)


def test_verdict_names_the_better_side_when_significant() -> None:
    p = pair([(False, True)] * 12 + [(True, True)] * 3)
    assert verdict(p).startswith("B is better")
    assert verdict(pair([(True, True)] * 4)).startswith("identical outcomes")
    assert verdict(pair([])) == "no paired questions to compare"
