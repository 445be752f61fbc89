"""Chains split across two processes (torch.distributed, gloo): every rank returns the result
of one process with the same seed."""

import numpy as np
import pytest
import torch

from llc._distributed import Shards, split_evaluation

from .distributed_worker import launch


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
@pytest.mark.parametrize("kind", ["mlp", "generic"])
def test_two_processes_give_every_rank_the_result_of_one(kind, tmp_path):
    # adaptive warm-up (step, metric, noise compensation, spreading) and adaptive draws: each
    # rank evaluates half the chains, every rank adapts from the gathered values. A chain's
    # arithmetic does not depend on which chains are evaluated beside it (as with chain_batch),
    # so the draws are the same bits as in one process: measured so on both paths
    one = launch(kind, 1, tmp_path)[0]
    ranks = launch(kind, 2, tmp_path)
    assert str(ranks[0]["processes"]).startswith("rank 0 of 2")
    assert str(one["processes"]) == "1"
    for r in ranks:
        for key in ("llc_trace", "warmup_llc", "mean", "step_size", "num_burnin"):
            assert np.array_equal(r[key], one[key]), key


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")
@pytest.mark.parametrize("kind", ["mlp-c3", "mlp-c1"])
def test_uneven_blocks_and_a_rank_without_chains(kind, tmp_path):
    # 3 chains on 2 ranks (blocks of 2 and 1, padded in the gather) and 1 chain on 2 ranks
    # (rank 1 evaluates nothing and still joins every gather)
    one = launch(kind, 1, tmp_path)[0]
    for r in launch(kind, 2, tmp_path):
        assert np.array_equal(r["llc_trace"], one["llc_trace"])
        assert np.array_equal(r["warmup_llc"], one["warmup_llc"])


def test_settings_that_would_part_the_ranks_are_refused():
    from llc._distributed import check_across_processes

    check_across_processes(None, None)
    with pytest.raises(ValueError, match="budget"):
        check_across_processes(10.0, None)
    with pytest.raises(ValueError, match="vectorize='timed'"):
        check_across_processes(None, "timed")


def test_blocks_cover_the_chains_once_and_the_gather_keeps_rank_order():
    # the split itself, without a process group: rank r's block, gathered by hand
    for num, world in ((8, 2), (7, 3), (2, 4), (1, 2)):
        blocks = [Shards(r, world).block(num) for r in range(world)]
        covered = [c for lo, hi in blocks for c in range(lo, hi)]
        assert covered == list(range(num)), (num, world, blocks)

    class Local(Shards):  # the gather of every rank's block, in one process
        def gather(self, local, num):
            parts = [fn_all[r] for r in range(self.world)]
            return torch.cat(parts)[:num]

    position = torch.arange(14.0).reshape(7, 2)
    fn_all = {}
    for r in range(3):
        lo, hi = Shards(r, 3).block(7)
        fn_all[r] = position[lo:hi] * 2
    out = split_evaluation(Local(0, 3), lambda w: w * 2, position)
    assert torch.equal(out, position * 2)
    assert split_evaluation(None, lambda w: w + 1, position).equal(position + 1)
