"""
Training hooks that make a long run safe to interrupt and to resume:

* :class:`ResumableRandomness`: the random numbers of iteration ``i`` (model sampling, data
  order and augmentation) depend only on the run's seed and ``i``, and the seed is saved in
  each checkpoint, so a resumed run continues exactly as the interrupted one would have;
* :class:`NonFiniteLossGuard`: stops training at the first NaN / Inf loss, naming the
  iteration and the loss terms, before the optimizer step can spoil the weights.
"""
import logging

import torch

from detectron2.engine import HookBase
from detectron2.utils import comm

from .resumable_loader import ResumableTrainLoader
from .seeding import ITERATION, derive_seed, seed_global_rngs

__all__ = ["ResumableRandomness", "NonFiniteLossGuard"]

logger = logging.getLogger(__name__)


class ResumableRandomness(HookBase):
    """
    * before training: start the :class:`ResumableTrainLoader` (if the trainer has one) at the
      trainer's start iteration, with the run's seed;
    * before each iteration ``i``: seed torch, numpy and ``random`` with (seed, i, rank);
    * checkpoints: the seed is part of the hook's state, saved with the trainer; resuming
      adopts the saved seed (so a run with SEED=-1, a random seed, also resumes exactly).
    """

    def __init__(self, seed):
        """
        Args:
            seed (int): base seed of the run (>= 0), the same on every rank; see
                :func:`~.seeding.training_seed`.
        """
        self.seed = seed

    def state_dict(self):
        return {"seed": self.seed}

    def load_state_dict(self, state_dict):
        if state_dict["seed"] != self.seed:
            logger.info(f"Resuming with the training seed {state_dict['seed']} of the "
                        f"checkpoint (instead of {self.seed}).")
        self.seed = state_dict["seed"]

    def before_train(self):
        loader = self.trainer.data_loader
        if isinstance(loader, ResumableTrainLoader):
            loader.start(self.trainer.start_iter, self.seed)

    def before_step(self):
        seed_global_rngs(derive_seed(self.seed, ITERATION, self.trainer.iter, comm.get_rank()))


class NonFiniteLossGuard(HookBase):
    """
    Checks the loss dict returned by the model in training (a forward hook on the model) and
    raises ``FloatingPointError`` naming the iteration and every NaN / Inf term, before
    ``backward`` and the optimizer step. Detectron2's own check only reports the total.
    """

    def __init__(self):
        self._handle = None

    def before_train(self):
        self._handle = self.trainer.model.register_forward_hook(self._check)

    def after_train(self):
        if self._handle is not None:
            self._handle.remove()

    def _check(self, module, inputs, loss_dict):
        if not module.training or not isinstance(loss_dict, dict) or not loss_dict:
            return
        finite = torch.stack([torch.isfinite(v.detach()).all() for v in loss_dict.values()])
        if bool(finite.all()):
            return
        bad = [
            f"{name} = {value.detach().float().mean().item()}"
            for (name, value), ok in zip(loss_dict.items(), finite.tolist())
            if not ok
        ]
        raise FloatingPointError(
            f"Loss became NaN or infinite at iteration {self.trainer.iter}: "
            f"{', '.join(bad)} ({len(bad)} of {len(loss_dict)} loss terms). Training stopped "
            "before this iteration's optimizer step, so the last checkpoint in OUTPUT_DIR holds "
            "finite weights: resume from it with --resume, e.g. with a lower SOLVER.BASE_LR or "
            "SOLVER.CLIP_GRADIENTS enabled, or check the training data of this iteration."
        )
