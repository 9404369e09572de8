"""
Run Mask2Former models exported by ``tools/deploy/export_model.py`` with numpy and ONNX Runtime
alone (TorchScript exports need torch): no Detectron2, no training code, no native op.

    from mask2former.deploy import ExportedMask2Former
    runner = ExportedMask2Former("model.onnx")
    results = runner(image_bgr)    # {"sem_seg", "panoptic_seg", "instances"} as numpy

The post-processing's memory grows with the outputs, not with queries x pixels (see
:mod:`mask2former.deploy.postprocessing`), so that large photos run in bounded memory.

This subpackage imports neither torch nor onnxruntime at import time.
"""
from .deploy_info import DeployInfo, InferenceSettings, InputPolicy
from .postprocessing import (
    inference_results,
    instance_inference,
    panoptic_inference,
    semantic_inference,
)
from .runner import ExportedMask2Former

__all__ = [
    "ExportedMask2Former",
    "DeployInfo",
    "InferenceSettings",
    "InputPolicy",
    "inference_results",
    "instance_inference",
    "panoptic_inference",
    "semantic_inference",
]
