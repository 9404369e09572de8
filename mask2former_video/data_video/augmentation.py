"""
Augmentation of video clips: each augmentation is drawn once per clip and applied to all of its
frames (so that objects keep their shape and place from frame to frame), or drawn per frame.
A per-clip augmentation replays the same random draws on every frame, so it also fits frames
that an earlier per-frame resize made of different sizes.

Config values (beside Detectron2's INPUT keys):

* INPUT.MIN_SIZE_TRAIN_SAMPLING: "choice_by_clip" / "range_by_clip" (one size per clip) or
  Detectron2's "choice" / "range" (one per frame);
* INPUT.RANDOM_FLIP: "flip_by_clip" (horizontal, one draw per clip), "horizontal" / "vertical"
  (one draw per frame) or "none";
* INPUT.CROP (when ENABLED): one crop per clip, before resizing, e.g. TYPE "absolute_range";
* INPUT.AUGMENTATIONS: names of extra per-clip augmentations: "brightness", "contrast",
  "saturation" (factors in [0.9, 1.1]) and "rotation" (up to 15 degrees).
"""
import numpy as np
from detectron2.data import transforms as T

__all__ = ["build_clip_augmentation", "apply_clip_augmentation"]

_EXTRA_AUGMENTATIONS = {
    "brightness": lambda: T.RandomBrightness(0.9, 1.1),
    "contrast": lambda: T.RandomContrast(0.9, 1.1),
    "saturation": lambda: T.RandomSaturation(0.9, 1.1),
    "rotation": lambda: T.RandomRotation(
        [-15, 15], expand=False, center=[(0.4, 0.4), (0.6, 0.6)], sample_style="range"
    ),
}
_BY_CLIP = "_by_clip"


def _resize(min_sizes, max_size, sample_style):
    """(ResizeShortestEdge, per_clip) for a Detectron2 or a "*_by_clip" sample style."""
    per_clip = sample_style.endswith(_BY_CLIP)
    style = sample_style[: -len(_BY_CLIP)] if per_clip else sample_style
    if style not in ("choice", "range"):
        raise ValueError(
            f"INPUT.MIN_SIZE_TRAIN_SAMPLING={sample_style!r}: use 'choice_by_clip', "
            "'range_by_clip', 'choice' or 'range'"
        )
    return T.ResizeShortestEdge(min_sizes, max_size, style), per_clip


def build_clip_augmentation(cfg, is_train):
    """
    Returns:
        list of (Augmentation, per_clip: bool), in the order they apply: for training crop,
        resize, flip and the extra augmentations; for inference the test resize (per clip).
    """
    if not is_train:
        size = cfg.INPUT.MIN_SIZE_TEST
        return [(T.ResizeShortestEdge(size, cfg.INPUT.MAX_SIZE_TEST, "choice"), True)]
    augmentations = []
    if cfg.INPUT.CROP.ENABLED:
        augmentations.append((T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE), True))
    augmentations.append(
        _resize(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
    )
    flip = cfg.INPUT.RANDOM_FLIP
    if flip == "flip_by_clip":
        augmentations.append((T.RandomFlip(horizontal=True, vertical=False), True))
    elif flip in ("horizontal", "vertical"):
        augmentations.append(
            (T.RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"), False)
        )
    elif flip != "none":
        raise ValueError(
            f"INPUT.RANDOM_FLIP={flip!r}: use 'flip_by_clip', 'horizontal', 'vertical' or 'none'"
        )
    for name in cfg.INPUT.AUGMENTATIONS:
        if name not in _EXTRA_AUGMENTATIONS:
            raise ValueError(
                f"INPUT.AUGMENTATIONS names {name!r}; known: {sorted(_EXTRA_AUGMENTATIONS)}"
            )
        augmentations.append((_EXTRA_AUGMENTATIONS[name](), True))
    return augmentations


def apply_clip_augmentation(augmentations, images):
    """
    Args:
        augmentations: list of (Augmentation, per_clip), see :func:`build_clip_augmentation`.
        images: list of T (H, W, C) uint8 frames of one clip, all of the same size.

    Returns:
        images: the T augmented frames.
        transforms: T :class:`TransformList`, the transforms applied to each frame (to apply
        to its annotations).
    """
    inputs = [T.AugInput(image) for image in images]
    transforms = [[] for _ in images]
    for augmentation, per_clip in augmentations:
        if per_clip:  # the same random draws for every frame (Detectron2 draws with numpy)
            state = np.random.get_state()
            drawn = []
            for aug_input in inputs:
                np.random.set_state(state)
                drawn.append(augmentation(aug_input))
        else:
            drawn = [augmentation(aug_input) for aug_input in inputs]
        for frame_transforms, transform in zip(transforms, drawn):
            frame_transforms.append(transform)
    return [x.image for x in inputs], [T.TransformList(t) for t in transforms]
