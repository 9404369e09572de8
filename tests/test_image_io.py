"""
Reading the image files users bring: every format to the right 8-bit RGB / BGR, or a named
error.
"""
import cv2
import numpy as np
import pytest
from PIL import Image

from mask2former.data.image_io import ImageReadError, read_image

from image_files import write_readable_images, write_unreadable_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return folder, write_readable_images(folder)


@pytest.mark.parametrize(
    "name",
    ["gray16.png", "float.tif", "palette.png", "gray_alpha.png", "rgba.png", "cmyk.jpg",
     "image.webp", "rotated.jpg", "tiny_5x3.png"],
)
def test_formats_read_to_8_bit_rgb_and_bgr(files, name):
    folder, expected = files
    rgb, tolerance = expected[name]
    image = read_image(str(folder / name), format="RGB")
    assert image.dtype == np.uint8 and image.shape == rgb.shape
    error = np.abs(image.astype(int) - rgb)
    # Lossless formats exactly; JPEGs (lossy) within a mean error (a wrong orientation or
    # channel order is off by far more).
    assert (error.mean() if tolerance else error.max()) <= tolerance
    bgr = read_image(str(folder / name), format="BGR")
    np.testing.assert_array_equal(bgr, image[:, :, ::-1])


def test_16_bit_png_is_scaled_not_clipped(files):
    folder, _ = files
    image = read_image(str(folder / "gray16.png"), format="RGB")
    # Clipping to 8 bits (Detectron2's read_image) makes nearly all of this ramp 255.
    assert (image == 255).mean() < 0.01 and image.max() == 254


def test_multichannel_float_and_16_bit_tiffs(tmp_path):
    rgb = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32)
    uncompressed = [cv2.IMWRITE_TIFF_COMPRESSION, 1]  # OpenCV's default for float is lossy
    cv2.imwrite(str(tmp_path / "rgb_float.tif"), np.ascontiguousarray(rgb[:, :, ::-1]),
                uncompressed)
    image = read_image(str(tmp_path / "rgb_float.tif"), format="RGB")
    np.testing.assert_array_equal(image, np.round(rgb * 255).astype(np.uint8))
    rgb16 = (rgb * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.tif"), np.ascontiguousarray(rgb16[:, :, ::-1]))
    image = read_image(str(tmp_path / "rgb16.tif"), format="RGB")
    assert np.abs(image.astype(int) - np.round(rgb16 / 257)).max() <= 1


def test_float_image_out_of_range_is_refused_with_the_fix(tmp_path):
    Image.fromarray(np.full((4, 4), 1000.0, np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageReadError, match="hdr.tif") as error:
        read_image(str(tmp_path / "hdr.tif"), format="RGB")
    assert "convert it to an 8-bit image" in str(error.value)


def test_label_maps_keep_their_values(tmp_path):
    labels = np.array([[0, 300], [1000, 65535]], dtype=np.uint16)
    Image.fromarray(labels).save(tmp_path / "labels.png")
    np.testing.assert_array_equal(read_image(str(tmp_path / "labels.png")), labels)


def test_unreadable_files_are_named(files, tmp_path):
    folder, _ = files
    for name in write_unreadable_files(tmp_path, folder / "cmyk.jpg"):
        with pytest.raises(ImageReadError, match=name):
            read_image(str(tmp_path / name), format="BGR")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(str(tmp_path / "missing.jpg"), format="BGR")
