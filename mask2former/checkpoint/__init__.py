"""
Checkpoints, loading and saving in one place (``checkpointer.py``): the loading that names
what was not loaded (the tensors of other shapes: ``mismatches.py``), the class head of a
checkpoint trained for other classes (``class_head.py``), and files written whole or not at
all (``atomic.py``).
"""
from .atomic import atomic_write
from .checkpointer import MaskFormerCheckpointer
from .class_head import (
    ClassHeadInit,
    build_class_head_init,
    dataset_class_names,
    training_class_names,
)
from .mismatches import shape_mismatches

__all__ = [
    "ClassHeadInit",
    "MaskFormerCheckpointer",
    "atomic_write",
    "build_class_head_init",
    "dataset_class_names",
    "shape_mismatches",
    "training_class_names",
]
