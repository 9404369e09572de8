"""
Detectron2's checkpointer, with loading that says which weights were not loaded and why, a
class head that follows a checkpoint of other classes, and saving that never loses work.

Detectron2's ``DetectionCheckpointer`` loads model-zoo ``.pkl`` files (a pickle of
``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics": ...}``) and native
``.pth`` files (``torch.load``, ``weights_only`` on torch >= 2.6). It skips a checkpoint entry
of another shape than the model's and leaves the parameter at its fresh initialization; the only
trace is a warning per key among hundreds of lines of loading logs. fvcore's ``save`` writes in
place, so a kill mid-way leaves a truncated file. :class:`MaskFormerCheckpointer`:

* loading, names every skipped tensor with both shapes in one warning, or with
  ``require_matching_shapes`` (evaluation, demo, export) refuses such a checkpoint;
* loading a checkpoint trained for another number of classes (fine-tuning), says so: every
  weight loads but the class head, which keeps the model's initialization or, with a
  :class:`~.class_head.ClassHeadInit`, starts the rows of classes of the same name from the
  checkpoint's (``class_head.py``);
* saving, stores the class names of the model with the weights ("class_names"), writes
  atomically (``atomic.py``) and refuses NaN / Inf weights; a checkpoint that cannot be read is
  an error naming the file and the way out.

Use it wherever a model loads or saves weights::

    MaskFormerCheckpointer(model, require_matching_shapes=True).load(cfg.MODEL.WEIGHTS)
    MaskFormerCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(trainer),
                           class_names=training_class_names(cfg),
                           class_head_init=build_class_head_init(cfg))   # training
"""
import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .atomic import atomic_write
from .class_head import is_class_count_tensor, reinitialize_class_head
from .mismatches import describe_mismatches, shape_mismatches

__all__ = ["MaskFormerCheckpointer"]

logger = logging.getLogger(__name__)


def _is_class_count_change(mismatch) -> bool:
    name, checkpoint_shape, model_shape = mismatch
    return is_class_count_tensor(name) and checkpoint_shape[1:] == model_shape[1:]


class MaskFormerCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` (same arguments, same files) with the loading and saving of the
    module docstring.
    """

    def __init__(self, model, save_dir="", *, require_matching_shapes=False, class_names=None,
                 class_head_init=None, **kwargs):
        """
        Args:
            model, save_dir, kwargs: those of ``DetectionCheckpointer`` (``save_dir``, where
                checkpoints are saved, must be a local folder).
            require_matching_shapes (bool): a checkpoint with tensors of other shapes is an
                error, raised before anything is loaded (evaluation: a partly random model gives
                wrong results).
            class_names (list[str] or None): the names of the model's K classes, stored in the
                checkpoints it saves.
            class_head_init (ClassHeadInit or None): how the class head starts from a checkpoint
                of other classes; None: it keeps the model's initialization. Not applied when
                resuming from the last checkpoint of ``save_dir``.
        """
        super().__init__(model, save_dir, **kwargs)
        self.require_matching_shapes = require_matching_shapes
        self.class_names = None if class_names is None else list(class_names)
        self.class_head_init = class_head_init
        self._resuming = False

    def resume_or_load(self, path, *, resume=True):
        self._resuming = resume and self.has_checkpoint()
        try:
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming = False

    def load(self, path, *args, **kwargs):
        self._loading_path = path
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint):
        state = checkpoint["model"]
        if state and all(k.startswith("module.") for k in state):  # DistributedDataParallel
            state = checkpoint["model"] = {k[len("module."):]: v for k, v in state.items()}
        model_state = self.model.state_dict()
        skipped = shape_mismatches({k: tuple(v.shape) for k, v in model_state.items()},
                                   {k: tuple(v.shape) for k, v in state.items()})
        if skipped and self.require_matching_shapes:
            raise ValueError(
                f"{self._loading_path} does not fit the model: {len(skipped)} parameters/buffers "
                "have other shapes (e.g. it was trained for another number of classes than "
                "MODEL.SEM_SEG_HEAD.NUM_CLASSES); use the config it was trained with:\n"
                f"{describe_mismatches(skipped)}"
            )
        class_count = [s for s in skipped if _is_class_count_change(s)]
        skipped = [s for s in skipped if not _is_class_count_change(s)]
        if self.class_head_init is not None and not self._resuming:
            logger.info(self.class_head_init.initialize(checkpoint, model_state,
                                                        self._loading_path))
        elif class_count:
            logger.warning(reinitialize_class_head(state, model_state, class_count,
                                                   self._loading_path))
        elif not self._resuming:
            self._warn_if_other_class_names(checkpoint.get("class_names"))
        incompatible = super()._load_model(checkpoint)
        if skipped:
            logger.warning(
                f"{len(skipped)} parameters/buffers of the model were NOT loaded from "
                f"{self._loading_path} because their shapes differ; they keep their fresh "
                f"initialization:\n{describe_mismatches(skipped)}"
            )
        return incompatible

    def _warn_if_other_class_names(self, checkpoint_names):
        """A class head of the same size, trained for classes of other names, loads as is."""
        if self.class_names is None or checkpoint_names is None:
            return
        if list(checkpoint_names) != self.class_names:
            different = [f"{k}: {a!r} (checkpoint) / {b!r} (model)"
                         for k, (a, b) in enumerate(zip(checkpoint_names, self.class_names))
                         if a != b]
            logger.warning(
                f"{self._loading_path} was trained for classes of other names; its class head "
                f"loads as is, row by row ({', '.join(different[:10])}"
                f"{', ...' if len(different) > 10 else ''}). "
                "MODEL.MASK_FORMER.CLASS_HEAD_INIT.BY_NAME True matches the rows by name."
            )

    def save(self, name, **kwargs):
        """
        Save ``<save_dir>/<name>.pth`` (model, checkpointables, ``kwargs`` and "class_names")
        atomically and tag it as the last checkpoint; refuse non-finite model weights, keeping
        the last good checkpoint.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        if self.class_names is not None:
            data["class_names"] = self.class_names
        data.update(kwargs)
        save_file = os.path.join(self.save_dir, f"{name}.pth")
        bad = [k for k, v in data["model"].items()
               if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise FloatingPointError(
                f"Not saving checkpoint {save_file}: {len(bad)} model parameters/buffers hold NaN "
                f"or Inf ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}); the last "
                f"good checkpoint ({self.get_checkpoint_file() or 'none'}) is kept."
            )
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(os.path.basename(save_file))

    def tag_last_checkpoint(self, last_filename_basename):
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda f: f.write(last_filename_basename.encode()))

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except Exception as e:
            others = sorted(f for f in os.listdir(os.path.dirname(os.path.abspath(filename)))
                            if f.endswith((".pth", ".pkl")) and f != os.path.basename(filename))
            resume = (f", or to resume from another checkpoint write its file name into "
                      f"{os.path.join(self.save_dir, 'last_checkpoint')}" if self.save_dir else "")
            raise RuntimeError(
                f"Cannot read checkpoint {filename}: {type(e).__name__}: {e}. If the file is "
                f"damaged or incomplete, replace it{resume} (checkpoints beside it: "
                f"{', '.join(others) or 'none'})."
            ) from e
