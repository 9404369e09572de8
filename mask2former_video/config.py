"""Config keys of video Mask2Former (:func:`add_maskformer2_video_config`) and its loader."""
from mask2former.config import get_maskformer2_cfg


def add_maskformer2_video_config(cfg):
    """
    Add the video keys and their defaults to ``cfg`` (after ``add_maskformer2_config``).
    """
    # Frames per training clip (T). Inference reads every frame of a video.
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    # The other frames of a clip are drawn at most this many frames before or after a random
    # reference frame.
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20
    # Shuffle the frames of a clip (else they keep the video's order).
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    # Extra per-clip training augmentations by name: "brightness", "contrast", "saturation",
    # "rotation" (see mask2former_video/data_video/augmentation.py).
    cfg.INPUT.AUGMENTATIONS = []


def get_maskformer2_video_cfg(config_file=None, opts=()):
    """
    :func:`~mask2former.config.get_maskformer2_cfg` with the video keys: a config merged with
    ``config_file`` and then ``opts``; not frozen.
    """
    return get_maskformer2_cfg(config_file, opts, add_configs=(add_maskformer2_video_config,))
