"""ResNet-18/34 (basic residual blocks) of any width, for small models trained from scratch."""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet

# Basic blocks per stage (res2..res5) of each depth.
_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


@BACKBONE_REGISTRY.register()
def build_basic_resnet_backbone(cfg, input_shape: ShapeSpec):
    """
    Detectron2's ResNet with basic blocks, whose width is set by the config instead of fixed to
    64 (Detectron2's ``build_resnet_backbone`` requires RES2_OUT_CHANNELS = 64 for depth 18/34).
    Parameter names are those of Detectron2's ResNet.

    Config keys (MODEL.RESNETS): DEPTH (18 or 34), STEM_OUT_CHANNELS, RES2_OUT_CHANNELS (the
    stage widths are it times 1, 2, 4, 8), NORM, OUT_FEATURES; MODEL.BACKBONE.FREEZE_AT.

    Returns:
        ResNet: features "res2".."res5" of (B, C_i, H / s_i, W / s_i), s_i = 4, 8, 16, 32.
    """
    res = cfg.MODEL.RESNETS
    if res.DEPTH not in _BLOCKS_PER_STAGE:
        raise ValueError(
            f"build_basic_resnet_backbone: MODEL.RESNETS.DEPTH must be 18 or 34, got {res.DEPTH}"
            " (use build_resnet_backbone for bottleneck ResNets)"
        )
    stem = BasicStem(
        in_channels=input_shape.channels, out_channels=res.STEM_OUT_CHANNELS, norm=res.NORM
    )
    in_channels = res.STEM_OUT_CHANNELS
    stages = []
    for index, num_blocks in enumerate(_BLOCKS_PER_STAGE[res.DEPTH]):
        out_channels = res.RES2_OUT_CHANNELS * 2**index
        stages.append(
            ResNet.make_stage(
                BasicBlock,
                num_blocks,
                in_channels=in_channels,
                out_channels=out_channels,
                stride_per_block=[1 if index == 0 else 2] + [1] * (num_blocks - 1),
                norm=res.NORM,
            )
        )
        in_channels = out_channels
    return ResNet(
        stem, stages, out_features=res.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT
    )
