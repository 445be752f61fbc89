"""LLC during training: the tracker, checkpoints, schedules, warm start and non-perturbation."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import llc
from llc.tracking import DRAW_FRACTION, MIN_TRACK_DRAWS
from theory.models import normal_form_teacher, teacher_student_data

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"num_chains": 2, "num_burnin": 60, "num_draws": 40, "step_size": 1e-4}


def _net(kind: str) -> nn.Module:
    if kind == "dropout":
        return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _train(kind: str, tracker=None, steps: int = 12, device: str = "cpu"):
    """A seeded training run (minibatches and dropout from the global RNGs)."""
    torch.manual_seed(0)
    model = _net(kind).to(device)
    x, y = torch.randn(64, 3, device=device), torch.randn(64, 2, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for t in range(steps):
        idx = torch.randint(0, 64, (16,), device=device)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if tracker is not None:
            tracker.step(model, t, train_loss=loss)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return model, opt, torch.get_rng_state(), cuda


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("kind", ["dropout", "batchnorm"])
def test_tracking_does_not_perturb_training(kind, device):
    # on CUDA the dropout masks, minibatch indices and the chains all draw on the device
    torch.manual_seed(123)
    data = (torch.randn(64, 3, device=device), torch.randn(64, 2, device=device))
    plain = _train(kind, device=device)
    tracker = llc.LLCTracker(data, every=4, progress=False, seed=5, **FAST)
    tracked = _train(kind, tracker, device=device)
    assert len(tracker.records) == 3  # steps 0, 4, 8
    assert tracked[0].training  # the mode is restored
    for (na, a), (nb, b) in zip(
        plain[0].state_dict().items(), tracked[0].state_dict().items(), strict=True
    ):
        assert na == nb and torch.equal(a, b), na  # weights and BatchNorm buffers bitwise
    sa, sb = plain[1].state_dict()["state"], tracked[1].state_dict()["state"]
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name]))
    assert torch.equal(plain[2], tracked[2])  # global CPU RNG state
    assert len(plain[3]) == len(tracked[3])  # global CUDA RNG states (none without a GPU)
    assert all(torch.equal(a, b) for a, b in zip(plain[3], tracked[3], strict=True))


def test_schedules():
    steps = llc.LogSchedule(1000, num=10).steps
    assert steps[0] == 1 and steps[-1] == 1000 and list(steps) == sorted(set(steps))
    assert llc.LogSchedule(100, num=5, first=0).steps[0] == 0
    data = (torch.randn(32, 3), torch.randn(32, 2))
    t = llc.LLCTracker(data, every=[0, 3, 7], progress=False)
    assert [s for s in range(10) if t.due(s)] == [0, 3, 7]
    t = llc.LLCTracker(data, every=5, progress=False)
    assert [s for s in range(12) if t.due(s)] == [0, 5, 10]
    t = llc.LLCTracker(data, every=llc.LogSchedule(50, num=6), progress=False)
    assert [s for s in range(51) if t.due(s)] == list(llc.LogSchedule(50, num=6).steps)


@pytest.mark.parametrize(
    ("every", "error", "match"),
    [
        (0, ValueError, "every must be >= 1"),
        (-3, ValueError, "every must be >= 1"),
        ([5, 3], ValueError, "strictly increasing"),
        ([1, 1], ValueError, "strictly increasing"),
        ([], ValueError, "non-empty"),
        ("10", TypeError, "every must be"),
        (True, TypeError, "every must be"),
        (2.5, TypeError, "every must be"),
    ],
)
def test_bad_schedule(every, error, match):
    with pytest.raises(error, match=match):
        llc.LLCTracker((torch.randn(8, 3), torch.randn(8, 2)), every=every)


def test_bad_log_schedule_and_kwargs():
    with pytest.raises(ValueError, match="last"):
        llc.LogSchedule(1, num=5)
    with pytest.raises(ValueError, match="num"):
        llc.LogSchedule(100, num=1)
    with pytest.raises(TypeError):
        llc.LLCTracker((torch.randn(8, 3), torch.randn(8, 2)), every=1, not_an_argument=3)
    with pytest.raises(ValueError, match="num_chains"):
        llc.LLCTracker((torch.randn(8, 3), torch.randn(8, 2)), every=1, num_chains=0)


def test_step_order_and_shape_change():
    data = (torch.randn(32, 3), torch.randn(32, 2))
    tracker = llc.LLCTracker(data, every=1, progress=False, **FAST)
    model = nn.Linear(3, 2)
    tracker.step(model, 0)
    with pytest.raises(ValueError, match="step must increase"):
        tracker.step(model, 0)
    with pytest.raises(ValueError, match="step must be an integer"):
        tracker.step(model, -1)
    wider = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="parameter shapes changed at step 1"):
        tracker.step(wider, 1)


def test_track_checkpoints_from_files_and_state_dicts(tmp_path):
    torch.manual_seed(0)
    data = (torch.randn(32, 3), torch.randn(32, 2))
    states = {}
    model = nn.Linear(3, 2)
    for step in (0, 10, 20):
        with torch.no_grad():
            model.weight.add_(0.1)
        path = tmp_path / f"ckpt_{step}.pt"
        torch.save(model.state_dict(), path)
        states[step] = path if step else {k: v.clone() for k, v in model.state_dict().items()}
    traj = llc.track_checkpoints(
        states, lambda: nn.Linear(3, 2), data, train_losses=[1.0, 0.5, 0.25], progress=False,
        **FAST,
    )  # fmt: skip
    assert list(traj.steps) == [0, 10, 20]
    assert [r.train_loss for r in traj.records] == [1.0, 0.5, 0.25]
    assert [r.settings["warm_start"] for r in traj.records] == [False, True, True]
    df = traj.to_pandas()
    assert list(df["step"]) == [0, 10, 20] and np.isfinite(df["llc"]).all()
    assert "nbeta" in df and df["nbeta"].nunique() == 1 and df["localization"].nunique() == 1
    fig = traj.plot(exact={"λ": 3.0})
    assert fig.axes and len(fig.axes) == 2  # λ̂ and the training loss
    assert "step" in traj.summary()


def test_track_checkpoints_bad_input(tmp_path):
    data = (torch.randn(16, 3), torch.randn(16, 2))
    other = nn.Sequential(nn.Linear(3, 2))  # keys "0.weight", "0.bias"
    with pytest.raises(ValueError, match=r"missing keys \['bias', 'weight'\]"):
        llc.track_checkpoints([other.state_dict()], lambda: nn.Linear(3, 2), data, progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        llc.track_checkpoints(
            [nn.Linear(4, 2).state_dict()], lambda: nn.Linear(3, 2), data, progress=False
        )
    with pytest.raises(ValueError, match="checkpoints is empty"):
        llc.track_checkpoints([], lambda: nn.Linear(3, 2), data)
    with pytest.raises(TypeError, match="state dict"):
        llc.track_checkpoints([3], lambda: nn.Linear(3, 2), data, progress=False)
    with pytest.raises(ValueError, match="train_losses has 1 values for 2"):
        llc.track_checkpoints(
            [nn.Linear(3, 2).state_dict()] * 2, lambda: nn.Linear(3, 2), data, train_losses=[1.0]
        )
    with pytest.raises(TypeError, match="model_factory"):
        llc.track_checkpoints([nn.Linear(3, 2).state_dict()], "not callable", data)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_warm_start_agrees_with_cold(seed):
    """At the same w*, estimates that carry the chains on agree with the cold first one within
    their combined Monte Carlo error, each with fresh noise: replaying one noise sequence adds
    the same net displacement along the flat directions at every estimate, and λ̂ climbs."""
    teacher = normal_form_teacher([4, 3, 4], 1, seed=torch.Generator().manual_seed(seed))
    x, y = teacher_student_data(teacher, 2000, 4, seed=torch.Generator().manual_seed(seed + 10))
    tracker = llc.LLCTracker((x, y), every=1, progress=False, seed=seed, warm_start=True)
    records = [tracker.step(teacher, t) for t in range(6)]
    first, later = records[0], records[1:]
    assert not first.settings["warm_start"] and all(r.settings["warm_start"] for r in later)
    assert all(r.settings["carried"] for r in later)  # the same potential: nothing changed
    assert len({r.result.config["seed"] for r in records}) == len(records)
    # carried chains start where the last ones ended, spread out, not at w* (energy 0)
    start_energy = [r.result.warmup_llc[:, :20].mean() for r in records]
    assert start_energy[0] < 0.5 * first.llc
    assert all(e > 0.5 * first.llc for e in start_energy[1:]), start_energy
    for r in later:
        assert r.result.num_draws <= max(MIN_TRACK_DRAWS, 25000 // DRAW_FRACTION)  # its cap
        assert r.result.num_burnin < first.result.num_burnin  # no warm-up from w* again
        z = (r.llc - first.llc) / math.hypot(first.mcse, r.mcse)
        assert abs(z) < 4, [(q.llc, q.mcse) for q in records]


def test_carried_tracking_is_reproducible_and_differs_from_cold():
    """The same seed gives the same carried run; carrying changes the chains' starts."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(200, 3, generator=g), torch.randn(200, 2, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))

    def run(warm_start):
        t = llc.LLCTracker((x, y), every=1, progress=False, warm_start=warm_start, **FAST)
        return [t.step(model, s) for s in range(3)]

    a, b, cold = run(True), run(True), run(False)
    assert [r.llc for r in a] == [r.llc for r in b]
    assert [r.settings["carried"] for r in a] == [False, True, True]
    assert not any(r.settings["carried"] for r in cold)
    assert len({r.result.config["seed"] for r in cold}) == 1  # cold: common random numbers
    gen = torch.Generator()
    assert llc.tracking._estimate_seed(gen, 3) is gen  # a generator advances by itself
    assert a[0].llc == cold[0].llc and a[1].llc != cold[1].llc


def _gaussian_llc_n(x, y, w_star, nbeta, gamma):
    """Exact ``λ_n = nβ (E[L_n(w)] − L_n(w*))`` of linear regression (MSE ½(y − xᵀw)²): the
    localized tempered posterior is Gaussian with precision ``P = nβH + γI`` and mean
    ``P⁻¹(nβHŵ + γw*)``, ``H = XᵀX/n``, ŵ the least-squares solution."""
    n, d = x.shape
    h = x.T @ x / n
    w_hat = torch.linalg.solve(x.T @ x, x.T @ y[:, 0])
    p = nbeta * h + gamma * torch.eye(d, dtype=x.dtype)
    m = torch.linalg.solve(p, nbeta * h @ w_hat + gamma * w_star)
    mean_excess = 0.5 * (torch.trace(h @ torch.linalg.inv(p)) + (m - w_hat) @ h @ (m - w_hat))
    return float(nbeta * (mean_excess - 0.5 * (w_star - w_hat) @ h @ (w_star - w_hat)))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_carried_chains_follow_a_moving_gaussian_posterior(seed):
    """Linear regression whose last two inputs are weak (nβ h ≈ γ there): the posterior mean
    moves with w* along them, and the exact λ_n goes from +2.7 to −2.8 over six checkpoints.
    Every tracked estimate carries its chains on and agrees with λ_n within 4 MCSE."""
    g = torch.Generator().manual_seed(seed)
    n, d = 2000, 6
    scale = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.05, 0.05], dtype=torch.float64)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    beta = torch.randn(d, generator=g, dtype=torch.float64)
    y = (x @ beta + 0.5 * torch.randn(n, generator=g, dtype=torch.float64))[:, None]
    w_hat = torch.linalg.solve(x.T @ x, x.T @ y[:, 0])
    move = torch.tensor([0, 0, 0, 0, 0.6, -0.6], dtype=torch.float64)
    checkpoints = {k: {"weight": (w_hat + k * move)[None].float()} for k in range(6)}
    traj = llc.track_checkpoints(
        checkpoints, lambda: nn.Linear(d, 1, bias=False), (x.float(), y.float()),
        progress=False, seed=seed,
    )  # fmt: skip
    nbeta = n / math.log(n)
    for k, r in enumerate(traj.records):
        exact = _gaussian_llc_n(x, y, checkpoints[k]["weight"][0].double(), nbeta, 0.3)
        assert r.settings["carried"] == (k > 0)
        assert abs(r.llc - exact) < 4 * r.mcse, (k, r.llc, r.mcse, exact)
