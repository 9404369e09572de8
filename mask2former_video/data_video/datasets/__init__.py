"""
Video dataset registration. Importing ``mask2former_video.data_video`` registers YouTube-VIS 2019
and 2021 (``ytvis_{2019,2021}_{train,val,test}``) and the generated shapes videos
(``shapes_video_{train,val}``) with files under ``$DETECTRON2_DATASETS`` (default ``datasets``);
call :func:`register_all_video` to register them again for another root.
"""
import os

from .builtin import register_all_ytvis
from .generated_shapes_video import register_generated_shapes_video
from .ytvis import load_ytvis_json, register_ytvis_instances, ytvis_metadata


def register_all_video(root):
    """Register (or re-register) all video datasets with their files under ``root``."""
    register_all_ytvis(root)
    register_generated_shapes_video(os.path.join(root, "generated", "shapes_video"))


register_all_video(os.getenv("DETECTRON2_DATASETS", "datasets"))

__all__ = ["load_ytvis_json", "register_all_video", "register_ytvis_instances", "ytvis_metadata"]
