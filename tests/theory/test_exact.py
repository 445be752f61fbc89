"""Exact learning coefficients: known values, agreement between formulas, argument checks."""

from fractions import Fraction

import pytest

from theory.exact import (
    deep_linear_network,
    normal_crossing,
    reduced_rank_regression,
    regular,
)


@pytest.mark.parametrize(
    ("widths", "rank", "value"),
    [
        ([5, 3, 5], 0, Fraction(13, 2)),
        ([5, 4, 5], 0, Fraction(8)),
        ([2, 2, 2, 2], 0, Fraction(3, 2)),
        ([3, 3, 3], 1, Fraction(4)),
    ],
)
def test_dln_worked_examples(widths, rank, value):
    # The worked examples of REFERENCES §2 (Aoyagi 2024).
    assert deep_linear_network(widths, rank).value == value


def test_dln_two_layers_equals_reduced_rank_regression():
    # Aoyagi 2024 reduces to Aoyagi & Watanabe 2005 for L = 2, multiplicities included.
    for m in range(1, 9):
        for h in range(1, 9):
            for n in range(1, 9):
                for r in range(min(m, h, n) + 1):
                    assert deep_linear_network([m, h, n], r) == reduced_rank_regression(m, h, n, r)


def test_dln_full_rank_is_regular_count_of_identifiable_directions():
    # Full rank r = min width with H_0 = H_L = r: λ = [r(2r) − r²]/2 = r²/2 (the product's entries).
    assert deep_linear_network([3, 3, 3, 3], 3).value == Fraction(9, 2)


def test_dln_bounded_by_half_dimension():
    for widths in ([4, 7, 2], [3, 5, 5, 3], [6, 2, 6, 2, 6], [1, 9, 1]):
        d = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        for r in range(min(widths) + 1):
            lam = deep_linear_network(widths, r).value
            assert 0 <= lam <= Fraction(d, 2)
            if r > 0:  # more rank, no smaller coefficient
                assert lam >= deep_linear_network(widths, r - 1).value


def test_single_layer_is_regular():
    assert deep_linear_network([4, 3], 2) == regular(12)


def test_rrr_cases():
    assert reduced_rank_regression(4, 3, 4, 1).value == Fraction(6)
    # M + H < N + r: λ = (HM − Hr + Nr)/2
    assert reduced_rank_regression(1, 1, 5, 1).value == Fraction(1 * 1 - 1 + 5, 2)
    # M + N < H + r: λ = MN/2
    assert reduced_rank_regression(2, 9, 2, 2).value == Fraction(2)
    # odd case adds 1/8 and has multiplicity 2
    lc = reduced_rank_regression(3, 2, 4, 0)  # M+H+N+r = 9
    assert lc.value == Fraction(2 * 2 * 7 - 1 - 4 + 1, 8) and lc.multiplicity == 2


def test_normal_crossing():
    assert normal_crossing([1, 2]).value == Fraction(1, 4)
    assert normal_crossing([1, 2]).multiplicity == 1
    assert normal_crossing([1, 1]).multiplicity == 2
    assert normal_crossing([2, 0, 3], h=[1, 5, 2]).value == Fraction(1, 2)
    assert normal_crossing([3, 3], h=[2, 2]).value == Fraction(1, 2)


def test_regular():
    assert regular(7).value == Fraction(7, 2)


@pytest.mark.parametrize(
    ("call", "exc", "word"),
    [
        (lambda: deep_linear_network([3, 0, 3], 0), ValueError, "widths"),
        (lambda: deep_linear_network([3], 0), ValueError, "widths"),
        (lambda: deep_linear_network([3, 2, 3], 3), ValueError, "rank"),
        (lambda: deep_linear_network([3, 2, 3], -1), ValueError, "rank"),
        (lambda: deep_linear_network([3, 2.5, 3], 0), TypeError, "widths"),
        (lambda: deep_linear_network(5, 0), TypeError, "widths"),
        (lambda: reduced_rank_regression(2, 2, 2, 3), ValueError, "rank"),
        (lambda: normal_crossing([0, 0]), ValueError, "k"),
        (lambda: normal_crossing([1, 2], h=[0]), ValueError, "h"),
        (lambda: regular(-1), ValueError, "d"),
    ],
)
def test_bad_arguments(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
