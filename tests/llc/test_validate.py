"""The validation suite's plumbing: rows, the exact finite-n targets, the table and the figure."""

import math

import matplotlib

from llc.validate import SuiteModel, format_table, plot_suite, run_suite

matplotlib.use("Agg")


def test_rows_carry_exact_finite_n_targets_and_render():
    models = [SuiteModel("RRR 4-3-4 r1", (4, 3, 4), 1), SuiteModel("nc", k=(1, 2))]
    rows = run_suite(models, n=500, num_burnin=100, num_draws=200, num_chains=2)
    dln, nc = rows
    assert dln.d == 24 and float(dln.exact.value) == 6.0
    # Gibbs and quadrature targets: finite, positive and within the regular bound d/2
    for row in rows:
        assert math.isfinite(row.finite_n) and 0 < row.finite_n <= row.d / 2
    assert abs(nc.finite_n - 0.25) < 0.1  # near λ = 1/4 already at n = 500
    assert dln.rel_error_finite_n == (dln.result.mean - dln.finite_n) / dln.finite_n
    table = format_table(rows)
    assert "λ_n" in table and "against the exact finite-n target" in table
    fig = plot_suite(rows)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "exact finite-n λ_n" in labels


def test_finite_n_can_be_skipped():
    rows = run_suite(
        [SuiteModel("RRR 4-3-4 r1", (4, 3, 4), 1)],
        n=300,
        num_burnin=20,
        num_draws=20,
        num_chains=2,
        finite_n=False,
        device="cpu",  # what `validate --device` passes on
    )
    assert math.isnan(rows[0].finite_n) and rows[0].result.config["device"] == "cpu"
    assert "against the exact finite-n target" not in format_table(rows)


def test_targets_name_each_check_and_fail_on_any_row():
    from dataclasses import replace

    from llc.validate import SUITE_LARGE, check_targets

    rows = run_suite(
        [SuiteModel("RRR 4-3-4 r1", (4, 3, 4), 1)], n=500, num_burnin=100, num_draws=200,
        num_chains=2,
    )  # fmt: skip
    row = rows[0]
    good = replace(row, finite_n=row.result.mean / 1.01, seconds=1.0)
    ok, said = check_targets([good], "large")
    assert ok and "within 5% of λ_n: met" in said
    for bad in (replace(good, finite_n=row.result.mean / 1.06), replace(good, seconds=301.0)):
        ok, said = check_targets([good, bad], "large")
        assert not ok and "NOT met" in said
    # the suite's targets add λ itself and the mean against λ_n
    _, said = check_targets([good], "suite")
    assert "within 7% of λ" in said and "mean against λ_n ≤ 2%" in said
    # the large suite: 10⁴ to 3·10⁴ parameters, 4 to 6 layers, rank ≤ a third of the narrowest
    for spec in SUITE_LARGE:
        d = sum(a * b for a, b in zip(spec.widths, spec.widths[1:]))
        assert 1e4 <= d <= 3e4 and 4 <= len(spec.widths) - 1 <= 6
        assert 1 <= spec.rank <= min(spec.widths) / 3
