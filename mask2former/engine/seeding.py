"""
Random seeds derived from a base seed and a position (iteration, sample), so that what
training draws at a given point is a function of where it is, not of what ran before. This is
what lets a resumed run continue exactly where the interrupted one stopped.
"""
import contextlib
import random

import numpy as np
import torch

from detectron2.utils import comm

__all__ = ["derive_seed", "seed_global_rngs", "seeded_global_rngs", "training_seed"]

# Purposes of the seeds derived from a run's base seed (second key of derive_seed), so that
# each gets unrelated numbers: the image order of an epoch, the augmentation of a sample, and
# the model's random draws (point sampling) in an iteration.
EPOCH_ORDER, AUGMENTATION, ITERATION = 0, 1, 2


def training_seed(cfg) -> int:
    """
    The base seed of a training run: ``cfg.SEED`` when >= 0, else a random seed shared by all
    processes (a collective call: every rank must call it).
    """
    return cfg.SEED if cfg.SEED >= 0 else int(comm.shared_random_seed())


def derive_seed(*keys: int) -> int:
    """
    A 32-bit seed from a tuple of non-negative integers (e.g. (base seed, purpose, iteration,
    rank)), through numpy's ``SeedSequence`` hashing: nearby keys give unrelated seeds.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_global_rngs(seed: int) -> None:
    """Seed the global random generators of torch, numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@contextlib.contextmanager
def seeded_global_rngs(seed: int):
    """
    Run the block with the global generators of torch, numpy and ``random`` seeded with
    ``seed`` (Detectron2's augmentations draw from ``np.random``), and restore their
    previous states afterwards so that the caller's random streams are not disturbed.
    """
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    seed_global_rngs(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
