"""llc.bif and llc.susceptibilities against devinterp 2.0.1's bif() and susceptibilities().

A tiny GPT-2 built from a config (``llc.zoo.tiny_gpt2``, no downloads), trained briefly on
Markov-chain tokens generated in code; both packages sample the same posterior with the same
settings: plain SGLD (Euler scheme, no metric, no noise compensation), the same step, nβ,
localization γ, batch, burn-in, draws and chains, a record at every step. devinterp runs its
chains one after another and writes the losses to a zarr store; ours runs all chains in one
batched computation and streams the covariances.

Printed: for each matrix, the correlation of the entries, the relative Frobenius difference
``‖ours − theirs‖ / ‖theirs‖``, and ``z = (ours − theirs) / (√2·mcse)`` (devinterp's own error
taken equal to ours: the same sampler and draws); the wall times and their ratio.

devinterp's susceptibility estimator (its appendix C.4 form) centres the product ``φ·ΔL`` by the
unrestricted run's mean losses (and φ by L_n(w*) on other batches); ours is the covariance under
each component's own restricted posterior, so the two differ by ``E_C[φ]·(E_C[ΔL] −
E_full[ΔL])`` on top of Monte Carlo error. The bench also computes that covariance from
devinterp's own draws.

Run: ``python bench/observables_vs_devinterp.py [--chains 8] [--draws 2000] [--step 3e-3]
[--only bif|susceptibilities] [--quick]`` (needs the ``devinterp`` and ``lm`` extras).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import torch

import llc
from llc.zoo import markov_tokens, tiny_gpt2, train_next_token


def _dataset(tokens):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": tokens.tolist()}).with_format("torch")


def _compare(name, ours, theirs, mcse):
    ours, theirs, mcse = (np.asarray(a, dtype=np.float64).ravel() for a in (ours, theirs, mcse))
    corr = np.corrcoef(ours, theirs)[0, 1]
    rel = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
    z = (ours - theirs) / (np.sqrt(2) * mcse)
    print(
        f"{name}: {ours.size} entries, correlation {corr:.3f}, relative Frobenius difference "
        f"{rel:.3f}, z: mean z² {np.mean(z**2):.2f}, |z| > 3 in {np.mean(abs(z) > 3):.1%}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--burnin", type=int, default=500)
    ap.add_argument("--step", type=float, default=3e-3, help="SGLD step (devinterp's lr)")
    ap.add_argument("--only", choices=("bif", "susceptibilities"), help="run one comparison")
    ap.add_argument("--quick", action="store_true", help="fewer draws: checks that it runs")
    args = ap.parse_args()
    if args.quick:
        args.draws, args.burnin = 60, 20
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")

    tokens, _ = markov_tokens(96, 8, 16, seed=0)  # (96, 8), vocabulary 16
    gpt = tiny_gpt2(16, 8, n_layer=2, n_head=2, n_embd=16)
    train_next_token(gpt, tokens, steps=300)
    gpt.eval()
    batch, lr, gamma = 16, args.step, 10.0  # devinterp evaluates observables in sampling batches
    train, query, reference = tokens[:16], tokens[64:80], tokens[:32]
    shifted, _ = markov_tokens(16, 8, 16, seed=5)  # another Markov chain: the data shift
    nbeta = float(tokens.shape[0] / np.log(tokens.shape[0]))
    ours_kw = dict(
        loss="next_token", sampler="sgld", scheme="euler", precondition=False,
        compensate_noise=False, step_size=lr, nbeta=nbeta, localization=gamma,
        batch_size=batch, num_chains=args.chains, num_burnin=args.burnin, num_draws=args.draws,
        every=1, progress=False, seed=0,
    )  # fmt: skip
    di_kw = dict(
        lr=lr, n_beta=nbeta, localization=gamma, batch_size=batch, num_chains=args.chains,
        num_burnin_steps=args.burnin, num_draws=args.draws, num_steps_bw_draws=1, device="cpu",
    )  # fmt: skip

    if args.only != "susceptibilities":
        _bif(gpt, tokens, train, query, ours_kw, di_kw)
    if args.only != "bif":
        _susceptibilities(gpt, tokens, reference, shifted, ours_kw, di_kw)


def _bif(gpt, tokens, train, query, ours_kw, di_kw):
    """train × query: −Cov of sequence losses, ours against devinterp's compute_bif."""
    from devinterp.slt.bif import compute_bif
    from devinterp.slt.sampling import sample

    start = time.perf_counter()
    ours = llc.bif(gpt, tokens, query, train=train, **ours_kw)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        observables = {"train": (_dataset(train), 1), "query": (_dataset(query), 1)}
        samples = sample(gpt, _dataset(tokens), observables, output_path=f"{tmp}/s.zarr", **di_kw)
        out = compute_bif(
            samples, correlation_method="sequence", compute_covariance=True,
            loss_keys=["train", "query"], batch_index_range_1=range(16),
            batch_index_range_2=range(16, 32), device="cpu",
        )  # fmt: skip
        cov, ids = out["influences"].values, out["input_ids"].values  # rows in devinterp's order
    t_theirs = time.perf_counter() - start
    rows, cols = _order(ids[:16], train), _order(ids[16:32], query)
    theirs = np.empty_like(cov)
    theirs[np.ix_(rows, cols)] = cov
    _compare("BIF −Cov(ℓ_i, ℓ_q)", ours.matrix, -theirs, ours.mcse)
    r = ours.llc
    mala = np.nanmean(r.mala_acceptance)
    print(f"  ours: R-hat {r.r_hat:.3f}, ESS {r.ess:.0f} (LLC trace), MALA {mala:.2f}")
    print(f"  wall time: ours {t_ours:.1f} s, devinterp {t_theirs:.1f} s, "
          f"ratio {t_theirs / t_ours:.1f}x")  # fmt: skip


def _susceptibilities(gpt, tokens, reference, shifted, ours_kw, di_kw):
    """heads × one shift, per token: ours against devinterp's susceptibilities, and against the
    plain covariance ``−Cov(φ, ℓ_t − L_R)`` computed from devinterp's own draws."""
    from devinterp.slt.sampling import sample
    from devinterp.slt.susceptibilities import compute_susceptibilities
    from devinterp.slt.weight_restrictions import create_param_masks

    heads = ["l0h0", "l0h1", "l1h0", "l1h1"]
    start = time.perf_counter()
    chi = llc.susceptibilities(
        gpt, tokens, components={h: llc.param_masks(gpt, h) for h in heads},
        shifts={"shift": shifted}, reference=reference, per_token=True, **ours_kw,
    )  # fmt: skip
    t_ours = time.perf_counter() - start
    observables = {"pretrain": (_dataset(reference), 2), "shift": (_dataset(shifted), 1)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()  # the runs devinterp's susceptibilities() makes
        runs = {
            wr: sample(
                gpt,
                _dataset(tokens),
                observables,
                output_path=f"{tmp}/{wr}.zarr",
                param_masks=None if wr == "full" else create_param_masks(gpt, wr),
                **di_kw,
            )  # fmt: skip
            for wr in ["full", *heads]
        }
        tree = compute_susceptibilities(runs, "pretrain")
        t_theirs = time.perf_counter() - start
        sus = tree["susceptibilities"].dataset
        ctx = tree["context"].dataset["input_ids"].values.reshape(len(shifted), -1)
        order = _order(ctx, shifted)
        theirs = np.empty((len(heads), *shifted[:, 1:].shape))
        plain = np.empty_like(theirs)
        for k, h in enumerate(heads):
            theirs[k, order] = sus["sus"].sel(wr=h).values.reshape(len(shifted), -1)
            ds = runs[h].dataset
            ref = ds["loss_pretrain"].values.mean(axis=(-2, -1))  # (chain, draw): L_R
            delta = ds["loss_shift"].values - ref[..., None, None]  # ℓ_t − L_R
            dev = (ref - ref.mean())[..., None, None] * (delta - delta.mean(axis=(0, 1)))
            ids = ds["input_ids_shift"].values
            while ids.ndim > 2:
                ids = ids[0]
            plain[k, _order(ids, shifted)] = -dev.mean(axis=(0, 1))
    mcse = chi.per_token_mcse["shift"]
    _compare("per-token χ, devinterp's estimator", chi.per_token["shift"], theirs, mcse)
    _compare("per-token χ, −Cov from devinterp's draws", chi.per_token["shift"], plain, mcse)
    print("  (devinterp's estimator centres φ·ΔL by the unrestricted run's mean losses and φ by")
    print("  L_n(w*) on other batches, appendix C.4; ours is the covariance under the restricted")
    print("  posterior, the quantity the second line computes from devinterp's draws)")
    print(f"  wall time: ours {t_ours:.1f} s ({len(heads)} runs), devinterp {t_theirs:.1f} s "
          f"({len(heads) + 1} runs), ratio {t_theirs / t_ours:.1f}x")  # fmt: skip


def _order(ids: np.ndarray, tokens: torch.Tensor) -> np.ndarray:
    """For each of devinterp's rows (token ids), the index of that sequence in ``tokens``."""
    lookup = {tuple(t): i for i, t in reversed(list(enumerate(tokens.tolist())))}
    return np.array([lookup[tuple(r)] for r in np.asarray(ids).tolist()])


if __name__ == "__main__":
    main()
