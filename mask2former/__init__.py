"""
Mask2Former for Detectron2: importing this package registers its models, datasets and mappers.

Where torch or Detectron2 is not installed (a deployment with numpy and onnxruntime only) the
package imports without them, and only :mod:`mask2former.deploy` is usable.
"""
import importlib.util

if importlib.util.find_spec("torch") and importlib.util.find_spec("detectron2"):
    from .config import add_maskformer2_config
    from . import data
    from . import modeling
    from .maskformer_model import MaskFormer

    __all__ = ["add_maskformer2_config", "MaskFormer"]
