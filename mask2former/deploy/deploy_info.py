"""
What an exported Mask2Former needs beside its graph to be run: the input size policy, the pixel
normalization it does inside, the inference settings and the dataset metadata.

``tools/deploy/export_model.py`` writes it as JSON into the model file itself (ONNX: the model's
``metadata_props`` entry ``"mask2former"``; TorchScript: the extra file ``mask2former.json`` of the
archive), so a model file is never separated from it, and beside the model as ``deploy_info.json``
for people to read.
"""
import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Dict, List, Optional

from .postprocessing import DEFAULT_CHUNK_MB

__all__ = [
    "DeployInfo",
    "InferenceSettings",
    "InputPolicy",
    "DEPLOY_INFO_KEY",
    "FORMAT_VERSION",
    "SEMANTIC_OUTPUTS",
    "check_inference_tasks",
]

# The ONNX metadata_props key (and the TorchScript extra file "<key>.json") holding the JSON.
DEPLOY_INFO_KEY = "mask2former"
# Version of the JSON layout below; readers refuse other versions. Fields added later with a
# default (the post-processing options of InferenceSettings) keep the version: files without
# them read as their defaults, and readers that predate them ignore them.
FORMAT_VERSION = 1
# Values of MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT: the (K, H, W) "sem_seg" scores, or the
# (H, W) "sem_seg_labels" map.
SEMANTIC_OUTPUTS = ("scores", "labels")


def check_inference_tasks(semantic_on, panoptic_on, instance_on, semantic_output, owner):
    """
    Refuse inference settings that ``MaskFormer`` and the runner of exported models cannot
    follow, naming the config key; ``owner`` (e.g. "MaskFormer") begins the message.
    """
    if semantic_output not in SEMANTIC_OUTPUTS:
        raise ValueError(
            f"{owner}: MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT is {semantic_output!r}; "
            f"use 'scores' or 'labels'"
        )
    if not (semantic_on or panoptic_on or instance_on):
        raise ValueError(
            f"{owner}: no inference task is on; set one of MODEL.MASK_FORMER.TEST."
            "SEMANTIC_ON / PANOPTIC_ON / INSTANCE_ON to True"
        )


@dataclass
class InputPolicy:
    """
    How images become inputs of the exported graph (Detectron2's test-time policy).

    Attributes:
        input_format: channel order of the graph's input, "RGB" or "BGR" (``INPUT.FORMAT``).
        min_size_test: resize so the shorter side is this long (``INPUT.MIN_SIZE_TEST``;
            0: no resize) ...
        max_size_test: ... unless the longer side would exceed this (``INPUT.MAX_SIZE_TEST``).
        size_divisibility: the graph pads its input to a multiple of this (inside the graph).
        pixel_mean, pixel_std: per-channel normalization (inside the graph), in input_format
            order.
        export_size: (H, W) of the example image the graph was traced with.
        min_image_size: smallest height and width the graph was exported for; any larger size
            works.
    """

    input_format: str
    min_size_test: int
    max_size_test: int
    size_divisibility: int
    pixel_mean: List[float]
    pixel_std: List[float]
    export_size: List[int]
    min_image_size: int


@dataclass
class InferenceSettings:
    """
    The settings of MaskFormer's inference (mask2former/maskformer_model.py), applied to the
    graph's outputs by :mod:`mask2former.deploy.postprocessing`.

    Attributes:
        semantic_on, panoptic_on, instance_on: which results are computed
            (``MODEL.MASK_FORMER.TEST.{SEMANTIC,PANOPTIC,INSTANCE}_ON``).
        object_mask_threshold, overlap_threshold: panoptic thresholds
            (``MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD`` / ``OVERLAP_THRESHOLD``).
        test_topk_per_image: instances per image (``TEST.DETECTIONS_PER_IMAGE``).
        sem_seg_postprocess_before_inference: resize the mask logits to the output size
            before the semantic inference (``MODEL.MASK_FORMER.TEST.
            SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE``; always so with panoptic or instance on).
        thing_ids: contiguous ids of the thing classes, which panoptic inference tells from stuff
            and instance inference keeps; None (datasets without thing classes, e.g. semantic
            ones): instance inference keeps every class.
        semantic_output: "scores" (result "sem_seg" (K, H, W)) or "labels" ("sem_seg_labels"
            (H, W), their argmax made without them) (``MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT``).
        postprocess_at_network_resolution: post-process at the input image's size and resize
            only the results to the output size (``MODEL.MASK_FORMER.TEST.
            POSTPROCESS_AT_NETWORK_RESOLUTION``).
        postprocess_chunk_mb: memory (MiB) of one chunk of mask logits resized to the output
            size (``MODEL.MASK_FORMER.TEST.POSTPROCESS_CHUNK_MB``).
    """

    semantic_on: bool
    panoptic_on: bool
    instance_on: bool
    object_mask_threshold: float
    overlap_threshold: float
    test_topk_per_image: int
    sem_seg_postprocess_before_inference: bool
    thing_ids: Optional[List[int]]
    semantic_output: str = "scores"
    postprocess_at_network_resolution: bool = False
    postprocess_chunk_mb: float = DEFAULT_CHUNK_MB

    def __post_init__(self):
        check_inference_tasks(self.semantic_on, self.panoptic_on, self.instance_on,
                              self.semantic_output, "inference settings")


@dataclass
class DeployInfo:
    """
    Everything an exported model carries beside its graph.

    Attributes:
        format: "onnx" or "torchscript".
        num_classes: K; the graph outputs class_logits (B, Q, K + 1) and mask_logits
            (B, Q, H, W).
        num_queries: Q.
        device: device the model was exported on (a TorchScript trace runs there).
        input: :class:`InputPolicy`.
        inference: :class:`InferenceSettings`.
        metadata: dataset metadata (Detectron2's ``MetadataCatalog`` entry of the test set):
            "name", "stuff_classes" / "thing_classes" (class names by contiguous id),
            "stuff_colors" / "thing_colors", and "thing_dataset_id_to_contiguous_id" /
            "stuff_dataset_id_to_contiguous_id" as lists of [dataset id, contiguous id] pairs;
            each key only where the dataset has it.
    """

    format: str
    num_classes: int
    num_queries: int
    device: str
    input: InputPolicy
    inference: InferenceSettings
    metadata: Dict

    def to_json(self):
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text, source):
        """Parse :meth:`to_json`'s output; ``source`` (a file name) names bad input in errors."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: its Mask2Former deploy info is not JSON ({error})")
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source}: deploy info format version {version!r}, this runner reads version "
                f"{FORMAT_VERSION}; export the model again with this version's "
                "tools/deploy/export_model.py"
            )
        try:
            data["input"] = _from_dict(InputPolicy, data["input"])
            data["inference"] = _from_dict(InferenceSettings, data["inference"])
            return _from_dict(cls, data)
        except (KeyError, TypeError) as error:
            raise ValueError(f"{source}: incomplete Mask2Former deploy info ({error})")
        except ValueError as error:
            raise ValueError(f"{source}: {error}")

    def class_names(self):
        """Names of the K classes by contiguous id (stuff_classes list every class)."""
        return self.metadata.get("stuff_classes") or self.metadata.get("thing_classes")


def _from_dict(cls, data):
    required = [f.name for f in fields(cls) if f.default is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise KeyError(f"{cls.__name__} lacks {missing}")
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
