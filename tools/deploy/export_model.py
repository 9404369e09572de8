#!/usr/bin/env python
"""
Export a Mask2Former model to ONNX or TorchScript, as Detectron2's tools/deploy/export_model.py:

    python tools/deploy/export_model.py --config-file X.yaml --format onnx \
        --export-method tracing [--sample-image a.jpg] --output DIR [--run-eval] \
        MODEL.WEIGHTS model_final.pth

Writes DIR/model.onnx (or DIR/model.ts) carrying what is needed to run it (input size policy,
pixel mean and std, inference settings, class names and thing ids; also written to
DIR/deploy_info.json), and DIR/config.yaml. The exported graph takes (B, 3, H, W) images of any
size (H, W >= 33) and returns the class logits and the mask logits at the image's size; run it
with ``mask2former.deploy.ExportedMask2Former`` (numpy + onnxruntime) or
``demo/demo.py --opts MODEL.WEIGHTS DIR/model.onnx``.

--run-eval evaluates the exported model on DATASETS.TEST with train_net.py's evaluators and
prints the same tables as ``train_net.py --eval-only``.
"""
import argparse
import logging
import os
import sys

import numpy as np
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

import detectron2.data.transforms as T  # noqa: E402
from detectron2.data import build_detection_test_loader  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from mask2former.checkpoint import MaskFormerCheckpointer  # noqa: E402
from mask2former.config import get_maskformer2_cfg  # noqa: E402
from mask2former.deploy import ExportedMask2Former  # noqa: E402
from mask2former.export import (  # noqa: E402
    EXPORT_METHODS,
    FORMATS,
    ONNX_EXPORTERS,
    ExportableMaskFormer,
    ExportedMaskFormer,
    build_deploy_info,
    check_exportable,
    export_model,
)

logger = logging.getLogger("mask2former.export")

# Largest difference of the exported model's outputs from the PyTorch model's on the example
# image that passes without a warning.
OUTPUT_TOLERANCE = 1e-3


def get_parser():
    parser = argparse.ArgumentParser(description="Export a Mask2Former model for deployment.")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="exported format")
    parser.add_argument("--export-method", choices=EXPORT_METHODS, default="tracing",
                        help="how the graph is obtained (scripting is not supported: it says why)")
    parser.add_argument("--onnx-exporter", choices=ONNX_EXPORTERS, default="torchscript",
                        help="PyTorch's ONNX exporter: TorchScript-based (fast; deprecated by "
                        "PyTorch) or torch.export-based (dynamo; slower, needs onnxscript)")
    parser.add_argument("--sample-image", metavar="FILE",
                        help="example image to trace with (default: the first of DATASETS.TEST)")
    parser.add_argument("--output", default="./output", help="folder of the exported model")
    parser.add_argument("--dataset", metavar="FILE",
                        help="dataset file (DATASETS.FILE) whose classes the model carries and "
                        "whose val split --run-eval evaluates; a run's config.yaml names it")
    parser.add_argument("--run-eval", action="store_true",
                        help="evaluate the exported model on DATASETS.TEST")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config options as KEY VALUE pairs")
    return parser


def sample_image(cfg, path):
    """(3, H, W) uint8 example image after the test-time resize, from ``path`` or DATASETS.TEST."""
    if path:
        image = read_image(path, format=cfg.INPUT.FORMAT)
        resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        image = resize.get_transform(image).apply_image(image)
        return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if not cfg.DATASETS.TEST:
        raise SystemExit("DATASETS.TEST is empty: give an example image with --sample-image")
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    return next(iter(loader))[0]["image"]


def check_outputs(model, path, image):
    """Run both models on the example image; warn when their outputs differ."""
    with torch.no_grad():
        expected = ExportableMaskFormer(model).eval()(image.float()[None].to(model.device))
    actual = ExportedMask2Former(path).head_outputs(image.numpy())
    difference = max(float(np.abs(e.cpu().numpy() - a).max()) for e, a in zip(expected, actual))
    log = logger.warning if difference > OUTPUT_TOLERANCE else logger.info
    log(f"Largest difference of the exported outputs from PyTorch's on the example image: "
        f"{difference:.2e}")


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger(name="mask2former")
    setup_logger()
    opts = list(args.opts) + (["DATASETS.FILE", args.dataset] if args.dataset else [])
    cfg = get_maskformer2_cfg(args.config_file, opts)
    cfg.freeze()

    model = build_model(cfg).eval()
    try:
        check_exportable(cfg, model, args.export_method)
    except ValueError as error:
        raise SystemExit(f"Cannot export {args.config_file}: {error}")
    if cfg.MODEL.WEIGHTS:
        MaskFormerCheckpointer(model, require_matching_shapes=True).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting a model with random weights")

    image = sample_image(cfg, args.sample_image)
    info = build_deploy_info(cfg, model, args.format, tuple(image.shape[-2:]))
    path = export_model(model, image, args.format, args.output, info, args.onnx_exporter)
    with open(os.path.join(args.output, "deploy_info.json"), "w") as f:
        f.write(info.to_json())
    with open(os.path.join(args.output, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    logger.info(f"Exported {path} (and deploy_info.json, config.yaml beside it)")
    check_outputs(model, path, image)

    if args.run_eval:
        from train_net import Trainer

        del model
        return Trainer.test(cfg, ExportedMaskFormer(cfg, path))
    return None


if __name__ == "__main__":
    main()
