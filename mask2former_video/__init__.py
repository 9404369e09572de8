"""
Video Mask2Former for Detectron2 (video instance segmentation on YouTube-VIS): importing this
package registers its meta-architecture, decoder and datasets (and those of mask2former).
"""
import mask2former  # noqa: F401  registers the image components the video model reuses

from . import data_video, evaluation, modeling
from .config import add_maskformer2_video_config, get_maskformer2_video_cfg
from .video_maskformer_model import VideoMaskFormer

__all__ = ["add_maskformer2_video_config", "get_maskformer2_video_cfg", "VideoMaskFormer"]
