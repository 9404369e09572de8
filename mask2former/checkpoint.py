"""
Checkpoint loading that says clearly which weights were not loaded.

Detectron2's ``DetectionCheckpointer`` loads model-zoo ``.pkl`` files (a pickle of
``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics": ...}``) and native
``.pth`` files (``torch.load``, ``weights_only`` on torch >= 2.6). When a checkpoint entry has
another shape than the model's (e.g. a checkpoint trained for another number of classes, so
``class_embed`` and ``criterion.empty_weight`` differ), it skips that entry and leaves the
parameter at its fresh initialization; the only trace is a warning per key among hundreds of
lines of loading logs. :class:`MaskFormerCheckpointer` adds one warning that lists them all.

Use it wherever a model loads weights::

    MaskFormerCheckpointer(model).load(cfg.MODEL.WEIGHTS)                 # demo / evaluation
    trainer.checkpointer = MaskFormerCheckpointer(                        # train_net, before
        model, cfg.OUTPUT_DIR, trainer=weakref.proxy(trainer))            # resume_or_load
"""
import logging
from typing import Dict, List, Tuple

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["MaskFormerCheckpointer", "shape_mismatches"]

logger = logging.getLogger(__name__)


def shape_mismatches(
    model_shapes: Dict[str, Tuple[int, ...]], checkpoint_shapes: Dict[str, Tuple[int, ...]]
) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
    """
    Entries present in both, with different shapes: [(name, checkpoint shape, model shape)],
    sorted by name. A "module." prefix (DistributedDataParallel) on every checkpoint key is
    ignored, as the checkpointer ignores it.
    """
    if checkpoint_shapes and all(k.startswith("module.") for k in checkpoint_shapes):
        checkpoint_shapes = {k[len("module."):]: v for k, v in checkpoint_shapes.items()}
    return [
        (name, checkpoint_shapes[name], shape)
        for name, shape in sorted(model_shapes.items())
        if name in checkpoint_shapes and checkpoint_shapes[name] != shape
    ]


class MaskFormerCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` (same arguments, same loading) that, after loading model weights,
    logs one warning naming every model parameter or buffer that was skipped because the
    checkpoint holds it with another shape, with both shapes. With
    ``require_matching_shapes=True`` (evaluation: a partly random model gives wrong results)
    such a checkpoint is an error instead, raised before anything is loaded.
    """

    def __init__(self, model, save_dir="", *, require_matching_shapes=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.require_matching_shapes = require_matching_shapes

    def load(self, path, *args, **kwargs):
        self._loading_path = path
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint):
        checkpoint_shapes = {k: tuple(v.shape) for k, v in checkpoint["model"].items()}
        model_shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        skipped = shape_mismatches(model_shapes, checkpoint_shapes)
        lines = "\n".join(
            f"  {name}: checkpoint {tuple(ckpt)}, model {tuple(model)}"
            for name, ckpt, model in skipped
        )
        if skipped and self.require_matching_shapes:
            raise ValueError(
                f"{self._loading_path} does not fit the model: {len(skipped)} parameters/buffers "
                "have other shapes (e.g. it was trained for another number of classes than "
                "MODEL.SEM_SEG_HEAD.NUM_CLASSES); use the config it was trained with:\n"
                f"{lines}"
            )
        incompatible = super()._load_model(checkpoint)
        if skipped:
            logger.warning(
                f"{len(skipped)} parameters/buffers of the model were NOT loaded from "
                f"{self._loading_path} because their shapes differ "
                "(e.g. the checkpoint was trained for another number of classes); they keep "
                f"their fresh initialization:\n{lines}"
            )
        return incompatible
