"""Run a Mask2Former model on images and video frames and draw its predictions."""
import logging

import cv2
import numpy as np
import torch
import detectron2.data.transforms as T
from detectron2.engine.defaults import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.utils.visualizer import ColorMode, Visualizer

from mask2former.checkpoint import MaskFormerCheckpointer
from mask2former.export import ExportedMaskFormer, is_exported_model
from mask2former.modeling.postprocessing import resize_results

logger = logging.getLogger(__name__)

TASKS = ("panoptic", "instance", "semantic")
# Model output keys of each task, the one drawn first (a semantic result is the label map, or the
# scores whose argmax is drawn: MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT).
_TASK_KEYS = {
    "panoptic": ("panoptic_seg",),
    "instance": ("instances",),
    "semantic": ("sem_seg_labels", "sem_seg"),
}
# Drawings of smaller images are upscaled to this size (pixels, longer side) so labels stay legible.
MIN_DRAWING_SIZE = 512
# Drawings of larger images are downscaled to this size: Detectron2's Visualizer (matplotlib)
# needs about 100 bytes per pixel, over 2 GiB to draw a 24-megapixel photo at full size.
MAX_DRAWING_SIZE = 2048


def fit_for_drawing(image_rgb, predictions, task):
    """
    The image and the predictions to draw for ``task``, both resized so that the longer side is
    at most ``MAX_DRAWING_SIZE`` (image by area averaging, predictions by nearest neighbour);
    semantic scores become their argmax first.
    """
    height, width = image_rgb.shape[:2]
    scale = MAX_DRAWING_SIZE / max(height, width)
    if scale >= 1:
        return image_rgb, predictions
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    image_rgb = cv2.resize(
        np.ascontiguousarray(image_rgb), size[::-1], interpolation=cv2.INTER_AREA
    )
    if task == "semantic" and "sem_seg_labels" not in predictions:
        predictions = dict(predictions, sem_seg_labels=predictions["sem_seg"].argmax(dim=0))
    key = _TASK_KEYS[task][0]
    return image_rgb, resize_results({key: predictions[key]}, size)


def compute_only_drawn_task(cfg, task):
    """
    The demo draws one task: let the model compute only that one, and a semantic map as
    labels (MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT), so that a large photo needs memory for
    one map, not for the (K, H, W) scores or the (N, H, W) instance masks it would not draw.
    ``task`` "auto": the first of ``TASKS`` that the config enables. A task the config does not
    enable leaves the config as it is (the predictor then says how to enable it).
    """
    drawn = task
    if task == "auto" and enabled_tasks(cfg):
        drawn = enabled_tasks(cfg)[0]
    if drawn not in enabled_tasks(cfg):
        return
    test = cfg.MODEL.MASK_FORMER.TEST
    for t in TASKS:
        test[f"{t.upper()}_ON"] = t == drawn
    test.SEMANTIC_OUTPUT = "labels"


def enabled_tasks(cfg):
    """The tasks of ``TASKS`` that the config enables (MODEL.MASK_FORMER.TEST.*_ON), in order."""
    return [t for t in TASKS if cfg.MODEL.MASK_FORMER.TEST.get(f"{t.upper()}_ON")]


def _pixel_counts(labels, length):
    """(length,) pixel count of each value of the (H, W) non-negative int map ``labels``."""
    return torch.bincount(labels.flatten().long(), minlength=length)[:length]


def segments(predictions, task, confidence_threshold=0.0):
    """
    The segments of one task's predictions, for a table or a legend.

    Args:
        predictions: the model's output dict for one image.
        task: one of ``TASKS``.
        confidence_threshold: instances under this score are left out.

    Returns:
        list of dicts: "class_id" (contiguous), "score" (None for stuff segments and semantic
        classes), "area" (pixels); panoptic segments in id order, instances by score,
        semantic classes by class id.
    """
    if task == "panoptic":
        panoptic_seg, segments_info = predictions["panoptic_seg"]
        counts = _pixel_counts(panoptic_seg.cpu(), len(segments_info) + 1).tolist()
        if any(s["id"] > len(segments_info) for s in segments_info):
            counts = _pixel_counts(panoptic_seg.cpu(), int(panoptic_seg.max()) + 1).tolist()
        return [{"class_id": int(s["category_id"]), "score": s.get("score"),
                 "area": counts[s["id"]]} for s in segments_info]
    if task == "instance":
        instances = predictions["instances"].to("cpu")
        instances = instances[instances.scores >= confidence_threshold]
        areas = instances.pred_masks.flatten(1).sum(1).tolist()
        return [{"class_id": int(c), "score": float(score), "area": int(area)} for c, score, area
                in zip(instances.pred_classes.tolist(), instances.scores.tolist(), areas)]
    labels = predictions.get("sem_seg_labels")
    if labels is None:
        labels = predictions["sem_seg"].argmax(dim=0)
    counts = torch.bincount(labels.cpu().flatten()).tolist()
    return [{"class_id": c, "score": None, "area": n} for c, n in enumerate(counts) if n]


def _without_classes(predictions, task, hidden, num_classes):
    """
    One task's predictions without the segments of the contiguous class ids ``hidden``; hidden
    semantic pixels get the label ``num_classes`` (the model's class count), which Detectron2's
    ``draw_sem_seg`` does not draw.
    """
    key = _TASK_KEYS[task][0]
    if task == "panoptic":
        panoptic_seg, segments_info = predictions[key]
        panoptic_seg = panoptic_seg.cpu()
        hidden_ids = [s["id"] for s in segments_info if s["category_id"] in hidden]
        panoptic_seg = panoptic_seg.masked_fill(
            torch.isin(panoptic_seg, torch.tensor(hidden_ids, dtype=panoptic_seg.dtype)), 0
        )
        shown = [s for s in segments_info if s["id"] not in hidden_ids]
        return {key: (panoptic_seg, shown)}
    if task == "instance":
        instances = predictions[key].to("cpu")
        keep = ~torch.isin(instances.pred_classes, torch.tensor(sorted(hidden)))
        return {key: instances[keep]}
    labels = predictions.get(key)
    if labels is None:
        labels = predictions["sem_seg"].argmax(dim=0)
    labels = labels.cpu()
    return {key: labels.masked_fill(torch.isin(labels, torch.tensor(sorted(hidden))), num_classes)}


def available_tasks(predictions):
    """Tasks whose outputs are in ``predictions`` (a model output dict), in ``TASKS`` order."""
    return [task for task in TASKS if any(key in predictions for key in _TASK_KEYS[task])]


def read_frames(video):
    """The (H, W, 3) uint8 BGR frames of an opened ``cv2.VideoCapture``, until it ends."""
    while video.isOpened():
        ok, frame = video.read()
        if not ok:
            return
        yield frame


class MaskFormerPredictor(DefaultPredictor):
    """
    Detectron2's ``DefaultPredictor`` (BGR image in, the model's output dict out, test-time
    resize, eval mode) whose weights must fit the model: a checkpoint holding parameters of
    other shapes (e.g. trained for another number of classes) is an error naming them, not a
    partly random model. ``metadata`` is the model's (the test dataset's, else the train one's).

    When MODEL.WEIGHTS names a model exported by tools/deploy/export_model.py (``.onnx``, run by
    ONNX Runtime, or TorchScript ``.ts``), that model runs instead of the PyTorch one; it must
    fit the config as well (class count, queries, input format, pixel mean and std).

    ``weights_from``: another ``MaskFormerPredictor`` of the same model whose weights (or
    exported model) this one uses instead of loading them again, e.g. a predictor of another
    task of the same checkpoint (``compute_only_drawn_task``).
    """

    def __init__(self, cfg, weights_from=None):
        self.cfg = cfg.clone()
        if is_exported_model(cfg.MODEL.WEIGHTS):
            runner = weights_from.model.runner if weights_from else None
            self.model = ExportedMaskFormer(self.cfg, runner=runner)
        else:
            self.model = build_model(self.cfg).eval()
            if weights_from:
                self.model.load_state_dict(weights_from.model.state_dict(), assign=True)
            else:
                MaskFormerCheckpointer(self.model, require_matching_shapes=True).load(
                    cfg.MODEL.WEIGHTS
                )
        self.metadata = self.model.metadata
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT


class VisualizationDemo:
    """
    A predictor (``MaskFormerPredictor``: BGR input, test-time resize, eval mode) and
    the drawing of its panoptic, instance or semantic predictions with class names and scores.

    Args:
        cfg: a frozen Detectron2 config of the model.
        confidence_threshold (float): instances below this score are not drawn.
        task (str): "auto" (panoptic, else instance, else semantic: the first the model outputs)
            or one of ``TASKS``.
        predictor: a ``MaskFormerPredictor`` of ``cfg`` already built; None: build one.
    """

    def __init__(self, cfg, confidence_threshold=0.5, task="auto", predictor=None):
        if task != "auto" and task not in TASKS:
            raise ValueError(f"task must be 'auto' or one of {TASKS}, got {task!r}")
        self.predictor = predictor or MaskFormerPredictor(cfg)
        self.metadata = self.predictor.metadata
        self.confidence_threshold = confidence_threshold
        self.task = task

    def task_for(self, predictions):
        """The task drawn for ``predictions``: the demo's, or with "auto" the first they hold."""
        tasks = available_tasks(predictions)
        if not tasks:
            raise ValueError(
                f"The model output has none of the outputs of {TASKS}: {list(predictions)}"
            )
        if self.task == "auto":
            return tasks[0]
        if self.task not in tasks:
            raise ValueError(
                f"--task {self.task}: the model does not output it (it outputs {tasks}); enable it "
                f"with MODEL.MASK_FORMER.TEST.{self.task.upper()}_ON True"
            )
        return self.task

    def draw(self, image_rgb, predictions, task=None, hidden_classes=()):
        """
        Draw one task's predictions over an image.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image.
            predictions: the model's output dict for the image.
            task: one of ``TASKS``; None: the demo's task.
            hidden_classes: contiguous class ids whose segments are not drawn.

        Returns:
            detectron2.utils.visualizer.VisImage: images smaller than ``MIN_DRAWING_SIZE`` are
            drawn upscaled to it, images larger than ``MAX_DRAWING_SIZE`` downscaled to it.
        """
        task = task or self.task_for(predictions)
        if task == "instance":
            instances = predictions["instances"].to("cpu")
            instances = instances[instances.scores >= self.confidence_threshold]
            predictions = dict(predictions, instances=instances)
        image_rgb, predictions = fit_for_drawing(image_rgb, predictions, task)
        if hidden_classes:
            predictions = _without_classes(predictions, task, set(hidden_classes),
                                           len(self.metadata.get("stuff_classes", ())))
        scale = max(1.0, MIN_DRAWING_SIZE / max(image_rgb.shape[:2]))
        visualizer = Visualizer(
            image_rgb, self.metadata, scale=scale, instance_mode=ColorMode.IMAGE
        )
        if task == "panoptic":
            panoptic_seg, segments_info = predictions["panoptic_seg"]
            # (copies: Detectron2's drawing writes the drawn area into each segment's dict)
            segments_info = [dict(s) for s in segments_info]
            return visualizer.draw_panoptic_seg(panoptic_seg.to("cpu"), segments_info)
        if task == "instance":
            return visualizer.draw_instance_predictions(predictions["instances"])
        if "sem_seg_labels" in predictions:
            return visualizer.draw_sem_seg(predictions["sem_seg_labels"].to("cpu"))
        return visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).to("cpu"))

    def run_on_image(self, image_bgr):
        """
        Args:
            image_bgr: (H, W, 3) uint8 BGR image (OpenCV /
                ``mask2former.data.image_io.read_image(path, format="BGR")``).

        Returns:
            predictions (dict): the model output for the image.
            vis_output (VisImage): the drawn predictions.
        """
        predictions = self.predictor(image_bgr)
        return predictions, self.draw(image_bgr[:, :, ::-1], predictions)

    def run_on_video(self, video):
        """
        Args:
            video (cv2.VideoCapture): an opened video or webcam.

        Yields:
            (H, W, 3) uint8 BGR frames with the predictions drawn.
        """
        for frame in read_frames(video):
            _, vis = self.run_on_image(frame)
            yield cv2.cvtColor(vis.get_image(), cv2.COLOR_RGB2BGR)
