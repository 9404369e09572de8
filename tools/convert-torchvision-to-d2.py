#!/usr/bin/env python
"""
Convert a torchvision ResNet checkpoint to a Detectron2 model-zoo ``.pkl`` file.

    python tools/convert-torchvision-to-d2.py resnet101-63fe2227.pth R-101.pkl

The input is a state dict saved with ``torch.save(model.state_dict(), path)`` (the files
torchvision downloads), or a dict holding one under "state_dict" or "model". The output is a
pickle of ``{"model": {name: numpy array}, "__author__": "torchvision",
"matching_heuristics": True}`` with Detectron2's ResNet names (``stem.conv1``,
``res2.0.conv1.norm``, ``res3.0.shortcut``, ...). Dropped: the ImageNet classifier ``fc`` and
the BatchNorm ``num_batches_tracked`` counters (Detectron2's frozen BatchNorm has none).
Use it as MODEL.WEIGHTS with MODEL.RESNETS.STEM_TYPE "basic" and STRIDE_IN_1X1 False
(torchvision's layout), as the Mask2Former configs do.
"""
import argparse
import pickle
import re
import sys

import torch


def convert_name(name):
    """torchvision ResNet parameter name -> Detectron2 ResNet name; None for dropped entries."""
    if name.startswith("fc.") or name.endswith(".num_batches_tracked"):
        return None
    stage = re.match(r"layer(\d)\.", name)
    if stage:
        name = f"res{int(stage.group(1)) + 1}." + name[stage.end():]
    else:
        name = "stem." + name  # conv1, bn1
    name = re.sub(r"(^|\.)bn(\d)\.", r"\1conv\2.norm.", name)
    name = name.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    return name


def read_state_dict(path):
    """The tensors of a torchvision checkpoint, with a clear error for anything else."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{path}: expected a ResNet state dict (name -> tensor), as saved by "
            f"torch.save(model.state_dict(), path)"
        )
    if "conv1.weight" not in obj or "layer1.0.conv1.weight" not in obj:
        raise ValueError(f"{path}: not a torchvision ResNet state dict (no conv1 / layer1 weights)")
    return obj


def convert(state_dict):
    """torchvision ResNet state dict -> {Detectron2 name: numpy array}."""
    out = {}
    for name, value in state_dict.items():
        new = convert_name(name)
        if new is not None:
            out[new] = value.detach().cpu().numpy()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="torchvision ResNet checkpoint (.pth)")
    parser.add_argument("output", help="Detectron2 checkpoint to write (.pkl)")
    args = parser.parse_args(argv)
    model = convert(read_state_dict(args.input))
    with open(args.output, "wb") as f:
        pickle.dump({"model": model, "__author__": "torchvision", "matching_heuristics": True}, f)
    print(f"Wrote {len(model)} tensors to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
