"""
Process-wide CUDA settings from the config (FLOAT32_MATMUL_PRECISION), applied at start-up as
Detectron2's ``default_setup`` applies CUDNN_BENCHMARK; nothing changes for a CPU run.
"""
import logging

import torch

__all__ = ["apply_cuda_settings"]

FLOAT32_MATMUL_PRECISIONS = ("", "highest", "high", "medium")


def apply_cuda_settings(cfg):
    """
    Sets ``torch.set_float32_matmul_precision(cfg.FLOAT32_MATMUL_PRECISION)`` when the model
    runs on CUDA and the key is not "" (see mask2former/config.py); raises a ValueError naming
    the key for an unknown value.
    """
    precision = cfg.FLOAT32_MATMUL_PRECISION
    if precision not in FLOAT32_MATMUL_PRECISIONS:
        raise ValueError(
            f"FLOAT32_MATMUL_PRECISION={precision!r}: use one of "
            f"{', '.join(repr(p) for p in FLOAT32_MATMUL_PRECISIONS)} ('' keeps PyTorch's "
            "setting, 'high' allows TF32)."
        )
    if precision and cfg.MODEL.DEVICE.startswith("cuda"):
        torch.set_float32_matmul_precision(precision)
        logging.getLogger(__name__).info(
            "float32 matrix multiplications on CUDA: precision %r (FLOAT32_MATMUL_PRECISION).",
            precision,
        )
