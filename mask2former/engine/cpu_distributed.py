"""
The two pieces Detectron2's training lacks for multi-process training on CPUs (Gloo):

* ``DistributedDataParallel`` of a CPU model: Detectron2's ``create_ddp_model`` (used by
  ``DefaultTrainer``) passes ``device_ids=[local_rank]``, which torch refuses for CPU modules;
  :func:`create_ddp_model` passes ``device_ids=None`` for them (and the model's GPU for a GPU
  model) and defers to Detectron2's.
* SyncBN (``MODEL.RESNETS.NORM: "SyncBN"``, e.g. the Cityscapes and Mapillary Vistas configs):
  ``torch.nn.SyncBatchNorm`` only synchronizes GPU tensors and raises on CPU inputs in a
  process group; :func:`convert_sync_batchnorm_on_cpu` swaps it for Detectron2's
  ``NaiveSyncBatchNorm``, which all-reduces the same batch statistics through any backend.
"""
import contextlib
import importlib
import logging

from torch import nn

from detectron2.engine import create_ddp_model as d2_create_ddp_model
from detectron2.layers import NaiveSyncBatchNorm

__all__ = ["create_ddp_model", "ddp_on_cpu_in_default_trainer", "convert_sync_batchnorm_on_cpu"]

logger = logging.getLogger(__name__)


def _on_cpu(model):
    return all(p.device.type == "cpu" for p in model.parameters())


def create_ddp_model(model, **kwargs):
    """
    Detectron2's ``create_ddp_model`` (the model itself in a single process, else wrapped in
    ``DistributedDataParallel``), with ``device_ids=None`` for a model on the CPU and the
    model's own GPU for a model on a GPU: Detectron2 passes the local rank, which is no device
    where each task sees one GPU (``srun --gpus-per-task=1``: device 0 in every task).
    """
    if _on_cpu(model):
        kwargs.setdefault("device_ids", None)
    else:
        kwargs.setdefault("device_ids", [next(model.parameters()).device.index])
    return d2_create_ddp_model(model, **kwargs)


@contextlib.contextmanager
def ddp_on_cpu_in_default_trainer():
    """
    Within this context, ``DefaultTrainer.__init__`` wraps its model with
    :func:`create_ddp_model` above (it looks ``create_ddp_model`` up in
    ``detectron2.engine.defaults`` when it runs), so that it also builds on CPU workers.
    """
    defaults = importlib.import_module("detectron2.engine.defaults")
    original = defaults.create_ddp_model
    defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        defaults.create_ddp_model = original


def convert_sync_batchnorm_on_cpu(model):
    """
    On a model whose parameters are on the CPU, replace every ``torch.nn.SyncBatchNorm`` by a
    Detectron2 ``NaiveSyncBatchNorm`` with the same parameters and buffers (same state-dict
    keys) and log a warning; GPU models are returned unchanged.

    Both normalize a training batch with the mean and variance over all workers' images
    (NaiveSyncBatchNorm assumes equal (N, H, W) on every worker, as with Detectron2's fixed
    per-worker batch and the configs' fixed crops); in a single process or in eval mode both
    are ``BatchNorm2d``. NaiveSyncBatchNorm updates ``running_var`` with the biased batch
    variance in multi-process training.

    Returns:
        nn.Module: ``model`` (converted in place), or the replacement if ``model`` itself is a
        SyncBatchNorm.
    """
    if not _on_cpu(model):
        return model
    converted = []

    def convert(module, name):
        if isinstance(module, nn.SyncBatchNorm):
            naive = NaiveSyncBatchNorm(module.num_features, eps=module.eps,
                                       momentum=module.momentum, affine=module.affine,
                                       track_running_stats=module.track_running_stats)
            naive.load_state_dict(module.state_dict())
            naive.train(module.training)
            converted.append(name)
            return naive
        for child_name, child in module.named_children():
            new_child = convert(child, f"{name}.{child_name}" if name else child_name)
            if new_child is not child:
                setattr(module, child_name, new_child)
        return module

    model = convert(model, "")
    if converted:
        logger.warning(
            "torch.nn.SyncBatchNorm does not run on CPU workers: %d SyncBN layers (e.g. %s, "
            "from a 'SyncBN' norm in the config) use Detectron2's NaiveSyncBatchNorm, which "
            "synchronizes the same batch statistics over all workers.",
            len(converted), converted[0],
        )
    return model
