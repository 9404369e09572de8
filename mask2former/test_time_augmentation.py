"""Multi-scale + flip test-time augmentation for semantic segmentation."""
import torch
from torch import nn

from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import DatasetMapperTTA


class SemanticSegmentorWithTTA(nn.Module):
    """
    Wrap a model whose outputs hold "sem_seg" (K, height, width) class scores at the
    original image size. Each input image is run at every TEST.AUG.MIN_SIZES (shortest edge,
    longest edge at most TEST.AUG.MAX_SIZE) and, with TEST.AUG.FLIP, flipped; flipped scores
    are flipped back and all scores averaged. Inputs and outputs are those of the model:
    a list of dicts with "image" (C, H, W), "height", "width" -> a list of {"sem_seg"}.
    """

    def __init__(self, cfg, model, batch_size=1):
        """
        Args:
            cfg: config with TEST.AUG.MIN_SIZES / MAX_SIZE / FLIP and INPUT.FORMAT.
            model (nn.Module): the semantic segmentation model, in eval mode.
            batch_size (int): augmented copies of an image run per forward pass.
        """
        super().__init__()
        if cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT != "scores":
            raise ValueError(
                "Test-time augmentation averages the semantic scores: set "
                "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT scores (it is "
                f"{cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT!r}) or TEST.AUG.ENABLED False"
            )
        self.model = model
        self.tta_mapper = DatasetMapperTTA(cfg)
        self.batch_size = batch_size

    def forward(self, batched_inputs):
        return [self._inference_one(x) for x in batched_inputs]

    def _inference_one(self, dataset_dict):
        height = dataset_dict.get("height", dataset_dict["image"].shape[1])
        width = dataset_dict.get("width", dataset_dict["image"].shape[2])
        augmented = self.tta_mapper(dict(dataset_dict, height=height, width=width))
        total = None
        for start in range(0, len(augmented), self.batch_size):
            batch = augmented[start : start + self.batch_size]
            with torch.no_grad():
                outputs = self.model([{k: x[k] for k in ("image", "height", "width")}
                                      for x in batch])
            for aug_input, output in zip(batch, outputs):
                scores = output["sem_seg"]
                if any(isinstance(t, HFlipTransform) for t in aug_input["transforms"].transforms):
                    scores = scores.flip(dims=[2])
                total = scores if total is None else total + scores
        return {"sem_seg": total / len(augmented)}
