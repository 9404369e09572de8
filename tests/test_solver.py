"""Optimizer parameter groups, full-model gradient clipping and the poly LR schedule."""
import pytest
import torch
from torch import nn

from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config
from mask2former.solver import build_lr_scheduler, build_optimizer, get_param_groups


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.query_feat = nn.Embedding(5, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(3))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def solver_cfg(**solver):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.SOLVER.BASE_LR = 1e-4
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def test_param_groups_lr_and_weight_decay():
    model = TinyModel()
    groups = get_param_groups(model, 1.0, 0.05, 0.01, 0.02, 0.1)
    by_param = {id(g["params"][0]): g for g in groups}
    names = dict(model.named_parameters())
    hyper = {n: (by_param[id(p)]["lr"], by_param[id(p)]["weight_decay"])
             for n, p in names.items() if id(p) in by_param}
    assert "frozen.weight" not in hyper
    assert hyper["backbone.0.weight"] == (pytest.approx(0.1), 0.05)
    assert hyper["backbone.1.weight"] == (pytest.approx(0.1), 0.01)  # BatchNorm
    assert hyper["query_feat.weight"] == (1.0, 0.02)  # embedding
    assert hyper["norm.bias"] == (1.0, 0.01)
    assert hyper["head.weight"] == (1.0, 0.05)
    assert hyper["relative_position_bias_table"] == (1.0, 0.0)


def test_full_model_clipping_clips_the_total_norm():
    model = TinyModel()
    cfg = solver_cfg(OPTIMIZER="SGD", MOMENTUM=0.0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
    optimizer = build_optimizer(cfg, model)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.full_like(p, 10.0)
    optimizer.step()
    total = torch.norm(torch.stack([p.grad.norm() for p in params]))
    assert total == pytest.approx(0.01, rel=1e-3)
    per_param = [p.grad.abs().max().item() for p in params]
    assert max(per_param) == pytest.approx(min(per_param))  # one scale for all parameters


def test_adamw_without_clipping_and_unknown_optimizer():
    model = TinyModel()
    assert isinstance(build_optimizer(solver_cfg(), model), torch.optim.AdamW)
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(solver_cfg(OPTIMIZER="LAMB"), model)


def test_poly_lr_schedule():
    model = TinyModel()
    cfg = solver_cfg(LR_SCHEDULER_NAME="WarmupPolyLR", MAX_ITER=10, WARMUP_ITERS=0,
                     POLY_LR_POWER=0.9)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    head = next(g for g in optimizer.param_groups if g["params"][0] is model.head.weight)
    lrs = []
    for _ in range(5):
        lrs.append(head["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1e-4 * (1 - t / 10) ** 0.9 for t in range(5)]
    assert lrs == pytest.approx(expected)
