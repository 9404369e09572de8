"""D2SwinTransformer: feature shapes, gradients, shifted-window attention against its definition."""
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config
from mask2former.modeling.backbone.swin import (
    D2SwinTransformer,
    SwinTransformerBlock,
    relative_position_index,
    shifted_window_mask,
)


def tiny_swin(**kwargs):
    args = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)
    args.update(kwargs)
    return D2SwinTransformer(**args)


@pytest.mark.parametrize("size", [(100, 130), (64, 64), (33, 17)])
def test_features_at_strides_4_to_32_for_any_input_size(size):
    torch.manual_seed(0)
    model = tiny_swin().eval()
    H, W = size
    out = model(torch.randn(2, 3, H, W))
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for name, spec in model.output_shape().items():
        stride = spec.stride
        assert out[name].shape == (2, spec.channels, -(-H // stride), -(-W // stride)), name
        assert torch.isfinite(out[name]).all()
    assert [s.channels for s in model.output_shape().values()] == [16, 32, 64, 128]
    assert [s.stride for s in model.output_shape().values()] == [4, 8, 16, 32]
    assert model.size_divisibility == 32


def test_gradient_reaches_input_and_every_parameter():
    torch.manual_seed(0)
    model = tiny_swin(drop_path_rate=0.1).train()
    x = torch.randn(1, 3, 100, 130, requires_grad=True)
    out = model(x)
    loss = sum((v * torch.randn_like(v)).sum() for v in out.values())
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    args = dict(depths=(2, 2), num_heads=(1, 2), out_features=("res2", "res3"), drop_path_rate=0.0)
    model = tiny_swin(**args).train()
    ckpt = tiny_swin(**args, use_checkpoint=True)
    ckpt.load_state_dict(model.state_dict())
    ckpt.train()
    x = torch.randn(1, 3, 40, 52)
    grads = []
    for m in (model, ckpt):
        m.zero_grad()
        sum(v.square().sum() for v in m(x).values()).backward()
        grads.append(m.patch_embed.proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_out_features_subset_and_bad_names():
    model = tiny_swin(out_features=("res3", "res5")).eval()
    out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == ["res3", "res5"]
    assert not hasattr(model, "norm0") and hasattr(model, "norm1")
    with pytest.raises(ValueError, match="res6"):
        tiny_swin(out_features=("res6",))


def test_relative_position_index_convention():
    """Row (dh + ws - 1) * (2ws - 1) + (dw + ws - 1) for query - key offset (dh, dw)."""
    ws = 3
    idx = relative_position_index(ws)
    assert idx.shape == (9, 9)
    # query (0, 0), key (2, 2): offset (-2, -2) -> row 0; reverse -> last row.
    assert idx[0, 8] == 0 and idx[8, 0] == (2 * ws - 1) ** 2 - 1
    # same token -> centre of the table; query (0, 1), key (0, 0): offset (0, 1).
    assert (idx.diagonal() == 12).all() and idx[1, 0] == 13


def naive_block_attention(block, x, H, W):
    """The block's attention branch by definition: each token attends to the tokens of its
    (shifted) window on the unpadded H x W map, windows starting at -shift, with the relative
    position bias. x: (B, H * W, C) -> (B, H * W, C)."""
    B, L, C = x.shape
    attn = block.attn
    heads, ws, s = attn.num_heads, block.window_size, block.shift_size
    hh, ww = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    hh, ww = hh.flatten(), ww.flatten()
    group = ((hh + ws - s) // ws) * 1000 + (ww + ws - s) // ws
    dh = hh[:, None] - hh[None, :]
    dw = ww[:, None] - ww[None, :]
    same = group[:, None] == group[None, :]
    rows = ((dh + ws - 1) * (2 * ws - 1) + (dw + ws - 1)).clamp(0, (2 * ws - 1) ** 2 - 1)
    bias = attn.relative_position_bias_table[rows].permute(2, 0, 1)  # (heads, L, L)
    y = block.norm1(x)
    q, k, v = attn.qkv(y).reshape(B, L, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    logits = (q * attn.scale) @ k.transpose(-2, -1) + bias
    logits = logits.masked_fill(~same, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, L, C)
    return attn.proj(out)


@pytest.mark.parametrize("shift", [0, 2])
def test_shifted_window_attention_matches_its_definition(shift):
    torch.manual_seed(0)
    ws, H, W, C = 4, 8, 12, 8
    block = SwinTransformerBlock(C, num_heads=2, window_size=ws, shift_size=shift).eval()
    torch.nn.init.normal_(block.attn.relative_position_bias_table, std=1.0)
    block.mlp.fc2.weight.data.zero_()
    block.mlp.fc2.bias.data.zero_()  # the block output is then x + attention branch
    x = torch.randn(2, H * W, C)
    mask = shifted_window_mask(H, W, ws, ws // 2, x.device)
    got = block(x, H, W, mask) - x
    torch.testing.assert_close(got, naive_block_attention(block, x, H, W), atol=1e-5, rtol=1e-4)


def test_built_from_config_through_the_registry():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    cfg.MODEL.SWIN.EMBED_DIM = 24
    cfg.MODEL.SWIN.DEPTHS = [1, 1, 2, 1]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 2, 3, 4]
    cfg.MODEL.SWIN.WINDOW_SIZE = 5
    model = build_backbone(cfg, ShapeSpec(channels=3))
    assert isinstance(model, D2SwinTransformer)
    assert {k: v.channels for k, v in model.output_shape().items()} == {
        "res2": 24, "res3": 48, "res4": 96, "res5": 192,
    }
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.shape == (81, 1)
    assert len(model.layers[2].blocks) == 2 and model.layers[3].downsample is None


def test_rejects_images_without_batch_axis():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        tiny_swin()(torch.randn(3, 64, 64))
