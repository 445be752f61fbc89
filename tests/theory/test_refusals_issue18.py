"""Issue 18 on `theory`: the model is never changed, and bad arguments are refused by name."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from tests.fuzz._contract import model_snapshot, no_hang, same_model
from theory.free_energy import free_energy, localized_llc
from theory.gibbs import dln_gibbs_llc
from theory.interaction import interaction_basis
from theory.models import normal_form_teacher, random_mlp
from theory.natural_latents import (
    common_part,
    gaussian_natural_latent_errors,
    mediation_error,
    natural_latent_errors,
)
from theory.polytopes import activation_codes, enumerate_regions


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))


def test_interaction_basis_refuses_train_mode_batchnorm_without_touching_it(one_thread):
    net = _bn_net().train()
    before = model_snapshot(net)
    with pytest.raises(ValueError, match=r"layers\[1\].*BatchNorm1d.*training mode.*eval"):
        interaction_basis(net, torch.randn(64, 5), progress=False)
    assert same_model(before, model_snapshot(net))  # num_batches_tracked was 0 -> 4
    assert int(net[1].num_batches_tracked) == 0


def test_interaction_basis_eval_batchnorm_leaves_buffers(one_thread):
    """float64 buffers were passed to functional_call uncopied (``.to`` returns self)."""
    net = _bn_net().double().eval()
    with torch.no_grad():
        net(torch.randn(64, 5, dtype=torch.float64))
    before = model_snapshot(net)
    lib = interaction_basis(net, torch.randn(64, 5), progress=False)
    assert lib.layers[0].n_kept >= 1
    assert same_model(before, model_snapshot(net))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_interaction_basis_half_dtype_named(one_thread, dtype):
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        interaction_basis(random_mlp([3, 4, 1], 0), torch.randn(20, 3), dtype=dtype)


def _joint():
    return np.full((2, 2, 2), 1 / 8)


@pytest.mark.parametrize("atol", [float("nan"), float("inf"), -1.0, -1e-12, "1e-8", None, True])
def test_atol_refused_by_name(atol):
    for call in (
        lambda: mediation_error(_joint(), [0, 1], 2, atol=atol),
        lambda: natural_latent_errors(_joint(), [0, 1], 2, atol=atol),
        lambda: common_part(_joint(), 0, 1, atol=atol),
        lambda: gaussian_natural_latent_errors(np.eye(3), [0, 1], 2, atol=atol),
    ):
        with pytest.raises((TypeError, ValueError), match="atol must be"):
            call()


@pytest.mark.parametrize("value", [float("nan"), -1.0])
def test_other_tolerances_refused_by_name(value):
    with pytest.raises(ValueError, match="tol must be"):
        common_part(_joint(), 0, 1, tol=value)
    with pytest.raises(ValueError, match="rtol must be"):
        gaussian_natural_latent_errors(np.eye(3), [0, 1], 2, rtol=value)


def test_table_summing_to_three_refused_whatever_atol():
    """atol=nan or inf turned the check off: a table summing to 3 came out with 3x errors."""
    with pytest.raises(ValueError, match="atol"):
        mediation_error(3 * _joint(), [0, 1], 2, atol=float("inf"))
    with pytest.raises(ValueError, match="sums to 3"):
        mediation_error(3 * _joint(), [0, 1], 2)


@pytest.mark.parametrize("box", [[(1.0, -1.0)], [(0.0, 0.0)], [(-1.0, 1.0), (-1.0, 1.0)]])
def test_free_energy_inverted_box_named(box):
    with pytest.raises(ValueError, match="box must be"):
        free_energy(lambda w: (w**2).sum(1), [10.0, 20.0], center=[0.0], box=box)
    with pytest.raises(ValueError, match="box must be"):
        localized_llc(lambda w: (w**2).sum(1), 10.0, center=[0.0], box=box, localization=0)


@pytest.mark.parametrize("seed,exc", [(-1, ValueError), (1.5, TypeError), ("0", TypeError)])
def test_gibbs_seed_named(seed, exc):
    t = normal_form_teacher([2, 2, 2], 1, seed=0, dtype=torch.float64)
    x = torch.randn(20, 2, dtype=torch.float64)
    with pytest.raises(exc, match="seed must be a non-negative int"):
        dln_gibbs_llc(t, (x, t(x).detach()), seed=seed, num_sweeps=8)


def test_gibbs_numpy_seed_accepted():
    t = normal_form_teacher([2, 2, 2], 1, seed=0, dtype=torch.float64)
    x = torch.randn(20, 2, dtype=torch.float64)
    data = (x, t(x).detach())
    a = dln_gibbs_llc(t, data, seed=np.int64(3), num_sweeps=8)
    b = dln_gibbs_llc(t, data, seed=3, num_sweeps=8)
    assert a.mean == b.mean


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_polytopes_refuse_non_finite_weights(value):
    model = random_mlp([2, 4, 1], 0)
    with torch.no_grad():
        model[0].weight[0, 0] = value
    with pytest.raises(ValueError, match=r"model.*weight.*not finite"):
        enumerate_regions(model, [-1, -1], [1, 1], progress=False)
    with pytest.raises(ValueError, match=r"model.*weight.*not finite"):
        activation_codes(model, torch.randn(3, 2))  # silently all-False codes before


def test_enumerate_regions_refuses_huge_count_up_front():
    """16 ReLUs in general position on a 100-D box: 2^16 regions, ~10 minutes of LPs."""
    model = random_mlp([100, 16, 1], 0)
    t0 = time.perf_counter()
    with no_hang(10), pytest.raises(ValueError, match=r"max_regions.*65536"):
        enumerate_regions(model, -np.ones(100), np.ones(100), progress=False)
    assert time.perf_counter() - t0 < 5
    enum = enumerate_regions(model, -np.ones(100), np.ones(100), max_regions=3, progress=False)
    assert len(enum) == 3 and enum.truncated


def test_enumerate_regions_estimate_counts_only_cutting_units():
    """Hyperplanes that miss the box add no regions: a far-away layer is not refused."""
    model = random_mlp([100, 16, 1], 0)
    with torch.no_grad():
        model[0].bias.fill_(1e6)  # every unit active on the box: one region
    enum = enumerate_regions(model, -np.ones(100), np.ones(100), progress=False)
    assert len(enum) == 1 and not enum.truncated


@pytest.mark.parametrize(
    "args,name", [((0, 2, 2, 0), "M"), ((2, True, 2, 0), "H"), ((2, 2, -1, 0), "N")]
)
def test_reduced_rank_regression_names_its_arguments(args, name):
    """Found by the fuzz suite: the error named widths[0], an argument it does not have."""
    from theory.exact import reduced_rank_regression

    with pytest.raises((TypeError, ValueError), match=rf"^{name} must be"):
        reduced_rank_regression(*args)


@pytest.mark.parametrize("d,order,n", [(2, 10**6, 20.0), (3, None, 1e300)])
def test_free_energy_refuses_a_rule_too_large_to_evaluate(d, order, n):
    """Found by the fuzz suite: order=10**6 in 2-D ran for hours (10^14 points)."""
    t0 = time.perf_counter()
    with no_hang(10), pytest.raises(ValueError, match="lower order or the largest n"):
        free_energy(lambda w: (w**2).sum(1), [10.0, n], center=[0.0] * d, order=order)
    assert time.perf_counter() - t0 < 5


def test_free_energy_refuses_a_rule_that_misses_the_mass():
    """Found by the fuzz suite: a prior of variance 1e300 gave F = inf, silently."""
    with pytest.raises(ValueError, match="quadrature found no mass.*box"):
        free_energy(lambda w: (w**4).sum(1), [10.0, 100.0], center=[0.0], localization=1e-300)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_samples_seed_named(seed):
    """Found by the fuzz suite: numpy's 'expected non-negative integer' before."""
    from theory.natural_latents import natural_latent_errors_from_samples

    lat = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        natural_latent_errors_from_samples([lat, lat], lat, n_bootstrap=2, seed=seed)


def test_region_counts_exact_and_bounded_in_time():
    """Huge widths are refused at once instead of summing 10^6 binomials of 10^6 bits."""
    from math import comb

    from theory.polytopes import arrangement_regions, region_bounds

    for n in range(25):
        for d in range(25):
            assert arrangement_regions(n, d) == sum(comb(n, i) for i in range(min(n, d) + 1))
    assert region_bounds([2, 3, 3]).serra == 40  # Serra et al.'s sum, by hand below
    # j1 ≤ 2: C(3,0..2) = 1, 3, 3 with d = 2, 2, 1; layer 2 gives 7, 7, 4 regions: 7 + 21 + 12
    assert region_bounds([10**6, 0, 0, 10**6]).product == 1 << 10**6
    with pytest.raises(ValueError, match="widths"):
        region_bounds([10**6, 10**6])
    with pytest.raises(ValueError, match="n = "):
        arrangement_regions(10**6, 5 * 10**5)
