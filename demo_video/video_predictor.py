"""
Run a video Mask2Former model over a video of any length, in windows of frames, and draw each
predicted track with one colour and its class and score in every frame.

Window policy: the video is read in windows of ``window`` frames; consecutive windows share
``overlap`` frames. The model sees one window at a time (memory is bounded by the window, not
the video). Tracks of a window are linked to those of the previous window by their mask IoU
over the shared frames (summed intersections over summed unions, the YouTube-VIS IoU),
one-to-one by the Hungarian algorithm; a pair with IoU >= ``link_iou`` continues the earlier
track (same id and colour), any other track starts a new one. Shared frames are drawn with the
earlier window's predictions.
"""
from collections import deque

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.modeling import build_model
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer
from scipy.optimize import linear_sum_assignment

from mask2former.checkpoint import MaskFormerCheckpointer

# Drawings of smaller frames are upscaled to this size (pixels, longer side) so labels stay legible.
MIN_DRAWING_SIZE = 512
_COLORS = colormap(rgb=True, maximum=1)


class VideoPredictor:
    """
    The model of ``cfg`` with MODEL.WEIGHTS (which must fit it: a checkpoint with parameters of
    other shapes is an error naming them), in eval mode: BGR frames in, the model's output for
    them as one clip out (frames resized to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg).eval()
        self.metadata = self.model.metadata
        MaskFormerCheckpointer(self.model, require_matching_shapes=True).load(cfg.MODEL.WEIGHTS)
        self.resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, frames_bgr):
        """
        Args:
            frames_bgr: list of T (H, W, 3) uint8 BGR frames of the same size.

        Returns:
            dict: "pred_scores", "pred_labels", "pred_masks" (list of (T, H, W) bool tensors).
        """
        height, width = frames_bgr[0].shape[:2]
        transform = self.resize.get_transform(frames_bgr[0])
        images = []
        for frame in frames_bgr:
            image = frame[:, :, ::-1] if self.input_format == "RGB" else frame
            image = transform.apply_image(image)
            images.append(torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))))
        with torch.no_grad():
            return self.model([{"image": images, "height": height, "width": width}])[0]


def link_tracks(previous, current, link_iou):
    """
    Args:
        previous: list of (track id, (O, H, W) bool masks on the shared frames).
        current: list of (O, H, W) bool masks of the new window's tracks on the same frames.
        link_iou: the least IoU that continues a track.

    Returns:
        list: for each current track, the id of the previous track it continues, or None.
    """
    links = [None] * len(current)
    if not previous or not current:
        return links
    old = torch.stack([m for _, m in previous]).flatten(1).float()
    new = torch.stack(current).flatten(1).float()
    intersection = new @ old.T
    union = new.sum(1)[:, None] + old.sum(1)[None, :] - intersection
    iou = (intersection / union.clamp(min=1)).numpy()
    for i, j in zip(*linear_sum_assignment(-iou)):
        if iou[i, j] >= link_iou:
            links[i] = previous[j][0]
    return links


class VideoVisualizer:
    """
    Tracks and draws a video window by window (see the module docstring).

    Args:
        predictor: a :class:`VideoPredictor`.
        window, overlap: frames per window and frames shared by consecutive windows.
        confidence_threshold: tracks below this score are neither drawn nor linked.
        link_iou: least IoU over the shared frames that continues a track.
    """

    def __init__(self, predictor, window=30, overlap=5, confidence_threshold=0.5, link_iou=0.5):
        if not 0 <= overlap < window:
            raise ValueError(f"need 0 <= overlap < window, got overlap {overlap}, window {window}")
        self.predictor = predictor
        self.metadata = predictor.metadata
        self.window, self.overlap = window, overlap
        self.confidence_threshold = confidence_threshold
        self.link_iou = link_iou

    def run(self, frames_bgr):
        """
        Args:
            frames_bgr: iterable of (H, W, 3) uint8 BGR frames.

        Yields:
            (H', W', 3) uint8 BGR frames with the tracks drawn (H', W' upscaled for small
            videos), one per input frame, in order.
        """
        buffer = deque()
        previous, next_id, first = [], 0, True
        for frame in frames_bgr:
            buffer.append(frame)
            if len(buffer) == self.window:
                drawn, previous, next_id = self._process(list(buffer), previous, next_id, first)
                yield from drawn
                first = False
                for _ in range(self.window - self.overlap):
                    buffer.popleft()
        if buffer and (first or len(buffer) > self.overlap):
            drawn, _, _ = self._process(list(buffer), previous, next_id, first)
            yield from drawn

    def _process(self, frames, previous, next_id, first):
        prediction = self.predictor(frames)
        tracks = [(score, label, masks.cpu()) for score, label, masks in zip(
            prediction["pred_scores"], prediction["pred_labels"], prediction["pred_masks"])
            if score >= self.confidence_threshold]
        shared = 0 if first else min(self.overlap, len(frames))
        links = link_tracks(previous, [m[:shared] for _, _, m in tracks], self.link_iou)
        ids = []
        for link in links:
            if link is None:
                link, next_id = next_id, next_id + 1
            ids.append(link)
        drawn = [self._draw(frames[t], [(i, s, label, m[t]) for i, (s, label, m)
                                        in zip(ids, tracks)])
                 for t in range(shared, len(frames))]
        tail = [(i, m[len(frames) - self.overlap:]) for i, (_, _, m) in zip(ids, tracks)]
        return drawn, tail, next_id

    def _draw(self, frame_bgr, tracks):
        """Draw (track id, score, label, (H, W) mask) of the tracks over one frame."""
        rgb = convert_image_to_rgb(frame_bgr, "BGR")
        scale = max(1.0, MIN_DRAWING_SIZE / max(rgb.shape[:2]))
        visualizer = Visualizer(rgb, self.metadata, scale=scale, instance_mode=ColorMode.IMAGE)
        tracks = [t for t in tracks if t[3].any()]
        names = self.metadata.get("thing_classes", None)
        vis = visualizer.overlay_instances(
            masks=[m.numpy() for _, _, _, m in tracks],
            labels=[f"{names[label] if names else label} {score:.0%}"
                    for _, score, label, _ in tracks],
            assigned_colors=[_COLORS[i % len(_COLORS)] for i, _, _, _ in tracks],
        )
        return vis.get_image()[:, :, ::-1]
