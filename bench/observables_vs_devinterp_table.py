"""llc.bif and llc.susceptibilities against devinterp 2.0.1's bif() and susceptibilities().

Beside ``bench/observables_vs_devinterp.py`` (same question, smaller model, devinterp's error
taken equal to ours), this one calls devinterp's public ``bif()`` and ``susceptibilities()`` as
shipped, measures devinterp's own Monte Carlo error from its stored draws, prints one table, and
splits devinterp's susceptibility estimator into the covariance and its extra mean term.

A tiny GPT-2 (``transformers.GPT2LMHeadModel`` from a ``GPT2Config`` built in code by
:func:`llc.zoo.tiny_gpt2`: 2 layers, 4 heads, no dropout) is trained briefly on token sequences
of a random Markov chain generated in code (:func:`llc.zoo.markov_tokens`). Nothing is
downloaded: devinterp takes Hugging Face ``datasets.Dataset`` objects with an ``input_ids``
column, built here with ``Dataset.from_dict`` from the same tensors (no tokenizer is needed,
the data are token ids already).

Matched settings (devinterp's ``sample()`` arguments → ours):

- sampler: devinterp's default ``SGMCMC.sgld`` (``w ← w − (ε/2)(nβ ∇L_B + γ (w − w*)) + √ε ξ``)
  → ``sampler="sgld", scheme="euler", precondition=False, compensate_noise=False``, the same
  update (:mod:`llc.kernels.sgld`), without our learned metric or noise compensation;
- ``lr=ε`` → ``step_size=ε``; ``n_beta`` → ``nbeta``; ``localization=γ`` → ``localization=γ``;
- ``num_chains``, ``num_draws`` (devinterp's ``num_steps_bw_draws=1``: one draw per step) →
  ``num_chains``, ``num_draws`` with ``every=1`` (the probe losses recorded at every step);
  ``num_burnin_steps=0`` (devinterp's default) → ``num_burnin=0`` (no warm-up, no adaptation);
- ``batch_size`` (devinterp's SGLD minibatch) → ``batch_size``; the probe sets are the
  sequences devinterp's observables hold (``batch_size × batches_per_draw`` of them; we read
  them back from its output so that rows and columns line up);
- loss: devinterp's mean next-token cross-entropy → ``loss="next_token"``; its
  ``correlation_method="sequence"`` (each sequence's mean token loss) is our per-sample loss;
  ``compute_covariance=True`` and ``reduce_chain_dimension_method="stack"`` (one covariance
  over all chains' draws) is our pooled covariance. devinterp returns ``+Cov``; the BIF is
  ``−Cov``, so its matrix is negated before the comparison.

Differences that remain: devinterp shows every chain the same minibatches
(``match_sampling_input_ids_across_chains=True``), ours draws them per chain; devinterp's
noise comes from torch's global generator, ours from per-chain generators. Both sample the
same posterior, so the matrices should differ by Monte Carlo error only.

Susceptibilities: devinterp's estimator (its ``compute_susceptibilities``, appendix C.4 of
arXiv:2504.18274) is, per token j of a shift,
``E_C[φ L_R] − E_C[φ ℓ_j] − E_C[φ]·(E_full[L_R] − E_full[ℓ_j])`` with ``φ = L_R − L_init``:
the covariance ``Cov_C(φ, L_R − ℓ_j)`` (ours, ``−Cov(φ_C, ΔL)``) plus
``E_C[φ]·(E_C[L_R − ℓ_j] − E_full[L_R − ℓ_j])``, a term from the difference between the
restricted and the full posterior's means (devinterp needs a ``"full"`` run for it). Both are
printed: devinterp as shipped, and the covariance alone computed from devinterp's own stored
draws; a shift's entry is the mean over its tokens in both packages.

Monte Carlo error: ours is ``.mcse`` (spread of the chain groups, here one chain each);
devinterp reports none, so the same batch-means-over-chains error is computed from its stored
draws. "MC floor" is the relative Frobenius difference that Monte Carlo error alone would give,
``√Σ(mcse_ours² + mcse_devinterp²) / ‖devinterp‖``; ``diff / floor`` near 1 means that the
matrices agree within Monte Carlo error.

Run: ``PYTHONPATH=$PWD python bench/observables_vs_devinterp_table.py [--quick]`` (one torch
thread; ``--quick`` about a minute, the full run about six minutes on a loaded machine).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # devinterp's per-chain progress bars

import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
from datasets import Dataset  # noqa: E402
from devinterp.slt.bif import bif as devinterp_bif  # noqa: E402
from devinterp.slt.susceptibilities import susceptibilities as devinterp_susceptibilities  # noqa: E402

import llc  # noqa: E402
from llc.zoo import markov_tokens, tiny_gpt2, train_next_token  # noqa: E402


def hf(tokens: torch.Tensor) -> Dataset:
    """A Hugging Face dataset with an ``input_ids`` column, built in memory."""
    return Dataset.from_dict({"input_ids": tokens.numpy()}).with_format("torch")


def problem(args):
    """The trained tiny GPT-2, its training tokens, and the probe and shift sets."""
    tokens, _ = markov_tokens(args.n + 512, args.seq, args.vocab, seed=0, sharpness=3.0)
    model = tiny_gpt2(args.vocab, args.seq, n_layer=2, n_head=4, n_embd=args.d_model, seed=0)
    train_next_token(model, tokens[: args.n], steps=args.train_steps, batch_size=32)
    g = torch.Generator().manual_seed(1)
    half = args.seq // 2
    first = torch.randint(args.vocab, (args.probe, half), generator=g)
    other, _ = markov_tokens(args.probe, args.seq, args.vocab, seed=7, sharpness=3.0)
    sets = {
        "heldout": tokens[args.n : args.n + args.probe],  # the training language, new sequences
        "other_markov": other,  # another Markov chain on the same tokens
        "repeat": torch.cat([first, first], 1)[:, : args.seq],  # random half, then repeated
    }
    return model.eval(), tokens[: args.n], sets


def settings(args, nbeta: float) -> tuple[dict, dict]:
    """devinterp's keyword arguments and ours, matched (see the module notes)."""
    dev = dict(
        lr=args.eps,
        n_beta=nbeta,
        localization=args.gamma,
        num_chains=args.chains,
        num_draws=args.draws,
        batch_size=args.batch,
        num_burnin_steps=0,
        device="cpu",
    )
    ours = dict(
        loss="next_token",
        step_size=args.eps,
        nbeta=nbeta,
        localization=args.gamma,
        num_chains=args.chains,
        num_draws=args.draws,
        num_burnin=0,
        batch_size=args.batch,
        sampler="sgld",
        scheme="euler",
        precondition=False,
        compensate_noise=False,
        every=1,
        seed=0,
        progress=False,
    )
    return dev, ours


def quiet(fn, *args, **kw):
    """``fn(*args, **kw)`` with its warnings and printed output silenced; ``(value, seconds)``."""
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        out = fn(*args, **kw)
    return out, time.perf_counter() - start


def sequence_losses(ds: xr.Dataset, name: str) -> np.ndarray:
    """devinterp's stored losses of observable ``name``, each sequence's mean: (chain, draw, m)."""
    return np.asarray(ds[f"loss_{name}"].values, dtype=np.float64).mean(-1)


def chain_covariances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ``Cov(a_i, b_j)`` over (chain, draw) and its batch-means-over-chains error."""

    def cov(x, y):
        x, y = x - x.mean(0), y - y.mean(0)
        return x.T @ y / (len(x) - 1)

    pooled = cov(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))
    per_chain = np.stack([cov(x, y) for x, y in zip(a, b)])
    return pooled, per_chain.std(0, ddof=1) / math.sqrt(len(per_chain))


def rows_of(ids: np.ndarray, wanted: torch.Tensor) -> np.ndarray:
    """The row of ``ids`` holding each sequence of ``wanted`` (sequences are distinct)."""
    index = {tuple(r): i for i, r in enumerate(ids.tolist())}
    return np.array([index[tuple(r)] for r in wanted.tolist()])


def compare(ours, ours_mcse, dev, dev_mcse) -> dict:
    """Correlation of entries, relative Frobenius difference, and the Monte Carlo floor."""
    a, b = np.ravel(ours), np.ravel(dev)
    floor = math.sqrt(np.sum(np.square(ours_mcse) + np.square(dev_mcse))) / np.linalg.norm(b)
    z = (a - b) / np.sqrt(np.ravel(ours_mcse) ** 2 + np.ravel(dev_mcse) ** 2)
    return dict(
        corr=float(np.corrcoef(a, b)[0, 1]),
        rel=float(np.linalg.norm(a - b) / np.linalg.norm(b)),
        floor=float(floor),
        z3=float(np.mean(np.abs(z) > 3)),
    )


def run_bif(model, data, sets, args, tmp: Path) -> list:
    """devinterp's bif() and ours on the same train and query sequences."""
    nbeta = len(data) / math.log(len(data))
    dev_kw, our_kw = settings(args, nbeta)
    k = args.probe // args.batch
    train, query = data[: 2 * args.probe], sets["heldout"]  # training sequences, new ones
    obs = {"train": (hf(train), 2 * k), "query": (hf(query), k)}
    out, t_dev = quiet(
        devinterp_bif,
        model,
        hf(data),
        obs,
        correlation_method="sequence",
        compute_covariance=True,
        bif_device="cpu",
        output_path=tmp / "bif.zarr",
        **dev_kw,
    )
    samples = xr.open_datatree(str(tmp / "bif.zarr"), engine="zarr", consolidated=False).dataset
    tr_ids = samples["input_ids_train"].values  # devinterp's order (a seeded shuffle)
    q_ids = samples["input_ids_query"].values
    ids = out["input_ids"].values
    dev = -out["influences"].values[
        np.ix_(rows_of(ids, torch.as_tensor(tr_ids)), rows_of(ids, torch.as_tensor(q_ids)))
    ]
    _, dev_mcse = chain_covariances(
        sequence_losses(samples, "train"), sequence_losses(samples, "query")
    )
    ours, t_ours = quiet(
        llc.bif, model, data, torch.as_tensor(q_ids), train=torch.as_tensor(tr_ids), **our_kw
    )
    row = compare(ours.matrix, ours.mcse, dev, dev_mcse)
    shape = f"{len(tr_ids)}×{len(q_ids)}"
    return [
        dict(what=f"BIF −Cov(ℓ_i, ℓ_q) {shape}", t_dev=t_dev, t_ours=t_ours, runs="1 / 1", **row)
    ]


def _dev_components(model, masks: dict) -> dict:
    """Our ``{name: True or bool mask}`` as devinterp's ``{name: mask or None}``."""
    return {n: None if m is True else m.clone() for n, m in masks.items()}


def devinterp_covariance_form(tmp: Path, names: list, shifts: list):
    """From devinterp's stored draws: its estimator per (component, shift) and the covariance
    ``Cov_C(φ, L_R − L_s)`` alone, each with its batch-means-over-chains error."""

    def load(name):
        path = tmp / f"sus_{name}.zarr"
        return xr.open_datatree(str(path), engine="zarr", consolidated=False).dataset

    full = load("full")
    ref_full = sequence_losses(full, "ref").mean(-1)  # (chain, draw)
    init = float(full["init_loss"].values.mean())
    shipped, cov, shipped_err, cov_err = [], [], [], []
    for name in names:
        ds = load(name)
        ref = sequence_losses(ds, "ref").mean(-1)
        phi = ref - init
        rows = [[], [], [], []]
        for s in shifts:
            l_s = sequence_losses(ds, s).mean(-1)
            gap_full = ref_full.mean() - sequence_losses(full, s).mean()

            def est(p, r, ls, gap=gap_full):
                return (p * r).mean() - (p * ls).mean() - p.mean() * gap

            def covariance(p, r, ls):
                d = r - ls
                return ((p - p.mean()) * (d - d.mean())).sum() / (p.size - 1)

            for k, fn in enumerate((est, covariance)):
                per_chain = [fn(p, r, ls) for p, r, ls in zip(phi, ref, l_s)]
                rows[k].append(fn(phi, ref, l_s))
                rows[k + 2].append(np.std(per_chain, ddof=1) / math.sqrt(len(per_chain)))
        for out, r in zip((shipped, cov, shipped_err, cov_err), rows):
            out.append(r)
    mean_phi = [float((load(n)["loss_ref"].values.mean(-1).mean(-1) - init).mean()) for n in names]
    return [np.array(x) for x in (shipped, shipped_err, cov, cov_err, mean_phi)] + [init]


def run_susceptibilities(model, data, sets, args, tmp: Path) -> tuple[list, list]:
    """devinterp's susceptibilities() and ours for the same components and data shifts."""
    nbeta = len(data) / math.log(len(data))
    dev_kw, our_kw = settings(args, nbeta)
    k = args.probe // args.batch
    names = ["l0 attn", "l1 attn", "l0 mlp", "l1 mlp"][: args.components]
    masks = {n: llc.param_masks(model, n) for n in names}
    wr = {n.replace(" ", "_"): _dev_components(model, m) for n, m in masks.items()}
    wr = {"full": None, **wr}
    reference = data[: args.probe]
    obs = {"ref": (hf(reference), k), **{s: (hf(t), k) for s, t in sets.items()}}
    out, t_dev = quiet(
        devinterp_susceptibilities,
        model,
        hf(data),
        obs,
        wr,
        sampling_task="ref",
        output_path=tmp / "sus.zarr",
        **dev_kw,
    )
    shifts = sorted(sets)
    sus = out["susceptibilities"].dataset
    order = list(sus.attrs["dataset_id_to_name"])
    table = np.array(
        [
            [
                float(
                    sus["sus"].sel(wr=w).values[sus["dataset_id"].values == order.index(s)].mean()
                )
                for s in shifts
            ]
            for w in list(wr)[1:]
        ]
    )
    shipped, shipped_err, cov, cov_err, mean_phi, init = devinterp_covariance_form(
        tmp, list(wr)[1:], shifts
    )
    if not np.allclose(shipped, table, rtol=1e-3, atol=1e-6):  # our reading of its estimator
        raise RuntimeError(f"devinterp's output {table} differs from its formula {shipped}")
    ours, t_ours = quiet(
        llc.susceptibilities,
        model,
        data,
        components=masks,
        shifts={s: sets[s] for s in shifts},
        reference=reference,
        **our_kw,
    )
    with torch.no_grad():
        at_star = float(llc.language.next_token(model(reference).logits, reference).mean())
    notes = [
        f"devinterp's φ = L_R − L_init: E_C[φ] = {np.round(mean_phi, 4).tolist()} for "
        f"{names}, of which L_R(w*) − L_init = {at_star - init:.4f} (L_init: its training-"
        "batch loss at w*); the shipped estimate minus the covariance is "
        f"{np.round(shipped - cov, 5).tolist()}, the covariance {np.round(cov, 5).tolist()}",
    ]
    runs = f"{len(names) + 1} / {len(names)}"
    what = f"χ {len(names)} comp × {len(shifts)} shifts"
    return [
        dict(
            what=f"{what} (devinterp as shipped)",
            t_dev=t_dev,
            t_ours=t_ours,
            runs=runs,
            **compare(ours.matrix, ours.mcse, shipped, shipped_err),
        ),
        dict(
            what=f"{what} (its draws, Cov only)",
            t_dev=math.nan,
            t_ours=math.nan,
            runs="",
            **compare(ours.matrix, ours.mcse, cov, cov_err),
        ),
    ], notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--chains", type=int, default=4, help="devinterp's default: 4")
    parser.add_argument("--draws", type=int, default=200, help="devinterp's default: 200")
    parser.add_argument("--batch", type=int, default=32, help="devinterp's default: 32")
    parser.add_argument("--eps", type=float, default=3e-4, help="SGLD step (devinterp's lr)")
    parser.add_argument("--gamma", type=float, default=100.0, help="localization γ")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--seq", type=int, default=32, help="context length")
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--n", type=int, default=1024, help="training sequences")
    parser.add_argument("--probe", type=int, default=32, help="sequences per probe set/shift")
    parser.add_argument("--components", type=int, default=2, help="at most 4")
    parser.add_argument("--train-steps", type=int, default=300)
    args = parser.parse_args()
    if args.probe % args.batch:
        parser.error("--probe must be a multiple of --batch (devinterp's probe sets are batches)")
    if args.quick:
        args.draws, args.train_steps = 60, 150
        args.d_model, args.seq = 32, 16
    torch.set_num_threads(1)
    model, data, sets = problem(args)
    print(
        f"tiny GPT-2: 2 layers, 4 heads, d {args.d_model}, vocab {args.vocab}, context "
        f"{args.seq}, {sum(p.numel() for p in model.parameters())} parameters; "
        f"n {args.n}; SGLD ε {args.eps:g}, γ {args.gamma:g}, nβ = n/log n, "
        f"{args.chains} chains × {args.draws} draws, batch {args.batch}, 1 torch thread\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_bif(model, data, sets, args, Path(tmp))
        more, notes = run_susceptibilities(model, data, sets, args, Path(tmp))
        rows += more
    head = (
        f"{'quantity':<42}{'corr':>7}{'rel. diff':>10}{'MC floor':>9}{'diff/floor':>11}"
        f"{'|z|>3':>7}{'runs dev/ours':>14}{'devinterp s':>12}{'ours s':>8}{'speed-up':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        speed = r["t_dev"] / r["t_ours"]
        times = "" if math.isnan(speed) else f"{r['t_dev']:>12.1f}{r['t_ours']:>8.1f}{speed:>8.1f}×"
        print(
            f"{r['what']:<42}{r['corr']:>7.3f}{r['rel']:>10.3f}{r['floor']:>9.3f}"
            f"{r['rel'] / r['floor']:>11.2f}{r['z3']:>7.2f}{r['runs']:>14}{times}"
        )
    print(
        "\ncorr: correlation of the matrix entries; rel. diff: ‖ours − devinterp‖_F / "
        "‖devinterp‖_F; MC floor: the same expected from Monte Carlo error alone; |z|>3: "
        "fraction of entries with |ours − devinterp| > 3·√(mcse² + mcse_dev²)."
    )
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
