"""
The multi-scale deformable attention op: one function, two implementations.

``ms_deform_attn`` runs the native op (C++ on CPU, CUDA on GPU) when it is built, else the pure
PyTorch implementation; both take the same arguments and give equal results.
"""
from .ms_deform_attn_pytorch import ms_deform_attn_pytorch

ms_deform_attn = ms_deform_attn_pytorch

__all__ = ["ms_deform_attn", "ms_deform_attn_pytorch"]
