"""
Export of Mask2Former models to ONNX and TorchScript (``tools/deploy/export_model.py``), and the
exported models behind MaskFormer's interface for Detectron2's evaluators and the demo. The
exported models run without this subpackage: see :mod:`mask2former.deploy`.
"""
from .deploy_info import MIN_IMAGE_SIZE, build_deploy_info, inference_settings_from_config
from .exported_maskformer import EXPORTED_MODEL_SUFFIXES, ExportedMaskFormer, is_exported_model
from .exporters import (
    EXPORT_METHODS,
    FORMATS,
    MODEL_FILE_NAMES,
    ONNX_EXPORTERS,
    check_exportable,
    export_model,
)
from .wrapper import ExportableMaskFormer

__all__ = [
    "ExportableMaskFormer",
    "ExportedMaskFormer",
    "EXPORTED_MODEL_SUFFIXES",
    "EXPORT_METHODS",
    "FORMATS",
    "MIN_IMAGE_SIZE",
    "MODEL_FILE_NAMES",
    "ONNX_EXPORTERS",
    "build_deploy_info",
    "check_exportable",
    "export_model",
    "inference_settings_from_config",
    "is_exported_model",
]
