"""
Atomic checkpoints (mask2former/checkpoint/), NaN / Inf loss guard and the exactly resumable
data stream (mask2former/engine/), with real Detectron2 trainers and checkpointers.
"""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase, SimpleTrainer

from mask2former.checkpoint import MaskFormerCheckpointer
from mask2former.engine import (
    NonFiniteLossGuard,
    ResumableRandomness,
    ResumableTrainLoader,
    TrainingStream,
)


class _Unpicklable:
    """A checkpointable whose state cannot be pickled: torch.save fails part-way."""

    def state_dict(self):
        return {"callback": lambda: None}


def _model():
    torch.manual_seed(0)
    return nn.Linear(3, 2)


# ------------------------------------------------------------------------- checkpoints
def test_failed_save_keeps_the_last_good_checkpoint(tmp_path):
    model = _model()
    MaskFormerCheckpointer(model, str(tmp_path)).save("model_0000009")
    good = (tmp_path / "model_0000009.pth").read_bytes()
    broken = MaskFormerCheckpointer(model, str(tmp_path), extra=_Unpicklable())
    with pytest.raises(Exception):
        broken.save("model_0000009")
    assert (tmp_path / "model_0000009.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    # The same failure with Detectron2's own checkpointer truncates the file in place.
    with pytest.raises(Exception):
        DetectionCheckpointer(model, str(tmp_path), extra=_Unpicklable()).save("model_0000009")
    assert (tmp_path / "model_0000009.pth").read_bytes() != good


def test_resume_loads_what_was_saved(tmp_path):
    model = _model()
    MaskFormerCheckpointer(model, str(tmp_path)).save("model_0000004", iteration=4)
    fresh = nn.Linear(3, 2)
    extra = MaskFormerCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 4
    assert torch.equal(fresh.weight, model.weight)


def test_non_finite_weights_are_not_saved(tmp_path):
    model = _model()
    checkpointer = MaskFormerCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    with torch.no_grad():
        model.bias[1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"model_0000003\.pth.*bias.*model_0000001\.pth"):
        checkpointer.save("model_0000003")
    assert not (tmp_path / "model_0000003.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"


def test_damaged_checkpoint_error_names_the_file_and_the_way_out(tmp_path):
    model = _model()
    checkpointer = MaskFormerCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001")
    checkpointer.save("model_0000003")
    path = tmp_path / "model_0000003.pth"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RuntimeError) as error:
        MaskFormerCheckpointer(nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)
    message = str(error.value)
    assert str(path) in message and "last_checkpoint" in message
    assert "model_0000001.pth" in message


# ------------------------------------------------------------------------- NaN guard
class _LossModel(nn.Module):
    """Two loss terms; ``loss_mask`` is NaN on iteration ``nan_at``."""

    def __init__(self, nan_at):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4))
        self.calls, self.nan_at = 0, nan_at

    def forward(self, batch):
        x = torch.stack(batch)
        loss_mask = (x * self.weight).pow(2).mean()
        if self.calls == self.nan_at:
            loss_mask = loss_mask * float("nan")
        self.calls += 1
        return {"loss_ce": self.weight.sum() * 0.1, "loss_mask": loss_mask}


def test_nan_loss_stops_training_naming_iteration_and_term():
    model = _LossModel(nan_at=3)
    data = iter(lambda: [torch.ones(4), torch.full((4,), 2.0)], None)
    trainer = SimpleTrainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1))
    weights = []

    class Record(HookBase):
        def after_step(self):
            weights.append(model.weight.detach().clone())

    trainer.register_hooks([NonFiniteLossGuard(), Record()])
    with pytest.raises(FloatingPointError) as error:
        trainer.train(0, 10)
    message = str(error.value)
    assert "iteration 3" in message and "loss_mask = nan" in message
    assert "loss_ce =" not in message
    assert len(weights) == 3  # iterations 0, 1, 2 completed; 3 stopped before its step
    assert torch.equal(model.weight.detach(), weights[-1])


# ------------------------------------------------------------------------- data stream
def _augmenting_mapper(dataset_dict):
    """A mapper drawing like Detectron2's augmentations (np.random) and torch."""
    return (dataset_dict["k"], float(np.random.uniform()), float(torch.rand(())),
            random.random())


def _batches(start_iter, num, num_workers, seed=3):
    stream = TrainingStream([{"k": k} for k in range(5)], _augmenting_mapper, seed)
    loader = ResumableTrainLoader(stream, total_batch_size=2, num_workers=num_workers)
    loader.start(start_iter)
    batches = iter(loader)
    return [next(batches) for _ in range(num)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_stream_resumed_at_an_iteration_continues_the_same_batches(num_workers):
    straight = _batches(0, 9, num_workers=0)
    assert _batches(4, 5, num_workers) == straight[4:]
    images = [sample[0] for batch in straight for sample in batch]
    # Each epoch of 5 positions is a permutation of the 5 images, and epochs differ in order.
    assert sorted(images[:5]) == sorted(images[5:10]) == list(range(5))
    assert images[:5] != images[5:10] or images[5:10] != images[10:15]
    # A sample seen twice (another epoch) gets another augmentation.
    assert len({sample[1] for batch in straight for sample in batch}) == 18


def test_stream_leaves_the_global_random_state_alone():
    torch.manual_seed(1)
    np.random.seed(1)
    expected = (torch.rand(3), np.random.uniform(size=3))
    torch.manual_seed(1)
    np.random.seed(1)
    _batches(0, 2, num_workers=0)
    got = (torch.rand(3), np.random.uniform(size=3))
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])


def test_resumed_trainer_adopts_the_seed_and_position_of_the_checkpoint():
    """A run with a random seed (SEED=-1) resumes with the seed saved in its checkpoint."""

    def trainer_with(seed):
        stream = TrainingStream([{"k": k} for k in range(5)], _augmenting_mapper, seed)
        loader = ResumableTrainLoader(stream, total_batch_size=2)
        model = _LossModel(nan_at=-1)
        trainer = SimpleTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.1))
        trainer.register_hooks([ResumableRandomness(seed)])
        return trainer, loader

    _, original = trainer_with(seed=5)
    first, _ = trainer_with(seed=5)
    first.iter = 3
    state = first.state_dict()
    resumed, loader = trainer_with(seed=11)
    resumed.load_state_dict(state)
    resumed.train(state["iteration"] + 1, state["iteration"] + 1)  # runs before/after_train only
    assert loader.stream.seed == 5 and loader.start_iter == 4
    original.start(4)
    assert next(iter(loader)) == next(iter(original))


_SAVE_FOREVER = """
import sys, torch
from torch import nn
from mask2former.checkpoint import MaskFormerCheckpointer
model = nn.Linear(1024, 4096)
checkpointer = MaskFormerCheckpointer(model, sys.argv[1])
for step in range(1000000):
    with torch.no_grad():
        model.bias.fill_(step)
    checkpointer.save("model_final", step=step)
"""


def test_kill9_while_saving_leaves_a_complete_checkpoint(tmp_path):
    """SIGKILL a process in the middle of rewriting model_final.pth: the file stays loadable."""
    proc = subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER, str(tmp_path)])
    try:
        deadline = time.time() + 120
        while not (list(tmp_path.glob("*.tmp-*")) and (tmp_path / "last_checkpoint").exists()):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert torch.all(checkpoint["model"]["bias"] == checkpoint["step"])
