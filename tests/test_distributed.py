"""train_transform_net on 2 processes (torch.distributed, gloo on 127.0.0.1, as torchrun would run it on the CPU):
the same weights as 1 process with the whole batch, exact resumption, rank 0 alone writes, NaN stops all ranks."""

from __future__ import annotations

import contextlib
import io
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.optim.optimizer import register_optimizer_step_pre_hook

from nstlib import distributed, training
from nstlib.checkpoints import restore_train_state, rng_states, train_checkpoint
from nstlib.transform_net import TransformerNet
from test_training import FAST, Tiny, style_image

WORLD = 2
GLOBAL_BATCH = 4  # 2 images per rank
OPTIONS = {**FAST, "batch_size": GLOBAL_BATCH, "content_weight": 1e3, "style_weight": 1e7}
"""tests/test_training.py's tiny runs with a global batch of 4 and a 1000 times larger loss: gradients far above
Adam's eps (1e-8), so that Adam's normalised steps do not magnify the rounding differences of tiny gradients."""


def _first_step(record: dict) -> object:
    """Record the parameters and gradients just before the first optimiser step (a global hook): ``record[i]``
    is ``(weights, gradient)`` of parameter ``i``; returns the hook's handle."""
    def hook(optimizer, args, kwargs):
        if not record:
            for i, p in enumerate(optimizer.param_groups[0]["params"]):
                record[i] = (p.detach().clone(), p.grad.detach().clone())
    return register_optimizer_step_pre_hook(hook)


class Jitter(Tiny):
    """Tiny's images, flipped at random with the global torch RNG, drawing 1 to 3 numbers per item (by index):
    ranks that see different items end with different RNG states, so resuming exactly needs each rank's own."""

    def __getitem__(self, i: int) -> torch.Tensor:
        flip = torch.rand(1 + i % 3)[-1] < 0.5
        return self.images[i].flip(-1) if flip else self.images[i]


class Poisoned(Tiny):
    """Tiny's images with NaN pixels in one item."""

    def __init__(self, bad: int, **kwargs):
        super().__init__(**kwargs)
        self.images[bad, :, 0, 0] = float("nan")


def _state(result) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in result.net.state_dict().items()}


POISON_N = 12  # 3 steps per epoch: step 3 is the first to see the items of epoch 0's last batch


def _step_batch(step: int) -> list[int]:
    """The global batch of ``step`` (1-based, epoch 0) over POISON_N items: epoch_order, then consecutive slices."""
    return training.epoch_order(POISON_N, 0, 0).tolist()[(step - 1) * GLOBAL_BATCH:step * GLOBAL_BATCH]


def _poisoned_index() -> int:
    """The first item of rank 1's slice of step 3."""
    return distributed.shard(_step_batch(3), 1, WORLD)[0]


def _rank_main(rank: int, port: int, folder: str) -> None:
    """One rank: four short runs in one process group; results into ``folder/rank<r>.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    out: dict = {}
    try:
        if rank != 0:  # only rank 0 may write checkpoints
            training.write_train_checkpoint = _refuse
        calls: list[int] = []
        stderr = io.StringIO()
        first: dict = {}
        handle = _first_step(first)
        with contextlib.redirect_stderr(stderr):
            same = training.train_transform_net(style_image(), Tiny(n=8), steps=4, log_every=1,
                                                callback=lambda step, *_: calls.append(step),
                                                **{**OPTIONS, "progress": True})
        out["same"], out["same_total"] = _state(same), torch.tensor(same.history["total"], dtype=torch.float64)
        out["bar"], out["calls"] = "train" in stderr.getvalue(), torch.tensor(calls)
        out["first"] = first
        handle.remove()
        whole = training.train_transform_net(style_image(), Jitter(n=8), steps=4, checkpoint_dir=f"{folder}/whole",
                                             **OPTIONS)
        out["whole"] = _state(whole)
        training.train_transform_net(style_image(), Jitter(n=8), steps=2, checkpoint_dir=f"{folder}/cut", **OPTIONS)
        torch.manual_seed(1000 + rank)  # disturb every rank's RNG: the checkpoint must restore each one's
        resumed = training.train_transform_net(style_image(), Jitter(n=8), steps=4, checkpoint_dir=f"{folder}/cut",
                                               resume=True, **OPTIONS)
        out["resumed"], out["resumed_path"] = _state(resumed), str(resumed.checkpoint_path)
        try:  # a NaN in rank 1's slice of step 3 only
            training.train_transform_net(style_image(), Poisoned(_poisoned_index(), n=POISON_N), steps=4, checkpoint_every=2,
                                         checkpoint_dir=f"{folder}/nan", **OPTIONS)
        except training.TrainingDivergedError as error:
            out["diverged_step"], out["diverged_checkpoint"] = error.step, str(error.checkpoint_path)
        out["group_open"] = dist.is_initialized()  # a caller's group stays open
    finally:
        dist.destroy_process_group()
    torch.save(out, f"{folder}/rank{rank}.pt")


def _refuse(*args, **kwargs):
    raise AssertionError("a rank other than 0 tried to write a checkpoint")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(_free_port(), str(folder)), nprocs=WORLD, join=True)
    return folder, [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=lambda m: f"{key}: {m}")


def test_two_ranks_with_half_batches_equal_one_process_with_the_whole_batch(two_ranks):
    _, ranks = two_ranks
    first: dict = {}
    handle = _first_step(first)
    single = training.train_transform_net(style_image(), Tiny(n=8), steps=4, **OPTIONS)
    handle.remove()
    names = [name for name, _ in single.net.named_parameters()]
    # the gradient DDP averages over the ranks' halves is the gradient of the whole batch (first step)
    top = max(gradient.abs().max() for _, gradient in first.values())
    for i, name in enumerate(names):
        torch.testing.assert_close(ranks[0]["first"][i][0], first[i][0], rtol=0, atol=0)  # the same start
        torch.testing.assert_close(ranks[0]["first"][i][1], first[i][1], rtol=1e-4, atol=1e-5 * top,
                                   msg=lambda m: f"gradient of {name}: {m}")
    # the recorded losses are those of the whole batch: the mean over the ranks' halves
    torch.testing.assert_close(ranks[0]["same_total"], torch.tensor(single.history["total"], dtype=torch.float64),
                               rtol=1e-5, atol=0)
    # the ranks' weights are identical (DDP keeps them in step), and after 4 Adam steps those of one process
    _close(ranks[0]["same"], ranks[1]["same"], atol=0)
    # up to rounding, which Adam (dividing by each gradient's size) magnifies where the gradient is rounding
    # noise: parameters whose exact gradient is zero (biases the next instance norm removes again) are left out
    live = [name for i, name in enumerate(names) if first[i][1].abs().max() >= 1e-6 * top]
    assert all(name.endswith(".bias") for name in set(names) - set(live))
    single_state = _state(single)
    start = torch.cat([first[names.index(name)][0].flatten() for name in live])
    update = torch.cat([single_state[name].flatten() for name in live]) - start
    difference = torch.cat([(ranks[0]["same"][name] - single_state[name]).flatten() for name in live])
    assert difference.norm() <= 0.01 * update.norm()  # measured: 0.15 %; one process with batch 2: 117 %


def test_a_cut_two_rank_run_resumes_to_the_uninterrupted_weights(two_ranks):
    folder, ranks = two_ranks
    for rank in ranks:
        _close(rank["resumed"], rank["whole"], atol=0)
        assert rank["resumed_path"] == str(folder / "cut" / "step_000004.pth")
    state = torch.load(folder / "cut" / "step_000002.pth", weights_only=True)
    # each rank's RNG state is in the checkpoint, and they differ (Jitter drew differently on each)
    assert len(state["rng_ranks"]) == WORLD and not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    assert torch.equal(state["rng"]["torch"], state["rng_ranks"][0]["torch"]) and state["settings"]["world_size"] == WORLD


def test_rank_zero_alone_shows_progress_and_calls_back(two_ranks):
    _, ranks = two_ranks
    assert ranks[0]["bar"] and not ranks[1]["bar"]
    assert ranks[0]["calls"].tolist() == [1, 2, 3, 4] and ranks[1]["calls"].tolist() == []
    assert all(rank["group_open"] for rank in ranks)


def test_a_nan_on_one_rank_stops_every_rank_at_that_step(two_ranks):
    folder, ranks = two_ranks
    assert [rank["diverged_step"] for rank in ranks] == [3, 3]
    assert {rank["diverged_checkpoint"] for rank in ranks} == {str(folder / "nan" / "step_000002.pth")}
    assert sorted(p.name for p in (folder / "nan").glob("*.pth")) == ["latest.pth", "step_000002.pth"]
    # the poisoned item was in rank 1's slice only, and in no earlier step: rank 0's own losses were finite
    assert _poisoned_index() not in distributed.shard(_step_batch(3), 0, WORLD) + _step_batch(1) + _step_batch(2)


def test_shard_cuts_a_global_batch_into_equal_consecutive_slices():
    batch = [7, 3, 5, 0, 6, 2]
    assert [distributed.shard(batch, r, 3) for r in range(3)] == [[7, 3], [5, 0], [6, 2]]
    assert distributed.shard(batch, 0, 1) == batch
    ranks = distributed.Ranks(rank=1, world_size=4, local_rank=1, owns_group=False)
    with pytest.raises(ValueError, match=r"batch_size=6 is the global batch and must be a multiple of the 4 "
                                         r"processes .* use batch_size=4"):
        distributed.check_batch(6, ranks)


def test_one_process_stays_off_torch_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not dist.is_initialized() and distributed.join(None) is None
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node 1: one process, the default path
    assert distributed.join(None) is None and not dist.is_initialized()


def test_a_checkpoint_restores_each_ranks_rng_or_rank_zeros_for_another_world_size():
    net = TransformerNet()
    optimizer = torch.optim.Adam(net.parameters())
    scaler = training._grad_scaler(False)
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(rng_states())
    state = train_checkpoint(net, optimizer, scaler, step=1, steps_per_epoch=1, seed=0, history={"total": [1.0]},
                             settings={}, rng_ranks=states)
    state["rng"] = states[0]  # rank 0's, as rank 0 writes it
    expected = {1: torch.rand(3, generator=torch.Generator().manual_seed(2))}
    restore_train_state(state, net, optimizer, scaler, ["total"], rank=1, world_size=2)
    assert torch.equal(torch.rand(3), expected[1])  # rank 1 continues its own stream
    restore_train_state(state, net, optimizer, scaler, ["total"], rank=1, world_size=3)
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(1)))
