"""
Optimizer of Mask2Former: AdamW or SGD with per-parameter learning rate and weight decay, and
optional full-model gradient clipping. The LR schedule (``WarmupPolyLR`` and Detectron2's
schedules) comes from ``detectron2.projects.deeplab.build_lr_scheduler``.
"""
import itertools

import torch
from torch import nn

from detectron2.solver.build import maybe_add_gradient_clipping

# Modules whose parameters get SOLVER.WEIGHT_DECAY_NORM.
_NORM_MODULES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
# Swin Transformer position tables: never decayed.
_NO_DECAY_PARAMS = ("relative_position_bias_table", "absolute_pos_embed")


def get_param_groups(model, base_lr, weight_decay, weight_decay_norm, weight_decay_embed,
                     backbone_multiplier):
    """
    One optimizer parameter group per trainable parameter of ``model``:

    * learning rate ``base_lr``, times ``backbone_multiplier`` for modules under "backbone";
    * weight decay ``weight_decay``; ``weight_decay_norm`` for normalization layers,
      ``weight_decay_embed`` for ``nn.Embedding`` (the decoder's query features, query
      positions and level embeddings), 0 for Swin's position tables.

    Returns:
        list[dict]: groups with "params" (one tensor), "lr" and "weight_decay".
    """
    groups = []
    seen = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr = base_lr * (backbone_multiplier if "backbone" in module_name else 1.0)
            decay = weight_decay
            if name in _NO_DECAY_PARAMS:
                decay = 0.0
            elif isinstance(module, _NORM_MODULES):
                decay = weight_decay_norm
            elif isinstance(module, nn.Embedding):
                decay = weight_decay_embed
            groups.append({"params": [param], "lr": lr, "weight_decay": decay})
    return groups


def add_full_model_gradient_clipping(optimizer_class, clip_norm):
    """
    A subclass of ``optimizer_class`` whose ``step`` first clips the gradient norm over all
    parameters of all groups together to ``clip_norm``.
    """

    class FullModelGradientClippingOptimizer(optimizer_class):
        def step(self, closure=None):
            all_params = itertools.chain(*[g["params"] for g in self.param_groups])
            torch.nn.utils.clip_grad_norm_(all_params, clip_norm)
            return super().step(closure=closure)

    FullModelGradientClippingOptimizer.__name__ = f"FullModelClipped{optimizer_class.__name__}"
    return FullModelGradientClippingOptimizer


def build_optimizer(cfg, model):
    """
    The optimizer named by SOLVER.OPTIMIZER ("ADAMW" or "SGD") over the parameter groups of
    :func:`get_param_groups`, with SOLVER.CLIP_GRADIENTS applied: CLIP_TYPE "full_model" clips
    the norm over the whole model to CLIP_VALUE; "value" / "norm" are Detectron2's per-parameter
    clipping.
    """
    groups = get_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_embed=cfg.SOLVER.WEIGHT_DECAY_EMBED,
        backbone_multiplier=cfg.SOLVER.BACKBONE_MULTIPLIER,
    )
    name = cfg.SOLVER.OPTIMIZER
    if name == "SGD":
        optimizer_class, kwargs = torch.optim.SGD, {"momentum": cfg.SOLVER.MOMENTUM}
    elif name == "ADAMW":
        # The fused kernel (CPU and CUDA) does one pass over all parameters: on a CPU it makes the
        # optimizer step several times faster than the per-parameter loop.
        optimizer_class, kwargs = torch.optim.AdamW, {"fused": True}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be 'ADAMW' or 'SGD', got {name!r}.")

    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_class = add_full_model_gradient_clipping(optimizer_class, clip.CLIP_VALUE)
        return optimizer_class(groups, cfg.SOLVER.BASE_LR, **kwargs)
    return maybe_add_gradient_clipping(cfg, optimizer_class)(groups, cfg.SOLVER.BASE_LR, **kwargs)
