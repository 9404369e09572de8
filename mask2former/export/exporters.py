"""
Export a MaskFormer to ONNX or TorchScript, with its deploy info inside the model file.

TorchScript: ``torch.jit.trace``. ONNX: one of PyTorch's two exporters (``ONNX_EXPORTERS``), opset
18. With torch 2.14.1, onnx 1.23, onnxruntime 1.32 and onnxscript 0.7 both give graphs that serve
any image size and batch and equal the PyTorch outputs (to about 1e-5), and ONNX Runtime runs
them equally fast. The default is the TorchScript-based exporter (``dynamo=False``): it exports
in a fifth to a third of the time (R50: seconds instead of a minute) and traces with the same
tracer as the TorchScript format. It is deprecated since PyTorch 2.9, so the torch.export-based
one (``dynamo=True``, which needs onnxscript) is ready beside it: ``ExportableMaskFormer`` is
written for it (no size is specialized; torch.export checks that the graph holds for every size
it declares).

Both graphs are made of standard operators only: while exporting, MSDeformAttn runs its PyTorch
implementation (``grid_sample``: ONNX GridSample), and the masked attention is PyTorch's
attention with a float mask added to the scores.
"""
import io
import logging
import os

import torch

from ..deploy.backends import torchscript_extra_files
from ..deploy.deploy_info import DEPLOY_INFO_KEY
from .deploy_info import MIN_IMAGE_SIZE
from .wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableMaskFormer

__all__ = [
    "FORMATS",
    "EXPORT_METHODS",
    "ONNX_EXPORTERS",
    "MODEL_FILE_NAMES",
    "check_exportable",
    "export_model",
]

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
EXPORT_METHODS = ("tracing", "scripting")
# PyTorch's ONNX exporters: "torchscript" (torch.onnx.export(dynamo=False)), "dynamo" (True).
ONNX_EXPORTERS = ("torchscript", "dynamo")
MODEL_FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts"}
ONNX_OPSET = 18

_SCRIPTING_UNSUPPORTED = (
    "--export-method scripting is not supported: torch.jit.script compiles each module's Python "
    "source, and it rejects Detectron2's ResNet (a Python list of stages: \"Module 'ResNet' has "
    "no attribute 'stages'\") and Mask2Former's decoder layers (their residual branches are "
    "nested functions and lambdas). Use --export-method tracing: its ONNX and TorchScript models "
    "serve every image size as well."
)


def check_exportable(cfg, model, export_method):
    """
    Raise ValueError saying why and what to do when ``model`` (built from ``cfg``) cannot be
    exported with ``export_method``.
    """
    from ..maskformer_model import MaskFormer

    if export_method == "scripting":
        raise ValueError(_SCRIPTING_UNSUPPORTED)
    if export_method not in EXPORT_METHODS:
        raise ValueError(f"unknown export method {export_method!r}; use one of {EXPORT_METHODS}")
    if not isinstance(model, MaskFormer):
        raise ValueError(
            f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} builds a "
            f"{type(model).__name__}; only Mask2Former's image model (MaskFormer) is exported. "
            "Use a Mask2Former config (MODEL.META_ARCHITECTURE: MaskFormer)."
        )
    if cfg.TEST.AUG.ENABLED:
        raise ValueError(
            "TEST.AUG.ENABLED is True: test-time augmentation runs the model on several resized "
            "and flipped copies of each image and is not part of an exported model. Export "
            "with TEST.AUG.ENABLED False (the exported model then gives the results without "
            "augmentation)."
        )


def _export_onnx_dynamo(wrapper, image):
    batch = torch.export.Dim("batch", min=1)
    height = torch.export.Dim("height", min=MIN_IMAGE_SIZE)
    width = torch.export.Dim("width", min=MIN_IMAGE_SIZE)
    # A batch of two: torch.export specializes a dimension of size 1.
    images = image.float().unsqueeze(0).expand(2, -1, -1, -1).contiguous()
    program = torch.onnx.export(
        wrapper, (images,), dynamo=True, opset_version=ONNX_OPSET,
        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
        dynamic_shapes={"image": {0: batch, 2: height, 3: width}}, external_data=False,
    )
    return program.model_proto


def _export_onnx_torchscript(wrapper, image):
    import onnx

    buffer = io.BytesIO()
    torch.onnx.export(
        wrapper, (image.float()[None],), buffer, dynamo=False, opset_version=ONNX_OPSET,
        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
        dynamic_axes={
            "image": {0: "batch", 2: "height", 3: "width"},
            "class_logits": {0: "batch"},
            "mask_logits": {0: "batch", 2: "height", 3: "width"},
        },
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_onnx(wrapper, image, path, info_json, onnx_exporter):
    import onnx

    export = _export_onnx_dynamo if onnx_exporter == "dynamo" else _export_onnx_torchscript
    model = export(wrapper, image)
    entry = model.metadata_props.add()
    entry.key, entry.value = DEPLOY_INFO_KEY, info_json
    onnx.save(model, path)


def _export_torchscript(wrapper, image, path, info_json):
    traced = torch.jit.trace(wrapper, (image.float()[None],), check_trace=False)
    torch.jit.save(traced, path, _extra_files=torchscript_extra_files(info_json))



def export_model(model, image, export_format, output_dir, info, onnx_exporter="torchscript"):
    """
    Export ``model`` and write it to ``output_dir/MODEL_FILE_NAMES[export_format]``.

    Args:
        model: a :class:`MaskFormer` in eval mode.
        image: (3, H, W) example image (the model's input format and test-time size), H and
            W >= MIN_IMAGE_SIZE; the export serves other sizes too.
        export_format: one of FORMATS.
        output_dir: folder of the model file (created if needed).
        info: the :class:`DeployInfo` stored in the model file.
        onnx_exporter: one of ONNX_EXPORTERS (see the module docstring).

    Returns:
        path of the model file.
    """
    if export_format not in FORMATS:
        raise ValueError(f"unknown format {export_format!r}; use one of {FORMATS}")
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ValueError(f"unknown ONNX exporter {onnx_exporter!r}; use one of {ONNX_EXPORTERS}")
    if min(image.shape[-2:]) < MIN_IMAGE_SIZE:
        raise ValueError(
            f"the example image is {tuple(image.shape[-2:])}; give one of at least "
            f"{MIN_IMAGE_SIZE} x {MIN_IMAGE_SIZE} pixels"
        )
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, MODEL_FILE_NAMES[export_format])
    wrapper = ExportableMaskFormer(model).eval()
    logger.info(f"Exporting to {export_format} with an example image of {tuple(image.shape)}")
    image = image.to(model.device)
    with torch.no_grad():
        if export_format == "onnx":
            _export_onnx(wrapper, image, path + ".tmp", info.to_json(), onnx_exporter)
        else:
            _export_torchscript(wrapper, image, path + ".tmp", info.to_json())
    os.replace(path + ".tmp", path)
    return path
