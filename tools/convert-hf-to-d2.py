#!/usr/bin/env python
"""
Convert a Hugging Face transformers ``Mask2FormerForUniversalSegmentation`` checkpoint (Swin
backbone) to this project's ``.pth`` and the matching Detectron2 config.

    python tools/convert-hf-to-d2.py INPUT OUTPUT.pth [--base-config CONFIG.yaml]

INPUT is a local folder as ``save_pretrained`` writes it, or as downloaded from the Hub:
``config.json`` and the weights (``model.safetensors``, sharded ``model-*.safetensors`` with
their ``model.safetensors.index.json``, or ``pytorch_model.bin``); or one weights file with
``config.json`` beside it. Nothing is downloaded. The tool writes OUTPUT.pth (``{"model": state
dict}``, the published Mask2Former names) and OUTPUT.yaml, a full config whose MODEL.WEIGHTS is
OUTPUT.pth, for ``train_net.py --config-file OUTPUT.yaml --eval-only`` or ``demo/demo.py``.

The architecture (Swin sizes, widths, queries, layers, classes) comes from ``config.json``;
data, inference outputs and thresholds from --base-config: by default the published Swin-T
config of the dataset with that many classes (133: COCO panoptic, 80: COCO instance, 150: ADE20K
semantic, 19: Cityscapes semantic, 8: Cityscapes instance, 65: Mapillary Vistas semantic); give
the config of your task otherwise (e.g. ADE20K or Cityscapes panoptic, or your own dataset).
Pixel mean and std come from ``preprocessor_config.json`` when the folder has one. Every weight
of the checkpoint is placed (the Swin query / key / value and the decoder's self-attention
projections are concatenated into one input projection); anything unknown, missing or of
another shape is an error. The test (tests/test_convert_hf.py) checks that the converted model
gives the class and mask logits of the transformers model.

Where transformers computes something differently from the published Mask2Former, the
converted model computes as published (it is this project's model):
- Preprocessing: transformers' image processor resizes every image to sides that are multiples
  of 32 (changing its aspect ratio slightly); the published model keeps the aspect ratio and
  pads to a multiple of 32 (MODEL.MASK_FORMER.SIZE_DIVISIBILITY).
- Post-processing: transformers' ``post_process_*_segmentation`` first resizes the mask logits
  to a fixed 384 x 384, then to the target size; by default it keeps queries with score > 0.5
  and does not merge the segments of a stuff class (``label_ids_to_fuse``). The published
  inference upsamples the logits to the padded input size, crops and resizes them to the output
  size, uses the config's thresholds (MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD: 0.8 for the
  published panoptic models) and merges stuff segments of one class. Final results can
  therefore differ from transformers' while the network outputs agree.
- Swin windows: transformers versions whose SwinBackbone lacks ``always_partition`` shrink the
  window and drop the shift on feature maps no larger than the window (e.g. the 1/32 map of
  images up to 224 pixels); the published backbone always uses WINDOW_SIZE windows with the
  cyclic shift, padding the map. Current versions (``always_partition=True``) agree.
transformers supports only Swin backbones for Mask2Former; other backbones are refused.
"""
import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

logger = logging.getLogger("convert-hf-to-d2")

# Number of classes -> the published config of that dataset and task (Swin-T where published).
DEFAULT_BASE_CONFIGS = {
    133: "configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml",
    80: "configs/coco/instance-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml",
    150: "configs/ade20k/semantic-segmentation/swin/maskformer2_swin_tiny_bs16_160k.yaml",
    19: "configs/cityscapes/semantic-segmentation/swin/maskformer2_swin_tiny_bs16_90k.yaml",
    8: "configs/cityscapes/instance-segmentation/swin/maskformer2_swin_tiny_bs16_90k.yaml",
    65: "configs/mapillary-vistas/semantic-segmentation/swin/"
        "maskformer2_swin_large_IN21k_384_bs16_300k.yaml",
}

_SWIN = r"model\.pixel_level_module\.encoder\.(?:swin\.)?"
_BLOCK = _SWIN + r"encoder\.layers\.(\d+)\.blocks\.(\d+)\."
_PIXEL = r"model\.pixel_level_module\.decoder\."
_DECODER = r"model\.transformer_module\."
_LAYER = _DECODER + r"decoder\.layers\.(\d+)\."
_PARAM = r"(weight|bias)"
_NAMED_PARAM = r"(?P<param>weight|bias)"
# (transformers name pattern, our name). Names of files written by transformers 4.x and 5.x
# (5.x renamed some Swin modules in memory; its save_pretrained writes the 4.x names). A
# ``(?P<qkv>...)`` group marks the query, key or value third of a concatenated projection.
RULES = [
    # Swin backbone
    (_SWIN + r"embeddings\.patch_embeddings\.projection\." + _PARAM,
     r"backbone.patch_embed.proj.\1"),
    (_SWIN + r"embeddings\.norm\." + _PARAM, r"backbone.patch_embed.norm.\1"),
    (_BLOCK + r"layernorm_before\." + _PARAM, r"backbone.layers.\1.blocks.\2.norm1.\3"),
    (_BLOCK + r"layernorm_after\." + _PARAM, r"backbone.layers.\1.blocks.\2.norm2.\3"),
    (_BLOCK + r"attention\.(?:self\.(?P<qkv>query|key|value)|(?P<qkv5>q|k|v)_proj)\."
     + _NAMED_PARAM,
     r"backbone.layers.\1.blocks.\2.attn.qkv.\g<param>"),
    (_BLOCK + r"attention\.(?:self\.|relative_position_bias\.)relative_position_bias_table",
     r"backbone.layers.\1.blocks.\2.attn.relative_position_bias_table"),
    (_BLOCK + r"attention\.(?:output\.dense|o_proj)\." + _PARAM,
     r"backbone.layers.\1.blocks.\2.attn.proj.\3"),
    (_BLOCK + r"(?:intermediate\.dense|mlp\.fc1)\." + _PARAM,
     r"backbone.layers.\1.blocks.\2.mlp.fc1.\3"),
    (_BLOCK + r"(?:output\.dense|mlp\.fc2)\." + _PARAM, r"backbone.layers.\1.blocks.\2.mlp.fc2.\3"),
    (_SWIN + r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)",
     r"backbone.layers.\1.downsample.\2.\3"),
    (_SWIN + r"hidden_states_norms\.stage(\d)\." + _PARAM, lambda m: (
        f"backbone.norm{int(m.group(1)) - 1}.{m.group(2)}")),
    # pixel decoder
    (_PIXEL + r"level_embed", r"sem_seg_head.pixel_decoder.transformer.level_embed"),
    (_PIXEL + r"input_projections\.(\d+)\.([01])\." + _PARAM,
     r"sem_seg_head.pixel_decoder.input_proj.\1.\2.\3"),
    (_PIXEL + r"encoder\.layers\.(\d+)\.self_attn\.(\w+)\." + _PARAM,
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.self_attn.\2.\3"),
    (_PIXEL + r"encoder\.layers\.(\d+)\.self_attn_layer_norm\." + _PARAM,
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.norm1.\2"),
    (_PIXEL + r"encoder\.layers\.(\d+)\.fc([12])\." + _PARAM,
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.linear\2.\3"),
    (_PIXEL + r"encoder\.layers\.(\d+)\.final_layer_norm\." + _PARAM,
     r"sem_seg_head.pixel_decoder.transformer.encoder.layers.\1.norm2.\2"),
    (_PIXEL + r"mask_projection\." + _PARAM, r"sem_seg_head.pixel_decoder.mask_features.\1"),
    (_PIXEL + r"(adapter|layer)_(\d+)\.0\.weight", r"sem_seg_head.pixel_decoder.\1_\2.weight"),
    (_PIXEL + r"(adapter|layer)_(\d+)\.1\." + _PARAM, r"sem_seg_head.pixel_decoder.\1_\2.norm.\3"),
    # transformer decoder
    (_DECODER + r"queries_embedder\.weight", r"sem_seg_head.predictor.query_embed.weight"),
    (_DECODER + r"queries_features\.weight", r"sem_seg_head.predictor.query_feat.weight"),
    (_DECODER + r"level_embed\.weight", r"sem_seg_head.predictor.level_embed.weight"),
    (_DECODER + r"input_projections\.(\d+)\." + _PARAM, r"sem_seg_head.predictor.input_proj.\1.\2"),
    (_LAYER + r"cross_attn\.(in_proj_weight|in_proj_bias)",
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.multihead_attn.\2"),
    (_LAYER + r"cross_attn\.out_proj\." + _PARAM,
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.multihead_attn.out_proj.\2"),
    (_LAYER + r"cross_attn_layer_norm\." + _PARAM,
     r"sem_seg_head.predictor.transformer_cross_attention_layers.\1.norm.\2"),
    (_LAYER + r"self_attn\.(?P<qkv>q|k|v)_proj\." + _NAMED_PARAM,
     r"sem_seg_head.predictor.transformer_self_attention_layers.\1.self_attn.in_proj_\g<param>"),
    (_LAYER + r"self_attn\.(?:out|o)_proj\." + _PARAM,
     r"sem_seg_head.predictor.transformer_self_attention_layers.\1.self_attn.out_proj.\2"),
    (_LAYER + r"self_attn_layer_norm\." + _PARAM,
     r"sem_seg_head.predictor.transformer_self_attention_layers.\1.norm.\2"),
    (_LAYER + r"(?:mlp\.)?fc([12])\." + _PARAM,
     r"sem_seg_head.predictor.transformer_ffn_layers.\1.linear\2.\3"),
    (_LAYER + r"final_layer_norm\." + _PARAM,
     r"sem_seg_head.predictor.transformer_ffn_layers.\1.norm.\2"),
    (_DECODER + r"decoder\.layernorm\." + _PARAM, r"sem_seg_head.predictor.decoder_norm.\1"),
    (_DECODER + r"decoder\.mask_predictor\.mask_embedder\.(\d+)\.0\." + _PARAM,
     r"sem_seg_head.predictor.mask_embed.layers.\1.\2"),
    (r"class_predictor\." + _PARAM, r"sem_seg_head.predictor.class_embed.\1"),
    (r"criterion\.empty_weight", r"criterion.empty_weight"),
]
# transformers entries the converted model has no use for: the Swin classifier's final norm
# and buffers this project computes itself.
DROPPED = [
    _SWIN + r"layernorm\." + _PARAM,
    _BLOCK + r"attention\.(?:self\.)?relative_position_index",
    r".*\.num_batches_tracked",
]
# Our buffers that are computed, not learned: taken from the freshly built model.
COMPUTED = [r"backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index"]
_QKV_ORDER = {"query": 0, "q": 0, "key": 1, "k": 1, "value": 2, "v": 2}


def rename(name):
    """transformers name -> (our name, index of its third in a fused q/k/v projection or None);
    (None, None) for a dropped entry. Raises KeyError for an unknown name."""
    if any(re.fullmatch(pattern, name) for pattern in DROPPED):
        return None, None
    for pattern, target in RULES:
        match = re.fullmatch(pattern, name)
        if match is None:
            continue
        if callable(target):
            return target(match), None
        part = match.groupdict().get("qkv") or match.groupdict().get("qkv5")
        return match.expand(target), None if part is None else _QKV_ORDER[part]
    raise KeyError(name)


def convert_state_dict(hf_state):
    """transformers state dict -> our state dict (``backbone.*``, ``sem_seg_head.*``, ...)."""
    converted, fused, unknown = {}, {}, []
    for name, tensor in hf_state.items():
        try:
            target, part = rename(name)
        except KeyError:
            unknown.append(name)
            continue
        if target is None:
            continue
        if part is None:
            converted[target] = tensor
        else:
            fused.setdefault(target, {})[part] = tensor
    if unknown:
        raise ValueError(
            f"{len(unknown)} weights of the checkpoint have no place in Mask2Former (not a "
            f"Mask2FormerForUniversalSegmentation with a Swin backbone?): {unknown[:10]}"
        )
    for target, parts in fused.items():
        if sorted(parts) != [0, 1, 2]:
            raise ValueError(f"{target}: the checkpoint lacks part of its query/key/value "
                             f"projections (has {sorted(parts)} of [0, 1, 2])")
        converted[target] = torch.cat([parts[i] for i in range(3)], 0)
    return converted


def read_checkpoint(path):
    """(config.json as a dict, the folder it was found in, the transformers state dict)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file} not found: give the checkpoint folder (config.json and the weights) "
            "or a weights file with config.json beside it"
        )
    with open(config_file) as f:
        hf_config = json.load(f)
    if path.is_dir():
        weight_files = (sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
                        or sorted(folder.glob("*.pth")))
        if not weight_files:
            raise FileNotFoundError(f"{folder}: no *.safetensors, *.bin or *.pth weights")
    else:
        weight_files = [path]
    state = {}
    for weight_file in weight_files:
        if weight_file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(weight_file)))
        else:
            loaded = torch.load(weight_file, map_location="cpu", weights_only=True)
            state.update(loaded.get("model", loaded) if isinstance(loaded, dict) else {})
    if not state:
        raise ValueError(f"{weight_files[0]}: no tensors found")
    return hf_config, folder, state


def check_supported(hf_config, source):
    """Refuses what this project's Mask2Former cannot represent, naming the config.json key."""
    def refuse(key, value, why):
        raise ValueError(f"{source}/config.json: {key}={value!r}: {why}")

    if hf_config.get("model_type") != "mask2former":
        refuse("model_type", hf_config.get("model_type"), "not a Mask2Former checkpoint")
    backbone = hf_config.get("backbone_config") or {}
    if backbone.get("model_type") != "swin":
        refuse("backbone_config.model_type", backbone.get("model_type"),
               "transformers supports Swin backbones for Mask2Former, and so does this tool")
    if backbone.get("use_absolute_embeddings"):
        refuse("backbone_config.use_absolute_embeddings", True,
               "no published Mask2Former uses absolute position embeddings")
    out_features = backbone.get("out_features", ["stage1", "stage2", "stage3", "stage4"])
    if list(out_features) != ["stage1", "stage2", "stage3", "stage4"]:
        refuse("backbone_config.out_features", out_features, "Mask2Former reads all 4 stages")
    fixed = {"encoder_feedforward_dim": 1024, "activation_function": "relu",
             "feature_strides": [4, 8, 16, 32]}
    for key, value in fixed.items():
        if hf_config.get(key, value) != value:
            refuse(key, hf_config[key], f"the published architecture (and ours) has {value!r}")


def num_labels(hf_config):
    return len(hf_config.get("id2label") or {}) or hf_config["num_labels"]


def build_config(hf_config, folder, base_config, weights):
    """The Detectron2 config of the checkpoint: --base-config with its architecture."""
    from detectron2.config import get_cfg

    from mask2former.config import get_maskformer2_cfg

    cfg = get_maskformer2_cfg(str(base_config))
    swin, backbone = cfg.MODEL.SWIN, hf_config["backbone_config"]
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    swin.EMBED_DIM = backbone["embed_dim"]
    swin.DEPTHS = list(backbone["depths"])
    swin.NUM_HEADS = list(backbone["num_heads"])
    swin.WINDOW_SIZE = backbone["window_size"]
    swin.MLP_RATIO = float(backbone.get("mlp_ratio", 4.0))
    swin.QKV_BIAS = backbone.get("qkv_bias", True)
    swin.PATCH_SIZE = backbone.get("patch_size", 4)
    swin.PRETRAIN_IMG_SIZE = backbone.get("image_size", 224)
    swin.DROP_PATH_RATE = backbone.get("drop_path_rate", 0.3)
    swin.APE = False
    swin.PATCH_NORM = True
    swin.OUT_FEATURES = ["res2", "res3", "res4", "res5"]

    head, mf = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.MASK_FORMER
    head.NUM_CLASSES = num_labels(hf_config)
    head.CONVS_DIM = hf_config["feature_size"]
    head.MASK_DIM = hf_config["mask_feature_size"]
    head.TRANSFORMER_ENC_LAYERS = hf_config["encoder_layers"]
    head.COMMON_STRIDE = hf_config.get("common_stride", 4)
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = hf_config["num_attention_heads"]
    mf.HIDDEN_DIM = hf_config["hidden_dim"]
    mf.NUM_OBJECT_QUERIES = hf_config["num_queries"]
    mf.NHEADS = hf_config["num_attention_heads"]
    mf.DIM_FEEDFORWARD = hf_config["dim_feedforward"]
    mf.DEC_LAYERS = hf_config["decoder_layers"]
    mf.PRE_NORM = hf_config.get("pre_norm", False)
    mf.ENFORCE_INPUT_PROJ = hf_config.get("enforce_input_projection", False)
    mf.DROPOUT = hf_config.get("dropout", 0.0)
    mf.DEEP_SUPERVISION = hf_config.get("use_auxiliary_loss", True)
    for ours, theirs in [("NO_OBJECT_WEIGHT", "no_object_weight"), ("CLASS_WEIGHT", "class_weight"),
                         ("MASK_WEIGHT", "mask_weight"), ("DICE_WEIGHT", "dice_weight"),
                         ("TRAIN_NUM_POINTS", "train_num_points"),
                         ("OVERSAMPLE_RATIO", "oversample_ratio"),
                         ("IMPORTANCE_SAMPLE_RATIO", "importance_sample_ratio")]:
        if theirs in hf_config:
            mf[ours] = type(mf[ours])(hf_config[theirs])

    preprocessor = folder / "preprocessor_config.json"
    if preprocessor.is_file():
        with open(preprocessor) as f:
            processor = json.load(f)
        # transformers normalizes pixels scaled by rescale_factor (1 / 255); ours are 0..255.
        scale = 1.0 / processor.get("rescale_factor", 1 / 255) if processor.get(
            "do_rescale", True) else 1.0
        if "image_mean" in processor and "image_std" in processor:
            cfg.MODEL.PIXEL_MEAN = [m * scale for m in processor["image_mean"]]
            cfg.MODEL.PIXEL_STD = [s * scale for s in processor["image_std"]]
            cfg.INPUT.FORMAT = "RGB"
    cfg.MODEL.WEIGHTS = str(weights)
    # The loader chose the CPU on a machine without CUDA; the config keeps Detectron2's default.
    cfg.MODEL.DEVICE = get_cfg().MODEL.DEVICE
    return cfg


def complete_and_check(converted, cfg, source):
    """Adds the computed buffers from a freshly built model; refuses missing, unexpected or
    differently shaped entries, naming them. Returns the state dict in the model's order."""
    from detectron2.modeling import build_backbone, build_sem_seg_head

    backbone = build_backbone(cfg)
    head = build_sem_seg_head(cfg, backbone.output_shape())
    expected = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    expected.update({f"sem_seg_head.{k}": v for k, v in head.state_dict().items()})
    empty_weight = torch.ones(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES + 1)
    empty_weight[-1] = cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT
    expected["criterion.empty_weight"] = empty_weight
    converted.setdefault("criterion.empty_weight", empty_weight)

    computed = [k for k in expected if any(re.fullmatch(p, k) for p in COMPUTED)]
    for name in computed:
        converted[name] = expected[name]
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(converted[k].shape)}, model {tuple(v.shape)}"
                  for k, v in expected.items() if k in converted and converted[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not convert to the model its config.json describes:"
            + (f"\n  missing: {missing[:10]}" if missing else "")
            + (f"\n  unexpected: {unexpected[:10]}" if unexpected else "")
            + "".join(f"\n  {line}" for line in mismatched[:10])
        )
    return {k: converted[k].detach().to(v.dtype).contiguous() for k, v in expected.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="transformers checkpoint folder, or its weights file")
    parser.add_argument("output", help="converted checkpoint to write (.pth); the config is "
                                       "written beside it (.yaml)")
    parser.add_argument("--base-config", help="published config of the checkpoint's task "
                                              "(default: by its number of classes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[convert-hf-to-d2] %(message)s")

    hf_config, folder, hf_state = read_checkpoint(args.input)
    check_supported(hf_config, folder)
    base_config = args.base_config
    if base_config is None:
        classes = num_labels(hf_config)
        if classes not in DEFAULT_BASE_CONFIGS:
            raise ValueError(
                f"{folder}/config.json has {classes} classes, no published dataset has that "
                "many: give the config of your task with --base-config"
            )
        base_config = REPO_ROOT / DEFAULT_BASE_CONFIGS[classes]
        logger.info("%d classes: data and inference settings from %s (change with "
                    "--base-config)", classes, base_config)
    output = Path(args.output)
    cfg = build_config(hf_config, folder, base_config, output)
    state = complete_and_check(convert_state_dict(hf_state), cfg, args.input)

    output.parent.mkdir(parents=True, exist_ok=True)
    author = f"transformers Mask2FormerForUniversalSegmentation ({os.path.abspath(args.input)})"
    torch.save({"model": state, "__author__": author, "matching_heuristics": False}, output)
    config_file = output.with_suffix(".yaml")
    config_file.write_text(cfg.dump())
    logger.info("wrote %d tensors to %s and the config to %s", len(state), output, config_file)


if __name__ == "__main__":
    sys.exit(main())
