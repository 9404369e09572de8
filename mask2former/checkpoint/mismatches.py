"""
Tensors of a checkpoint whose shapes differ from the model's, found and listed for the log
(:mod:`.checkpointer` and :mod:`.class_head` name them in their messages).
"""
from typing import Dict, List, Sequence, Tuple

__all__ = ["shape_mismatches", "describe_mismatches"]

Mismatch = Tuple[str, Tuple[int, ...], Tuple[int, ...]]


def shape_mismatches(
    model_shapes: Dict[str, Tuple[int, ...]], checkpoint_shapes: Dict[str, Tuple[int, ...]]
) -> List[Mismatch]:
    """
    Entries present in both, with different shapes: [(name, checkpoint shape, model shape)],
    sorted by name.
    """
    return [
        (name, checkpoint_shapes[name], shape)
        for name, shape in sorted(model_shapes.items())
        if name in checkpoint_shapes and checkpoint_shapes[name] != shape
    ]


def describe_mismatches(mismatches: Sequence[Mismatch]) -> str:
    """One line per mismatch: "  <name>: checkpoint <shape>, model <shape>"."""
    return "\n".join(f"  {name}: checkpoint {checkpoint_shape}, model {model_shape}"
                     for name, checkpoint_shape, model_shape in mismatches)
