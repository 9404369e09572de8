"""
Reading image files, in one place for the demo, the dataset mappers and the evaluators' inputs.

:func:`read_image` is Detectron2's ``read_image`` (EXIF orientation applied, an (H, W, C)
uint8 array in a PIL mode, "BGR" or "YUV-BT.601") that also reads right what Detectron2 reads
wrong or not at all:

* 16-bit images (grayscale PNG/TIFF, Pillow mode "I;16"/"I"): scaled to 8 bits (65535 -> 255);
  Detectron2 clips them, so most of such an image reads as white.
* float images (Pillow mode "F", and the multi-channel float or 16-bit TIFFs that Pillow cannot
  open, read with OpenCV): values in [0, 1] scaled by 255, values in [0, 255] kept; others are
  refused with a message saying how to convert the file.
* palette (with or without transparency), grayscale with alpha (LA), RGBA, CMYK, 1-bit:
  converted by Pillow (alpha dropped, as Detectron2 does).

A file that cannot be read (missing, empty, truncated, not an image) raises
:class:`ImageReadError` naming it. ``format=None`` returns the stored values unchanged (label
maps: class ids are not intensities and are never rescaled).
"""
import numpy as np
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager
from PIL import Image, ImageOps

__all__ = ["ImageReadError", "read_image"]

# Pillow modes of 16- and 32-bit integer single-channel images.
_WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageReadError(OSError):
    """A file that is not a readable image, or one whose values cannot be made 8-bit."""


def read_image(file_name, format=None):
    """
    Read an image file into an array, EXIF orientation applied.

    Args:
        file_name (str): path of the image (any path Detectron2's PathManager opens).
        format (str or None): "BGR", "RGB", "L" or another Pillow mode, or "YUV-BT.601"
            (as Detectron2's ``read_image``); None: the stored values, unconverted.

    Returns:
        ndarray: (H, W, C) uint8 for 8-bit formats ((H, W) for ``format=None`` single-channel
        files, which keep their dtype).

    Raises:
        ImageReadError: naming the file, when it is missing, empty, truncated, not an image, or
            has values that cannot be mapped to 8 bits.
    """
    try:
        with PathManager.open(file_name, "rb") as f:
            image = Image.open(f)
            image.load()
    except FileNotFoundError as e:
        raise ImageReadError(f"Cannot read {file_name}: the file does not exist") from e
    except Image.UnidentifiedImageError:
        return _read_with_opencv(file_name, format)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(
            f"Cannot read {file_name}: the file is truncated or damaged ({e})"
        ) from e
    image = _exif_transposed(image)
    if format is None:
        return np.asarray(image)
    if image.mode in _WIDE_INTEGER_MODES or image.mode == "F":
        image = Image.fromarray(_to_uint8(np.asarray(image), file_name, image.mode))
    return convert_PIL_to_numpy(image, format)


def _exif_transposed(image):
    """The image turned upright by its EXIF orientation tag (unchanged if it has none)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF data: use the pixels as stored
        return image


def _to_uint8(values, file_name, kind):
    """
    Map 16-bit integer or float pixel values to uint8: integers by 255 / 65535, floats in
    [0, 1] by 255, floats in [0, 255] as they are; anything else is refused.
    """
    if values.dtype.kind in "ui":
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(
                f"Cannot read {file_name}: its {kind} pixel values span "
                f"[{values.min()}, {values.max()}], outside the 16-bit range; convert it to an "
                "8-bit image (e.g. scale to 0-255 and save as PNG)"
            )
        if values.dtype.itemsize == 1:
            return values
        return ((values.astype(np.float32) * (255 / 65535)) + 0.5).astype(np.uint8)
    finite = np.isfinite(values).all()
    low, high = (float(values.min()), float(values.max())) if finite else (None, None)
    if not finite or low < 0 or high > 255:
        raise ImageReadError(
            f"Cannot read {file_name}: its {kind} float pixel values "
            f"{'are not all finite' if not finite else f'span [{low:g}, {high:g}]'}; only [0, 1] "
            "or [0, 255] can be mapped to 8 bits: convert it to an 8-bit image (e.g. scale to "
            "0-255 and save as PNG)"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    return (values.astype(np.float32) * scale + 0.5).astype(np.uint8)


def _read_with_opencv(file_name, format):
    """Files Pillow cannot identify: OpenCV reads multi-channel 16-bit and float TIFFs."""
    import cv2

    with PathManager.open(file_name, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageReadError(
            f"Cannot read {file_name}: it is empty or not an image file (neither Pillow nor "
            "OpenCV can decode it)"
        )
    if format is None:
        return image
    if image.dtype != np.uint8:
        image = _to_uint8(image, file_name, str(image.dtype))
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return convert_PIL_to_numpy(Image.fromarray(image), format)
