"""
Image files of the formats users bring, written by the tests with the 8-bit RGB array that
reading each must give, and files that are not readable images.
"""
import numpy as np
from PIL import Image

# EXIF tag of the orientation; 6: the stored pixels must be turned 90 degrees clockwise.
EXIF_ORIENTATION = 0x0112


def gradient_rgb(height, width):
    """(H, W, 3) uint8: red along x, green along y, blue constant."""
    y, x = np.mgrid[0:height, 0:width]
    red = (x * 255 // max(1, width - 1)).astype(np.uint8)
    green = (y * 255 // max(1, height - 1)).astype(np.uint8)
    return np.stack([red, green, np.full_like(red, 60)], axis=-1)


def write_readable_images(folder):
    """
    Write one file per format into ``folder``.

    Returns:
        dict: file name -> (expected (H, W, 3) uint8 RGB array, mean abs error allowed for
        lossy files; 0: lossless, equal).
    """
    expected = {}

    gray16 = (np.arange(24 * 32).reshape(24, 32) * 85).astype(np.uint16)  # 0 .. 65195
    Image.fromarray(gray16).save(folder / "gray16.png")
    gray8 = np.round(gray16 / 257).astype(np.uint8)
    expected["gray16.png"] = (np.repeat(gray8[..., None], 3, axis=2), 0)

    float_gray = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    Image.fromarray(float_gray).save(folder / "float.tif")
    gray8 = np.round(float_gray * 255).astype(np.uint8)
    expected["float.tif"] = (np.repeat(gray8[..., None], 3, axis=2), 0)

    rgb = gradient_rgb(16, 24)
    palette = Image.fromarray(rgb).quantize(colors=16)
    palette.save(folder / "palette.png", transparency=0)
    expected["palette.png"] = (np.asarray(palette.convert("RGB")), 0)

    gray = rgb[..., 1]
    alpha = np.full_like(gray, 128)
    Image.fromarray(np.stack([gray, alpha], axis=-1), mode="LA").save(folder / "gray_alpha.png")
    expected["gray_alpha.png"] = (np.repeat(gray[..., None], 3, axis=2), 0)

    Image.fromarray(np.dstack([rgb, alpha])).save(folder / "rgba.png")
    expected["rgba.png"] = (rgb, 0)

    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    expected["cmyk.jpg"] = (rgb, 6)

    Image.fromarray(rgb).save(folder / "image.webp", lossless=True)
    expected["image.webp"] = (rgb, 0)

    tall = gradient_rgb(12, 20)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    # Stored sideways: turned back upright (90 degrees clockwise) when read.
    Image.fromarray(np.rot90(tall, k=1).copy()).save(folder / "rotated.jpg", exif=exif,
                                                       quality=95)
    expected["rotated.jpg"] = (tall, 6)

    tiny = gradient_rgb(3, 5)
    Image.fromarray(tiny).save(folder / "tiny_5x3.png")
    expected["tiny_5x3.png"] = (tiny, 0)
    return expected


def write_unreadable_files(folder, a_good_file):
    """Write an empty file, a truncated PNG and a text file named .png; returns their names."""
    (folder / "empty.jpg").write_bytes(b"")
    data = a_good_file.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("these are notes, not an image\n")
    return ["empty.jpg", "truncated.png", "notes.png"]
