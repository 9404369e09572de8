"""The Mask2Former meta-architecture: backbone -> MaskFormerHead -> set criterion or inference."""
from typing import Tuple

import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, build_sem_seg_head
from detectron2.structures import BitMasks, ImageList
from torch import nn

from .deploy.deploy_info import check_inference_tasks
from .deploy.postprocessing import DEFAULT_CHUNK_MB, chunk_elements, semantic_at_output_size
from .modeling.criterion import SetCriterion
from .modeling.matcher import HungarianMatcher
from .modeling.postprocessing import (
    MaskLogits,
    postprocess,
    resize_semantic,
    semantic_labels,
    resize_results,
)

__all__ = ["MaskFormer"]

# MODEL.MASK_FORMER.TEST.PRECISION -> dtype of the network at inference.
_INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dataset_metadata(cfg):
    """Metadata (class names, thing ids) of the first test dataset, else of the first train one."""
    dataset_names = cfg.DATASETS.TEST or cfg.DATASETS.TRAIN
    return MetadataCatalog.get(dataset_names[0]) if dataset_names else Metadata()


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """
    Mask2Former (Cheng et al., "Masked-attention Mask Transformer for Universal Image
    Segmentation", CVPR 2022): Q queries each predict a class (K classes + "no object") and a
    mask; training matches them to the ground-truth segments, inference turns them into
    semantic, panoptic and/or instance results.

    Input, ``batched_inputs``: a list of dicts, one per image, with
        * "image": (C, H, W) uint8 or float tensor, channels in ``cfg.INPUT.FORMAT`` order,
          after the dataset mapper's resize.
        * "height", "width" (optional): the size of the output, usually the original image
          size; defaults to (H, W).
        * "instances" (training only): :class:`Instances` with "gt_classes" (T,) int64
          contiguous class ids and "gt_masks" (T, H, W) :class:`BitMasks` or bool tensor.
          T may be 0.

    Output (inference): a list of dicts, one per image, at ("height", "width"), with
        * "sem_seg" (if semantic_on and semantic_output "scores"): (K, height, width) per-class
          scores.
        * "sem_seg_labels" (if semantic_on and semantic_output "labels"): (height, width) int64,
          the argmax of those scores, computed without them.
        * "panoptic_seg" (if panoptic_on): a tuple (panoptic_seg, segments_info):
          panoptic_seg (height, width) int32 segment ids, 0 = void; segments_info a list with
          one dict per segment: {"id": int, "category_id": int (contiguous), "isthing": bool}.
        * "instances" (if instance_on): :class:`Instances` with "pred_masks" (N, height, width)
          bool, "pred_boxes" :class:`Boxes` (N, 4) enclosing the masks, "scores" (N,),
          "pred_classes" (N,) int64 contiguous class ids.

    Output (training): a dict of weighted scalar losses ("loss_ce", "loss_mask", "loss_dice",
    and those of the auxiliary predictions, suffixed "_0", "_1", ...).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        num_queries: int,
        object_mask_threshold: float,
        overlap_threshold: float,
        metadata,
        size_divisibility: int,
        sem_seg_postprocess_before_inference: bool,
        pixel_mean: Tuple[float],
        pixel_std: Tuple[float],
        semantic_on: bool,
        panoptic_on: bool,
        instance_on: bool,
        test_topk_per_image: int,
        semantic_output: str = "scores",
        postprocess_at_network_resolution: bool = False,
        postprocess_chunk_mb: float = DEFAULT_CHUNK_MB,
        inference_dtype: torch.dtype = torch.float32,
    ):
        """
        Args:
            backbone: returns the multi-scale features the head reads.
            sem_seg_head: MaskFormerHead, features -> {"pred_logits": (B, Q, K+1),
                "pred_masks": (B, Q, H/4, W/4), "aux_outputs": [...]}.
            criterion: SetCriterion; its ``weight_dict`` weights the returned losses.
            num_queries: Q.
            object_mask_threshold, overlap_threshold: panoptic inference thresholds, see
                :func:`panoptic_inference`.
            metadata: dataset metadata; its ``thing_dataset_id_to_contiguous_id`` tells thing
                from stuff classes (needed when panoptic_on); instances are things only. Without
                it (semantic datasets) instances may be of any class.
            size_divisibility: pad the batch to a multiple of this; < 0: the backbone's.
            sem_seg_postprocess_before_inference: resize the mask logits to the output size
                before the semantic inference (always done for panoptic and instance).
            pixel_mean, pixel_std: per-channel normalization of the input images.
            semantic_on, panoptic_on, instance_on: which results inference returns.
            test_topk_per_image: detections per image of the instance inference.
            semantic_output: "scores" ("sem_seg" (K, H, W)) or "labels" ("sem_seg_labels"
                (H, W), their argmax: memory of one map instead of K).
            postprocess_at_network_resolution: post-process at the network's input size and
                resize only the results (nearest for panoptic ids and instance masks,
                bilinear scores for semantic); faster and lighter on large images, nearly the
                same results (BENCHMARKS.md). False: post-process at the output size.
            postprocess_chunk_mb: memory (MiB) of one chunk of upsampled mask logits; the
                post-processing never holds the (Q, height, width) logits whole.
            inference_dtype: float32, or bfloat16 / float16 to run backbone and head at
                inference under autocast of that type (MODEL.MASK_FORMER.TEST.PRECISION).
        """
        super().__init__()
        check_inference_tasks(semantic_on, panoptic_on, instance_on, semantic_output, "MaskFormer")
        if panoptic_on and not hasattr(metadata, "thing_dataset_id_to_contiguous_id"):
            raise ValueError(
                f"MaskFormer: panoptic inference needs 'thing_dataset_id_to_contiguous_id' in the "
                f"metadata of the test dataset {getattr(metadata, 'name', metadata)!r}; use a "
                f"panoptic dataset in DATASETS.TEST or set MODEL.MASK_FORMER.TEST.PANOPTIC_ON False"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_queries = num_queries
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.metadata = metadata
        self.size_divisibility = (
            size_divisibility if size_divisibility >= 0 else backbone.size_divisibility
        )
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.test_topk_per_image = test_topk_per_image
        self.semantic_output = semantic_output
        self.postprocess_at_network_resolution = postprocess_at_network_resolution
        self.chunk_elements = chunk_elements(postprocess_chunk_mb)
        self.inference_dtype = inference_dtype
        # Panoptic inference tells things from stuff by them, and instance inference keeps
        # only things, also with panoptic inference off (the published code filtered only with
        # it on: a panoptic model asked for instances alone gave stuff as instances).
        thing_ids = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
        self.thing_classes = set(thing_ids.values()) if thing_ids is not None else None

    @classmethod
    def from_config(cls, cfg):
        mf = cfg.MODEL.MASK_FORMER
        if mf.TEST.PRECISION not in _INFERENCE_DTYPES:
            raise ValueError(
                f"MODEL.MASK_FORMER.TEST.PRECISION={mf.TEST.PRECISION!r}: use one of "
                f"{sorted(_INFERENCE_DTYPES)}."
            )
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())

        matcher = HungarianMatcher(
            cost_class=mf.CLASS_WEIGHT,
            cost_mask=mf.MASK_WEIGHT,
            cost_dice=mf.DICE_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS,
        )
        weight_dict = {
            "loss_ce": mf.CLASS_WEIGHT, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT
        }
        if mf.DEEP_SUPERVISION:
            main_terms = list(weight_dict.items())
            weight_dict.update(
                {f"{k}_{i}": v for i in range(mf.DEC_LAYERS - 1) for k, v in main_terms}
            )
        criterion = SetCriterion(
            cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            matcher=matcher,
            weight_dict=weight_dict,
            eos_coef=mf.NO_OBJECT_WEIGHT,
            losses=["labels", "masks"],
            num_points=mf.TRAIN_NUM_POINTS,
            oversample_ratio=mf.OVERSAMPLE_RATIO,
            importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
        )
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": criterion,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "object_mask_threshold": mf.TEST.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": mf.TEST.OVERLAP_THRESHOLD,
            "metadata": _dataset_metadata(cfg),
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "sem_seg_postprocess_before_inference": mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "semantic_on": mf.TEST.SEMANTIC_ON,
            "instance_on": mf.TEST.INSTANCE_ON,
            "panoptic_on": mf.TEST.PANOPTIC_ON,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "semantic_output": mf.TEST.SEMANTIC_OUTPUT,
            "postprocess_at_network_resolution": mf.TEST.POSTPROCESS_AT_NETWORK_RESOLUTION,
            "postprocess_chunk_mb": mf.TEST.POSTPROCESS_CHUNK_MB,
            "inference_dtype": _INFERENCE_DTYPES[mf.TEST.PRECISION],
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def forward(self, batched_inputs):
        """See the class docstring for the input and output formats."""
        # To a GPU from pinned memory (the training loader's batches) the upload overlaps the
        # host's work; from pageable memory the host waits until the image is staged.
        to_gpu = self.device.type == "cuda"
        images = [x["image"].to(self.device, non_blocking=to_gpu) for x in batched_inputs]
        images = [(x - self.pixel_mean) / self.pixel_std for x in images]
        images = ImageList.from_tensors(images, self.size_divisibility)
        if self.training:
            outputs = self.sem_seg_head(self.backbone(images.tensor))
            targets = self.prepare_targets(batched_inputs, images)
            losses = self.criterion(outputs, targets)
            weights = self.criterion.weight_dict
            return {k: v * weights[k] for k, v in losses.items() if k in weights}
        return self.inference(self.predict(images.tensor), batched_inputs, images)

    def predict(self, images):
        """
        The network at inference, in ``inference_dtype``.

        Args:
            images: (B, 3, H, W) normalized images, padded to ``size_divisibility``.

        Returns:
            dict with "pred_logits" (B, Q, K + 1) and "pred_masks" (B, Q, H/4, W/4), float32.
        """
        if images.device.type == "cpu":
            # The convolutions (oneDNN) run 7-10% faster on channels-last (NHWC) images.
            images = images.contiguous(memory_format=torch.channels_last)
        if self.inference_dtype == torch.float32:
            return self.sem_seg_head(self.backbone(images), return_aux_outputs=False)
        # No cache of the cast weights: each is used once, and the cache would hold a copy of
        # them all until the end.
        with torch.autocast(self.device.type, dtype=self.inference_dtype, cache_enabled=False):
            outputs = self.sem_seg_head(self.backbone(images), return_aux_outputs=False)
        return {k: v.float() for k, v in outputs.items()}

    def prepare_targets(self, batched_inputs, images):
        """
        Returns:
            list[dict]: per image, "labels": (T,) int64 and "masks": (T, Hp, Wp) bool, the
            ground-truth masks zero-padded to the padded batch size (Hp, Wp).
        """
        padded_h, padded_w = images.tensor.shape[-2:]
        targets = []
        for i, x in enumerate(batched_inputs):
            if "instances" not in x:
                raise ValueError(
                    f"MaskFormer: training input {i} has no 'instances'; use a Mask2Former dataset "
                    f"mapper (INPUT.DATASET_MAPPER_NAME) that produces gt_classes and gt_masks"
                )
            gt = x["instances"].to(self.device)
            masks = gt.gt_masks
            if isinstance(masks, BitMasks):
                masks = masks.tensor
            elif not isinstance(masks, torch.Tensor):
                raise TypeError(
                    f"MaskFormer: instances.gt_masks of training input {i} is "
                    f"{type(masks).__name__}; it must be BitMasks or a (T, H, W) tensor "
                    f"(convert polygons in the dataset mapper)"
                )
            padded = masks.new_zeros((masks.shape[0], padded_h, padded_w), dtype=torch.bool)
            padded[:, : masks.shape[1], : masks.shape[2]] = masks
            targets.append({"labels": gt.gt_classes, "masks": padded})
        return targets

    def inference(self, outputs, batched_inputs, images):
        """
        Per-image results at the requested output sizes (see the class docstring), from the
        (Q, H/4, W/4) mask logits resized as Detectron2's ``sem_seg_postprocess`` does: to the
        padded input size, cropped to the image, resized to the output size, a chunk of
        queries at a time (mask2former/modeling/postprocessing.py).
        """
        padded_size = tuple(images.tensor.shape[-2:])
        labels = self.semantic_output == "labels"
        fast = self.postprocess_at_network_resolution
        semantic_at_output = semantic_at_output_size(
            self.semantic_on, self.panoptic_on, self.instance_on,
            self.sem_seg_postprocess_before_inference, fast,
        )
        options = dict(
            object_mask_threshold=self.object_mask_threshold,
            overlap_threshold=self.overlap_threshold,
            thing_classes=self.thing_classes,
            topk=self.test_topk_per_image,
            chunk_elements=self.chunk_elements,
        )
        processed_results = []
        for mask_cls, mask_logits, input_per_image, image_size in zip(
            outputs["pred_logits"], outputs["pred_masks"], batched_inputs, images.image_sizes
        ):
            output_size = (
                input_per_image.get("height", image_size[0]),
                input_per_image.get("width", image_size[1]),
            )
            masks = MaskLogits(
                mask_logits, padded_size, image_size, image_size if fast else output_size
            )
            result = postprocess(
                mask_cls, masks, semantic_on=semantic_at_output and not labels,
                panoptic_on=self.panoptic_on, instance_on=self.instance_on, **options,
            )
            if fast:
                result = resize_results(result, output_size, self.chunk_elements)
            if semantic_at_output and labels:
                result["sem_seg_labels"] = semantic_labels(mask_cls, masks, self.chunk_elements)
            elif self.semantic_on and not semantic_at_output:
                padded = MaskLogits(mask_logits, padded_size)
                scores = postprocess(mask_cls, padded, semantic_on=True, **options)["sem_seg"]
                scores = scores[:, : image_size[0], : image_size[1]]
                key = "sem_seg_labels" if labels else "sem_seg"
                result[key] = resize_semantic(scores, output_size, labels, self.chunk_elements)
            processed_results.append(result)
        return processed_results
