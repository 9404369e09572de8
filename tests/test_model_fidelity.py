"""
Fidelity to the published Mask2Former: the same weights must give the same function.

A published checkpoint only reproduces its results if every parameter name means what it
meant in the published model. These tests compute outputs a second time, straight from the
state dict (the published parameter names) with the formulas of the papers written out step by
step, and compare with our modules on random weights: the head (Deformable DETR eq. 3 for the
pixel decoder, Mask2Former eq. 2-3 for the masked-attention decoder), the Swin backbone
window by window, the input normalization / padding and output resizing of MaskFormer, the
point-sampled mask losses, and the float32 pixel decoder under mixed precision.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model, build_sem_seg_head
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config
from mask2former.modeling.backbone.swin import D2SwinTransformer
from mask2former.modeling.criterion import SetCriterion
from mask2former.modeling.matcher import HungarianMatcher
from mask2former.utils.point_sampling import get_uncertain_point_coords_with_randomness
from small_model import small_config

CONV_DIM, HEADS, POINTS, QUERIES, CLASSES = 64, 4, 4, 6, 3
ENC_LAYERS, DEC_LAYERS = 2, 5  # 4 decoder layers: levels 0, 1, 2, 0
SHAPES = {
    "res2": ShapeSpec(channels=16, stride=4),
    "res3": ShapeSpec(channels=24, stride=8),
    "res4": ShapeSpec(channels=40, stride=16),
    "res5": ShapeSpec(channels=48, stride=32),
}
IMAGE = (64, 96)  # non-square, so that a swapped x / y shows


def head_cfg():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    head = cfg.MODEL.SEM_SEG_HEAD
    head.NAME = "MaskFormerHead"
    head.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    head.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    head.NUM_CLASSES = CLASSES
    head.CONVS_DIM = CONV_DIM
    head.MASK_DIM = CONV_DIM
    head.NORM = "GN"
    head.COMMON_STRIDE = 4
    head.TRANSFORMER_ENC_LAYERS = ENC_LAYERS
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = HEADS
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = POINTS
    mf = cfg.MODEL.MASK_FORMER
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    mf.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"
    mf.HIDDEN_DIM = CONV_DIM
    mf.NHEADS = HEADS
    mf.NUM_OBJECT_QUERIES = QUERIES
    mf.DIM_FEEDFORWARD = 96
    mf.DEC_LAYERS = DEC_LAYERS
    mf.PRE_NORM = False
    mf.ENFORCE_INPUT_PROJ = False
    mf.DROPOUT = 0.0
    return cfg


# ---------------------------------------------------------------------------------------------
# The reference: functions of the state dict, one formula per step.


def linear(params, name, x):
    bias = params.get(f"{name}.bias")
    y = x @ params[f"{name}.weight"].T
    return y if bias is None else y + bias


def layer_norm(params, name, x):
    return F.layer_norm(x, x.shape[-1:], params[f"{name}.weight"], params[f"{name}.bias"])


def sine_position(height, width, channels):
    """(channels, H, W): rows on the first half (sin, cos interleaved), columns on the second."""
    half = channels // 2
    k = torch.arange(half, dtype=torch.float64)
    wavelength = 10000 ** (2 * torch.div(k, 2, rounding_mode="floor") / half)
    rows = torch.arange(1, height + 1, dtype=torch.float64) / height * 2 * math.pi
    cols = torch.arange(1, width + 1, dtype=torch.float64) / width * 2 * math.pi

    def embed(positions):
        angles = positions[:, None] / wavelength  # (n, half)
        return torch.where(k.long() % 2 == 0, angles.sin(), angles.cos())

    pos = torch.cat(
        (embed(rows)[:, None, :].expand(height, width, half),
         embed(cols)[None, :, :].expand(height, width, half)),
        dim=-1,
    )
    return pos.permute(2, 0, 1).float()


def bilinear_read(value_map, x, y):
    """
    value_map (C, H, W); x, y (...) normalized so that pixel (i, j) covers
    [j / W, (j + 1) / W] x [i / H, (i + 1) / H]; outside the map reads 0. Returns (..., C).
    """
    channels, height, width = value_map.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = px.floor(), py.floor()
    out = 0
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - (px - xi).abs()) * (1 - (py - yi).abs())
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            flat = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).long()
            read = value_map.flatten(1)[:, flat.flatten()].T.reshape(*flat.shape, channels)
            out = out + (weight * inside)[..., None] * read
    return out


def deformable_attention(params, name, query, reference, value_in, shapes):
    """
    Deformable DETR eq. 3: for each query, head h, level l and point p, sample the value of
    level l at reference + offset / (W_l, H_l) and sum with softmax weights over (l, p).
    query (N, C), reference (N, 2) normalized (x, y), value_in (Len, C).
    """
    num, channels = query.shape
    levels, head_dim = len(shapes), channels // HEADS
    value = linear(params, f"{name}.value_proj", value_in)
    offsets = linear(params, f"{name}.sampling_offsets", query).view(num, HEADS, levels, POINTS, 2)
    weights = linear(params, f"{name}.attention_weights", query).view(num, HEADS, levels * POINTS)
    weights = weights.softmax(-1).view(num, HEADS, levels, POINTS)
    out = torch.zeros(num, HEADS, head_dim)
    start = 0
    for level, (height, width) in enumerate(shapes):
        level_value = value[start:start + height * width]
        start += height * width
        for head in range(HEADS):
            value_map = level_value[:, head * head_dim:(head + 1) * head_dim].T.reshape(
                head_dim, height, width
            )
            x = reference[:, None, 0] + offsets[:, head, level, :, 0] / width
            y = reference[:, None, 1] + offsets[:, head, level, :, 1] / height
            sampled = bilinear_read(value_map, x, y)  # (N, P, d)
            out[:, head] += (weights[:, head, level, :, None] * sampled).sum(1)
    return linear(params, f"{name}.output_proj", out.flatten(1))


def reference_pixel_decoder(params, features):
    """One image: features name -> (C, H, W). Returns mask features and 3 multi-scale maps."""
    p = "pixel_decoder."
    names = ["res5", "res4", "res3"]  # input_proj.0 reads the coarsest map
    srcs, pos, shapes = [], [], []
    for level, name in enumerate(names):
        x = features[name][None]
        conv = F.conv2d(x, params[f"{p}input_proj.{level}.0.weight"],
                        params[f"{p}input_proj.{level}.0.bias"])
        conv = F.group_norm(conv, 32, params[f"{p}input_proj.{level}.1.weight"],
                            params[f"{p}input_proj.{level}.1.bias"])[0]
        height, width = conv.shape[-2:]
        shapes.append((height, width))
        srcs.append(conv.flatten(1).T)
        level_pos = sine_position(height, width, CONV_DIM).flatten(1).T
        pos.append(level_pos + params[f"{p}transformer.level_embed"][level])
    src, pos = torch.cat(srcs), torch.cat(pos)
    reference = torch.cat([
        torch.stack(torch.meshgrid((torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h,
                                   indexing="xy"), -1).reshape(-1, 2)
        for h, w in shapes
    ])
    for i in range(ENC_LAYERS):
        layer = f"{p}transformer.encoder.layers.{i}"
        attended = deformable_attention(params, f"{layer}.self_attn", src + pos, reference, src,
                                        shapes)
        src = layer_norm(params, f"{layer}.norm1", src + attended)
        hidden = F.relu(linear(params, f"{layer}.linear1", src))
        src = layer_norm(params, f"{layer}.norm2", src + linear(params, f"{layer}.linear2", hidden))

    maps, start = [], 0
    for height, width in shapes:
        maps.append(src[start:start + height * width].T.reshape(CONV_DIM, height, width))
        start += height * width
    lateral = F.conv2d(features["res2"][None], params[f"{p}adapter_1.weight"])
    lateral = F.group_norm(lateral, 32, params[f"{p}adapter_1.norm.weight"],
                           params[f"{p}adapter_1.norm.bias"])
    top_down = F.interpolate(maps[-1][None], size=lateral.shape[-2:], mode="bilinear",
                             align_corners=False)
    fine = F.conv2d(lateral + top_down, params[f"{p}layer_1.weight"], padding=1)
    fine = F.relu(F.group_norm(fine, 32, params[f"{p}layer_1.norm.weight"],
                               params[f"{p}layer_1.norm.bias"]))
    mask_features = F.conv2d(fine, params[f"{p}mask_features.weight"],
                             params[f"{p}mask_features.bias"])[0]
    return mask_features, maps


def attention(params, name, query, key, value, blocked=None):
    """Multi-head attention with the packed in_proj of torch's MultiheadAttention."""
    w, b = params[f"{name}.in_proj_weight"], params[f"{name}.in_proj_bias"]
    c = query.shape[-1]
    q = (query @ w[:c].T + b[:c]).view(-1, HEADS, c // HEADS).transpose(0, 1)
    k = (key @ w[c:2 * c].T + b[c:2 * c]).view(-1, HEADS, c // HEADS).transpose(0, 1)
    v = (value @ w[2 * c:].T + b[2 * c:]).view(-1, HEADS, c // HEADS).transpose(0, 1)
    logits = q @ k.transpose(1, 2) / math.sqrt(c // HEADS)  # (heads, Nq, Nk)
    if blocked is not None:
        logits = logits.masked_fill(blocked, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(-1, c)
    return linear(params, f"{name}.out_proj", out)


def reference_predict(params, queries, mask_features):
    p = "predictor."
    normed = layer_norm(params, f"{p}decoder_norm", queries)
    logits = linear(params, f"{p}class_embed", normed)
    embed = F.relu(linear(params, f"{p}mask_embed.layers.0", normed))
    embed = F.relu(linear(params, f"{p}mask_embed.layers.1", embed))
    embed = linear(params, f"{p}mask_embed.layers.2", embed)
    return logits, torch.einsum("qc,chw->qhw", embed, mask_features)


def reference_transformer_decoder(params, maps, mask_features):
    """Mask2Former Sec. 3.2 for one image: masked cross-attn -> self-attn -> FFN, post-norm."""
    p = "predictor."
    values = [m.flatten(1).T + params[f"{p}level_embed.weight"][i] for i, m in enumerate(maps)]
    keys_pos = [sine_position(*m.shape[-2:], CONV_DIM).flatten(1).T for m in maps]
    queries, query_pos = params[f"{p}query_feat.weight"], params[f"{p}query_embed.weight"]
    predictions = [reference_predict(params, queries, mask_features)]
    for i in range(DEC_LAYERS - 1):
        level = i % 3
        resized = F.interpolate(predictions[-1][1][None], size=maps[level].shape[-2:],
                                mode="bilinear", align_corners=False)[0]
        blocked = resized.flatten(1).sigmoid() < 0.5
        blocked[blocked.all(-1)] = False  # an empty mask attends everywhere
        attended = attention(params, f"{p}transformer_cross_attention_layers.{i}.multihead_attn",
                             queries + query_pos, values[level] + keys_pos[level], values[level],
                             blocked[None])
        queries = layer_norm(params, f"{p}transformer_cross_attention_layers.{i}.norm",
                             queries + attended)
        attended = attention(params, f"{p}transformer_self_attention_layers.{i}.self_attn",
                             queries + query_pos, queries + query_pos, queries)
        queries = layer_norm(params, f"{p}transformer_self_attention_layers.{i}.norm",
                             queries + attended)
        ffn = f"{p}transformer_ffn_layers.{i}"
        hidden = F.relu(linear(params, f"{ffn}.linear1", queries))
        queries = layer_norm(params, f"{ffn}.norm",
                             queries + linear(params, f"{ffn}.linear2", hidden))
        predictions.append(reference_predict(params, queries, mask_features))
    return predictions


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_and_inputs():
    torch.manual_seed(0)
    head = build_sem_seg_head(head_cfg(), SHAPES).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in head.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() == 1 and "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)  # LayerNorm / GroupNorm scales near 1
            elif "sampling_offsets" in name:
                param.mul_(0.5).add_(0.05 * noise)  # offsets of a few pixels
            else:
                param.copy_(noise / math.sqrt(max(param[0].numel(), 1)))
        # Mask logits of both signs (the FPN output is post-ReLU, hence positive): partial
        # masks, so that the masked attention blocks some pixels and lets others through.
        weight = head.pixel_decoder.mask_features.weight
        weight.sub_(weight.mean(1, keepdim=True))
        head.pixel_decoder.mask_features.bias.zero_()
    features = {
        name: torch.randn(2, shape.channels, IMAGE[0] // shape.stride, IMAGE[1] // shape.stride,
                          generator=generator)
        for name, shape in SHAPES.items()
    }
    return head, features


def test_head_computes_the_published_function(head_and_inputs):
    head, features = head_and_inputs
    params = {k: v.detach() for k, v in head.state_dict().items()}
    with torch.no_grad():
        ours = head(features)
    ours_predictions = ours["aux_outputs"] + [ours]
    assert len(ours_predictions) == DEC_LAYERS
    for b in range(2):
        image_features = {k: v[b] for k, v in features.items()}
        mask_features, maps = reference_pixel_decoder(params, image_features)
        ours_mask_features, _, ours_maps = head.pixel_decoder.forward_features(
            {k: v[b:b + 1] for k, v in features.items()}
        )
        for mine, theirs in zip(ours_maps, maps):
            torch.testing.assert_close(mine[0], theirs, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(ours_mask_features[0], mask_features, atol=2e-4, rtol=1e-4)

        predictions = reference_transformer_decoder(params, maps, mask_features)
        for i, (logits, masks) in enumerate(predictions):
            torch.testing.assert_close(ours_predictions[i]["pred_logits"][b], logits,
                                       atol=5e-4, rtol=1e-4, msg=lambda m: f"prediction {i}: {m}")
            torch.testing.assert_close(ours_predictions[i]["pred_masks"][b], masks,
                                       atol=5e-4, rtol=1e-4, msg=lambda m: f"prediction {i}: {m}")


def test_reference_masks_are_partial(head_and_inputs):
    """The comparison above only checks masked attention if the masks block something."""
    head, features = head_and_inputs
    with torch.no_grad():
        out = head(features)
    for prediction in out["aux_outputs"][:3]:
        foreground = (prediction["pred_masks"] > 0).float().mean((-2, -1))
        assert ((foreground > 0.05) & (foreground < 0.95)).any()


# ---------------------------------------------------------------------------------------------
# The meta-architecture around the head: input normalization and padding, and the resizing of
# the mask logits back to the output size (MaskFormer inference).


def test_inference_normalizes_pads_and_resizes_like_the_published_model():
    cfg = small_config(num_classes=CLASSES, num_queries=QUERIES)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(2)
    inputs = [
        {"image": torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=generator),
         "height": 75, "width": 105},
        {"image": torch.randint(0, 256, (3, 64, 45), dtype=torch.uint8, generator=generator),
         "height": 91, "width": 60},
    ]
    seen = {}
    model.backbone.register_forward_pre_hook(lambda m, args: seen.update(images=args[0]))
    model.sem_seg_head.register_forward_hook(lambda m, args, out: seen.update(outputs=out))
    with torch.no_grad():
        results = model(inputs)

    # (x - mean) / std in the channel order of the input, zero-padded bottom / right to a
    # multiple of 32 over the batch.
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    expected = torch.zeros(2, 3, 64, 96)
    for i, x in enumerate(inputs):
        h, w = x["image"].shape[-2:]
        expected[i, :, :h, :w] = (x["image"].float() - mean) / std
    torch.testing.assert_close(seen["images"], expected)

    # Semantic-only: per-pixel scores at the padded input size (masks upsampled bilinearly
    # from 1/4), cropped to the image, then resized bilinearly to the output size.
    outputs = seen["outputs"]
    masks = F.interpolate(outputs["pred_masks"], size=(64, 96), mode="bilinear",
                          align_corners=False)
    for i, x in enumerate(inputs):
        h, w = x["image"].shape[-2:]
        scores = torch.einsum("qk,qhw->khw", outputs["pred_logits"][i].softmax(-1)[:, :-1],
                              masks[i].sigmoid())[:, :h, :w]
        scores = F.interpolate(scores[None], size=(x["height"], x["width"]), mode="bilinear",
                               align_corners=False)[0]
        torch.testing.assert_close(results[i]["sem_seg"], scores)


# ---------------------------------------------------------------------------------------------
# The Swin backbone (Liu et al. 2021), from its state dict, window by window.


def reference_window_attention(params, name, tokens, window_size, heads, regions):
    """
    tokens (ws*ws, C) of one window in row-major order; regions (ws*ws,) labels of the
    tokens' regions before the roll. softmax(q k^T / sqrt(d) + B - 100 [other region]) v.
    """
    n, c = tokens.shape
    d = c // heads
    qkv = linear(params, f"{name}.qkv", tokens).view(n, 3, heads, d)
    q, k, v = qkv[:, 0].transpose(0, 1), qkv[:, 1].transpose(0, 1), qkv[:, 2].transpose(0, 1)
    rows, cols = torch.arange(n) // window_size, torch.arange(n) % window_size
    dh, dw = rows[:, None] - rows[None, :], cols[:, None] - cols[None, :]
    table_row = (dh + window_size - 1) * (2 * window_size - 1) + (dw + window_size - 1)
    bias = params[f"{name}.relative_position_bias_table"][table_row].permute(2, 0, 1)
    logits = q @ k.transpose(1, 2) * d ** -0.5 + bias
    logits = logits - 100.0 * (regions[:, None] != regions[None, :]).float()
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(n, c)
    return linear(params, f"{name}.proj", out)


def reference_swin_block(params, name, x, window_size, shift, heads):
    """x (H, W, C). Pre-norm; the normalized map is zero-padded to whole windows, and padded
    tokens are attended like the others; with a shift, windows start at -shift."""
    height, width, channels = x.shape
    y = layer_norm(params, f"{name}.norm1", x)
    hp, wp = -(-height // window_size) * window_size, -(-width // window_size) * window_size
    y = F.pad(y, (0, 0, 0, wp - width, 0, hp - height))

    def region(index, size):  # which band of the padded map, counted before the roll
        return 0 if shift == 0 or index < size - window_size else (
            1 if index < size - shift else 2)

    out = torch.zeros_like(y)
    for top in range(0, hp, window_size):
        for left in range(0, wp, window_size):
            rows = [(top + i + shift) % hp for i in range(window_size)]
            cols = [(left + j + shift) % wp for j in range(window_size)]
            tokens = y[rows][:, cols].reshape(-1, channels)
            regions = torch.tensor([3 * region(top + i, hp) + region(left + j, wp)
                                    for i in range(window_size) for j in range(window_size)])
            attended = reference_window_attention(params, f"{name}.attn", tokens, window_size,
                                                  heads, regions)
            out[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = attended.view(
                window_size, window_size, channels)
    x = x + out[:height, :width]
    hidden = F.gelu(linear(params, f"{name}.mlp.fc1", layer_norm(params, f"{name}.norm2", x)))
    return x + linear(params, f"{name}.mlp.fc2", hidden)


def reference_swin(params, image, depths, heads, window_size, patch_size=4):
    """image (3, H, W) -> dict res2..res5 of (C_i, ceil(H / s_i), ceil(W / s_i))."""
    h, w = image.shape[-2:]
    image = F.pad(image, (0, -w % patch_size, 0, -h % patch_size))
    x = F.conv2d(image[None], params["patch_embed.proj.weight"], params["patch_embed.proj.bias"],
                 stride=patch_size)[0].permute(1, 2, 0)
    x = layer_norm(params, "patch_embed.norm", x)
    outputs = {}
    for stage, depth in enumerate(depths):
        for block in range(depth):
            shift = 0 if block % 2 == 0 else window_size // 2
            x = reference_swin_block(params, f"layers.{stage}.blocks.{block}", x, window_size,
                                     shift, heads[stage])
        outputs[f"res{stage + 2}"] = layer_norm(params, f"norm{stage}", x).permute(2, 0, 1)
        if stage < len(depths) - 1:
            x = F.pad(x, (0, 0, 0, x.shape[1] % 2, 0, x.shape[0] % 2))
            # 2x2 neighbourhood: (top, left), (bottom, left), (top, right), (bottom, right)
            x = torch.cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1)
            x = linear(params, f"layers.{stage}.downsample.reduction",
                       layer_norm(params, f"layers.{stage}.downsample.norm", x))
    return outputs


def test_swin_computes_the_published_function():
    depths, heads, window_size = (2, 2, 2, 2), (1, 2, 2, 4), 4
    torch.manual_seed(0)
    model = D2SwinTransformer(embed_dim=8, depths=depths, num_heads=heads,
                              window_size=window_size, drop_path_rate=0.0).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)
            elif "relative_position_bias_table" in name:
                param.copy_(noise)  # visible position biases
            else:
                param.copy_(noise / math.sqrt(param[0].numel()) if param.dim() > 1 else noise)
    # 70 x 98: padded patches (70 -> 72) and windows at every stage (18 x 25 tokens, ...).
    images = torch.randn(2, 3, 70, 98, generator=generator)
    params = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ours = model(images)
        for b in range(2):
            expected = reference_swin(params, images[b], depths, heads, window_size)
            assert list(ours) == list(expected)
            for name in expected:
                torch.testing.assert_close(ours[name][b], expected[name], atol=2e-4, rtol=1e-4,
                                           msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------
# The mask losses (Mask2Former Sec. 3.3 / 4): BCE and dice on P points per matched pair,
# importance-sampled where the prediction is uncertain, normalized by the number of masks.


def test_mask_losses_are_point_sampled_bce_and_dice_over_num_masks():
    num_points, num_masks = 40, 4.0
    criterion = SetCriterion(
        CLASSES, HungarianMatcher(2.0, 5.0, 5.0, num_points=num_points), {}, 0.1,
        ["labels", "masks"], num_points=num_points, oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )
    generator = torch.Generator().manual_seed(4)
    outputs = {"pred_logits": torch.randn(2, QUERIES, CLASSES + 1, generator=generator),
               "pred_masks": 3 * torch.randn(2, QUERIES, 8, 12, generator=generator)}
    targets = [
        {"labels": torch.tensor([0, 2]), "masks": torch.rand(2, 32, 48, generator=generator) > 0.5},
        {"labels": torch.tensor([1]), "masks": torch.rand(1, 32, 48, generator=generator) > 0.5},
    ]
    indices = [(torch.tensor([3, 0]), torch.tensor([1, 0])), (torch.tensor([2]), torch.tensor([0]))]

    torch.manual_seed(7)
    losses = criterion.loss_masks(outputs, targets, indices, num_masks)

    # Pairs in the order of ``indices``: (image 0, query 3) with target 1, ...
    pred = torch.stack([outputs["pred_masks"][0, 3], outputs["pred_masks"][0, 0],
                        outputs["pred_masks"][1, 2]])[:, None]
    gt = torch.stack([targets[0]["masks"][1], targets[0]["masks"][0],
                      targets[1]["masks"][0]]).float()[:, None]
    torch.manual_seed(7)
    coords = get_uncertain_point_coords_with_randomness(
        pred, lambda logits: -logits.abs(), num_points, 3.0, 0.75
    )
    grid = (2 * coords - 1)[:, :, None]
    x = F.grid_sample(pred, grid, align_corners=False)[:, 0, :, 0]  # (M, P)
    y = F.grid_sample(gt, grid, align_corners=False)[:, 0, :, 0]
    p = x.sigmoid()
    bce = -(y * p.log() + (1 - y) * (1 - p).log()).mean(1)
    dice = 1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
    torch.testing.assert_close(losses["loss_mask"], bce.sum() / num_masks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["loss_dice"], dice.sum() / num_masks, atol=1e-5, rtol=1e-5)


def test_pixel_decoder_runs_in_float32_under_mixed_precision(head_and_inputs):
    """The published models train with AMP but keep the whole pixel decoder in float32."""
    head, features = head_and_inputs
    low_precision = {k: v.bfloat16() for k, v in features.items()}
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = head.pixel_decoder.forward_features(low_precision)
        expected = head.pixel_decoder.forward_features(
            {k: v.float() for k, v in low_precision.items()}
        )
    for mine, reference in zip([got[0], *got[2]], [expected[0], *expected[2]]):
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, reference)
