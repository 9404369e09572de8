"""The runner of exported models: images in, semantic / panoptic / instance results out."""
import dataclasses

import numpy as np

from .backends import open_backend
from .deploy_info import DeployInfo
from .postprocessing import inference_results
from .resize import resize_image, shortest_edge_size

__all__ = ["ExportedMask2Former"]


class ExportedMask2Former:
    """
    A Mask2Former exported by ``tools/deploy/export_model.py`` (ONNX or TorchScript), with the
    test-time resize and the inference of the PyTorch model around its graph.

    Example (numpy and onnxruntime only)::

        runner = ExportedMask2Former("output/export/model.onnx")
        results = runner(cv2.imread("a.jpg"))          # BGR, as Detectron2's DefaultPredictor
        panoptic_seg, segments_info = results["panoptic_seg"]
        names = runner.info.class_names()

    Attributes:
        info (DeployInfo): what the model file carries (input policy, metadata, ...).
        settings (InferenceSettings): the inference settings used, from the model file (the
            export config's ``MODEL.MASK_FORMER.TEST``) unless replaced, e.g. a label map
            instead of the (K, H, W) semantic scores for a large photo:
            ``runner.settings = dataclasses.replace(runner.settings, semantic_output="labels")``.
    """

    def __init__(self, path, *, num_threads=None, providers=None):
        """
        Args:
            path: the exported model file (.onnx, or a TorchScript .ts).
            num_threads: ONNX Runtime intra-op threads (None: one per core).
            providers: ONNX Runtime execution providers (None: the CPU).
        """
        self.path = path
        self.backend = open_backend(path, num_threads=num_threads, providers=providers)
        if self.backend.info_json is None:
            raise ValueError(
                f"{path} holds no Mask2Former deploy info: it was not written by "
                "tools/deploy/export_model.py"
            )
        self.info = DeployInfo.from_json(self.backend.info_json, source=path)
        self._check_output_shape()
        self.settings = dataclasses.replace(self.info.inference)

    def _check_output_shape(self):
        shape = self.backend.class_logits_shape
        expected = [self.info.num_queries, self.info.num_classes + 1]
        if shape is not None and list(shape[1:]) != expected:
            raise ValueError(
                f"{self.path}: its graph outputs class_logits of shape {shape}, its deploy info "
                f"says (batch, {expected[0]}, {expected[1]}); the file was altered after export"
            )

    def head_outputs(self, images):
        """
        Run the graph.

        Args:
            images: (3, H, W) or (B, 3, H, W), uint8 or float with 0-255 values, channels in
                ``info.input.input_format`` order; H, W >= ``info.input.min_image_size``.

        Returns:
            class_logits (B, Q, K + 1) and mask_logits (B, Q, H, W), float32.
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        min_size = self.info.input.min_image_size
        if images.ndim != 4 or images.shape[1] != 3 or min(images.shape[2:]) < min_size:
            raise ValueError(
                f"{self.path} takes images of shape (3, H, W) or (B, 3, H, W) with H, W >= "
                f"{min_size}, got {images.shape}; (H, W, 3) images go through __call__"
            )
        return self.backend(np.ascontiguousarray(images, dtype=np.float32))

    def inference(self, image, height=None, width=None):
        """
        The results of one image that already has the model's input size and format, as
        ``MaskFormer`` gives them for the input dict {"image", "height", "width"}.

        Args:
            image: (3, H, W) uint8 or float, channels in ``info.input.input_format`` order.
            height, width: output size (default (H, W)), usually the original image's size.

        Returns:
            dict of numpy results, see :mod:`mask2former.deploy.postprocessing`.
        """
        class_logits, mask_logits = self.head_outputs(image)
        height = image.shape[-2] if height is None else height
        width = image.shape[-1] if width is None else width
        return inference_results(class_logits[0], mask_logits[0], height, width, self.settings)

    def __call__(self, image, image_format="BGR"):
        """
        Results of one image at its own size, as Detectron2's ``DefaultPredictor`` gives them:
        the image is converted to the model's channel order and resized by the test-time
        policy (``info.input``: shortest edge, with Pillow's bilinear filter as Detectron2).

        Args:
            image: (H, W, 3) uint8, e.g. from ``cv2.imread`` (BGR).
            image_format: "BGR" or "RGB", the channel order of ``image``.

        Returns:
            dict of numpy results at (H, W).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"image_format must be 'BGR' or 'RGB', got {image_format!r}")
        policy = self.info.input
        if image_format != policy.input_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        new_size = shortest_edge_size(height, width, policy.min_size_test, policy.max_size_test)
        resized = resize_image(np.ascontiguousarray(image), *new_size)
        return self.inference(resized.transpose(2, 0, 1), height, width)
