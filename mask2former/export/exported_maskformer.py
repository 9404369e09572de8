"""
An exported model behind MaskFormer's interface, so that Detectron2's evaluators
(``tools/deploy/export_model.py --run-eval``) and the demo run it as they run the PyTorch model.
"""
import torch
from detectron2.structures import Boxes, Instances

from ..deploy.postprocessing import inference_results
from ..deploy.runner import ExportedMask2Former
from .deploy_info import inference_settings_from_config

__all__ = ["ExportedMaskFormer", "EXPORTED_MODEL_SUFFIXES", "is_exported_model"]

# File name endings of exported models (tools/deploy/export_model.py writes model.onnx / model.ts).
EXPORTED_MODEL_SUFFIXES = (".onnx", ".ts")


def is_exported_model(path):
    """Whether MODEL.WEIGHTS names an exported model rather than a checkpoint."""
    return str(path).endswith(EXPORTED_MODEL_SUFFIXES)


def _check_config_matches(cfg, info, path):
    """Refuse an exported model whose fixed parts differ from the config's, naming both."""
    expected = (cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1)
    exported = (info.num_queries, info.num_classes + 1)
    if exported != expected:
        raise ValueError(
            f"{path} does not fit the config: the model outputs class_logits of shape (B, "
            f"{exported[0]}, {exported[1]}) ({info.num_classes} classes + no object), the config "
            f"(MODEL.MASK_FORMER.NUM_OBJECT_QUERIES {expected[0]}, MODEL.SEM_SEG_HEAD.NUM_CLASSES "
            f"{expected[1] - 1}) needs (B, {expected[0]}, {expected[1]}); use the config the "
            "model was exported with, or export it again with this one"
        )
    fixed = {
        "INPUT.FORMAT": (info.input.input_format, cfg.INPUT.FORMAT),
        "MODEL.PIXEL_MEAN": (info.input.pixel_mean, [float(v) for v in cfg.MODEL.PIXEL_MEAN]),
        "MODEL.PIXEL_STD": (info.input.pixel_std, [float(v) for v in cfg.MODEL.PIXEL_STD]),
    }
    for key, (exported_value, config_value) in fixed.items():
        if exported_value != config_value:
            raise ValueError(
                f"{path} was exported with {key} {exported_value}, the config has "
                f"{config_value}; this is fixed in the exported graph: use the config the model "
                "was exported with, or export it again with this one"
            )


class ExportedMaskFormer:
    """
    Runs an exported model (ONNX Runtime or TorchScript) like ``MaskFormer`` in eval mode:
    ``model(batched_inputs)`` takes the same list of input dicts ("image" (C, H, W) after the
    test-time resize, optional "height", "width") and returns the same list of result dicts
    ("sem_seg" or "sem_seg_labels", "panoptic_seg", "instances" as Detectron2 tensors and
    :class:`Instances`).

    The inference settings (tasks, thresholds, detections per image, semantic output,
    post-processing at the network resolution, chunk size: ``MODEL.MASK_FORMER.TEST``) come from
    the config, as for the PyTorch model, and mean what they mean there; the config must agree
    with the exported graph on the class count, the queries, the input format and the pixel
    normalization.

    Attributes:
        runner (ExportedMask2Former): the exported model.
        metadata: the config's dataset metadata (class names and colors for drawing).
    """

    def __init__(self, cfg, path=None, num_threads=None, runner=None):
        """
        Args:
            cfg: the config of the exported model.
            path: the exported model file; default ``cfg.MODEL.WEIGHTS``.
            num_threads: ONNX Runtime intra-op threads (None: one per core).
            runner: an :class:`ExportedMask2Former` of that file already loaded, to share
                (e.g. by models of the same file with other inference settings).
        """
        path = path or cfg.MODEL.WEIGHTS
        self.runner = runner or ExportedMask2Former(path, num_threads=num_threads)
        _check_config_matches(cfg, self.runner.info, path)
        self.settings, self.metadata = inference_settings_from_config(cfg)

    def __call__(self, batched_inputs):
        return [self._inference(x) for x in batched_inputs]

    def _inference(self, input_dict):
        image = input_dict["image"]
        class_logits, mask_logits = self.runner.head_outputs(image.cpu().numpy())
        height = input_dict.get("height", image.shape[-2])
        width = input_dict.get("width", image.shape[-1])
        results = inference_results(class_logits[0], mask_logits[0], height, width,
                                    self.settings)
        return _to_detectron2(results, (height, width))


def _to_detectron2(results, image_size):
    """numpy results (mask2former.deploy.postprocessing) -> MaskFormer's output dict."""
    out = {}
    for key in ("sem_seg", "sem_seg_labels"):
        if key in results:
            out[key] = torch.from_numpy(results[key])
    if "panoptic_seg" in results:
        panoptic_seg, segments_info = results["panoptic_seg"]
        out["panoptic_seg"] = (torch.from_numpy(panoptic_seg), segments_info)
    if "instances" in results:
        found = results["instances"]
        instances = Instances(image_size)
        instances.pred_masks = torch.from_numpy(found["pred_masks"])
        instances.pred_boxes = Boxes(torch.from_numpy(found["pred_boxes"]))
        instances.scores = torch.from_numpy(found["scores"])
        instances.pred_classes = torch.from_numpy(found["pred_classes"])
        out["instances"] = instances
    return out
