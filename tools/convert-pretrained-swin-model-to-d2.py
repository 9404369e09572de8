#!/usr/bin/env python
"""
Convert an official Swin Transformer release checkpoint to a Detectron2 ``.pkl`` file.

    python tools/convert-pretrained-swin-model-to-d2.py swin_tiny_patch4_window7_224.pth \\
        swin_tiny_patch4_window7_224.pkl

The input is the ImageNet classification checkpoint of the Swin release, ``{"model": state
dict}``. Its names are those of D2SwinTransformer (``patch_embed``, ``layers.{i}.blocks.{j}``,
``layers.{i}.downsample``); the entries only the classifier uses are dropped: the final
``norm`` and ``head``, and the ``attn_mask`` buffers of shifted blocks (D2SwinTransformer
computes the mask for each input size). The output is a pickle of ``{"model": {name: numpy
array}, "__author__": "Swin Transformer release", "matching_heuristics": True}``; the
per-stage output norms ``norm0``..``norm3`` of the backbone are not in it and start from
their initialization.
"""
import argparse
import pickle
import sys

import torch


def is_classifier_only(name):
    """Entries of the classification model that D2SwinTransformer does not have."""
    return name.startswith(("head.", "norm.")) or name.endswith(".attn_mask")


def read_state_dict(path):
    """The tensors of a Swin release checkpoint, with a clear error for anything else."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a Swin checkpoint {{'model': state dict}} of tensors")
    if "patch_embed.proj.weight" not in obj:
        raise ValueError(f"{path}: not a Swin Transformer checkpoint (no patch_embed.proj.weight)")
    return obj


def convert(state_dict):
    """Swin release state dict -> {D2SwinTransformer name: numpy array}."""
    return {
        name: value.detach().cpu().numpy()
        for name, value in state_dict.items()
        if not is_classifier_only(name)
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="Swin release checkpoint (.pth)")
    parser.add_argument("output", help="Detectron2 checkpoint to write (.pkl)")
    args = parser.parse_args(argv)
    model = convert(read_state_dict(args.input))
    with open(args.output, "wb") as f:
        pickle.dump(
            {"model": model, "__author__": "Swin Transformer release", "matching_heuristics": True},
            f,
        )
    print(f"Wrote {len(model)} tensors to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
