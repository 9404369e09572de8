"""
What the web app (demo/app.py) does with an upload, without the web page: check it, run the
demo's prediction path on it (demo/predictor.py for images and per-frame video, the video
demo's tracker for video models), and write the results into a folder of its own under the
app's output folder.

Images are read by ``mask2former.data.image_io.read_image`` as demo.py reads them (EXIF
orientation, CMYK, 16-bit and float images); the model computes only the requested task, a
semantic map as labels, in the bounded-memory post-processing (``compute_only_drawn_task``,
MODEL.MASK_FORMER.TEST.POSTPROCESS_CHUNK_MB). A file that cannot be read, or that exceeds the
limits, raises :class:`UploadError` with a message for the person who sent it.
"""
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from freed_memory import returning_freed_memory
from h264_writer import H264Writer
from prediction_files import write_prediction_files
from predictor import (
    MaskFormerPredictor,
    VisualizationDemo,
    compute_only_drawn_task,
    enabled_tasks,
    fit_for_drawing,
    read_frames,
    segments,
)

from mask2former.data.image_io import ImageReadError, read_image
from mask2former.engine import install_adaptive_threads

logger = logging.getLogger(__name__)

# How reading an image changed it, by Pillow mode, said beside the result.
_CONVERSIONS = {
    "CMYK": "CMYK image: converted to RGB",
    "I;16": "16-bit image: scaled to 8 bits",
    "I;16B": "16-bit image: scaled to 8 bits",
    "I;16L": "16-bit image: scaled to 8 bits",
    "I": "32-bit integer image: scaled to 8 bits",
    "F": "floating-point image: scaled to 8 bits",
}


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")


class UploadError(Exception):
    """An upload the app cannot segment; the message says why and what to do, for the user."""


@dataclass
class UploadLimits:
    """
    Largest uploads the app takes.

    Attributes:
        megapixels: image (or video frame) width x height, in millions of pixels.
        file_mb: file size in MiB (the web server refuses larger uploads).
        video_frames: frames of a video.
    """

    megapixels: float = 100.0
    file_mb: float = 500.0
    video_frames: int = 3000


@dataclass
class ImageResult:
    """
    One segmented image.

    Attributes:
        task: the task computed ("panoptic", "instance" or "semantic").
        folder: the job's folder, holding ``files``.
        overlay: path of the drawn predictions (PNG).
        files: paths of the overlay and the prediction files (demo/prediction_files.py).
        segments: the table of segments (``predictor.segments``) above the threshold.
        image_pixels: height x width of the image.
        source: path of the segmented file.
        confidence_threshold: the threshold the instances and the table were taken with.
        notes: how reading the file changed it (e.g. "CMYK image: converted to RGB").
        drawable: (image RGB, predictions) at the drawing size, to draw again.
    """

    task: str
    folder: str
    overlay: str
    files: list
    segments: list
    image_pixels: int
    source: str
    confidence_threshold: float
    notes: list = field(default_factory=list)
    drawable: tuple = None


def safe_stem(path, default="upload"):
    """The file name of ``path`` without extension, reduced to letters, digits, ``._-``."""
    stem = os.path.splitext(os.path.basename(path or ""))[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:64]
    return stem or default


class SegmentationJobs:
    """
    The model of one config and the jobs of the app on it, one at a time (the web server
    queues them).

    Args:
        cfg: the model's config (not frozen; MODEL.WEIGHTS a checkpoint or an exported model).
        output_dir: the app's output folder; every job writes into ``output_dir/jobs/<id>``.
        limits: :class:`UploadLimits`.
        window, overlap: frames per window and shared frames of video models (demo_video).
    """

    def __init__(self, cfg, output_dir, limits=None, window=30, overlap=5):
        self.cfg = cfg
        self.jobs_dir = os.path.join(os.path.abspath(output_dir), "jobs")
        os.makedirs(self.jobs_dir, exist_ok=True)
        self.limits = limits or UploadLimits()
        self.window, self.overlap = window, overlap
        Image.MAX_IMAGE_PIXELS = int(self.limits.megapixels * 1e6)  # Pillow's own check
        self.is_video_model = cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
        self.tasks = [] if self.is_video_model else enabled_tasks(cfg)
        self._predictors = {}
        self._job_count = 0
        self._lock = threading.Lock()
        if self.is_video_model:
            from video_predictor import VideoPredictor

            frozen = cfg.clone()
            frozen.freeze()
            self.video_predictor = VideoPredictor(frozen)
            self.metadata = self.video_predictor.metadata
            install_adaptive_threads(self.video_predictor.model)
        else:
            self.metadata = self._predictor(self.tasks[0]).metadata

    def _predictor(self, task):
        """The predictor computing only ``task``; all tasks share the weights loaded first."""
        if task not in self._predictors:
            cfg = self.cfg.clone()
            compute_only_drawn_task(cfg, task)
            cfg.freeze()
            first = next(iter(self._predictors.values()), None)
            predictor = MaskFormerPredictor(cfg, weights_from=first)
            if first is None and hasattr(predictor.model, "parameters"):
                install_adaptive_threads(predictor.model)
            self._predictors[task] = predictor
        return self._predictors[task]

    def class_names(self):
        """Names of the model's classes, by contiguous id."""
        return list(self.metadata.get("stuff_classes", None) or self.metadata.thing_classes)

    def _new_job_folder(self, stem):
        with self._lock:
            self._job_count += 1
            name = f"{self._job_count:05d}-{secrets.token_hex(4)}-{stem}"
        folder = os.path.join(self.jobs_dir, name)
        os.makedirs(folder)
        return folder

    def _check_task(self, task):
        if self.is_video_model:
            raise UploadError("This is a video model: segment videos (the Video tab).")
        if task not in self.tasks:
            raise UploadError(
                f"The model computes {', '.join(self.tasks)}, not {task}; enable it with "
                f"MODEL.MASK_FORMER.TEST.{str(task).upper()}_ON True"
            )

    def read_image(self, path):
        """
        The uploaded image as an (H, W, 3) uint8 BGR array, read as demo.py reads it, and
        notes on how reading changed it. Raises :class:`UploadError` naming the file.
        """
        name = os.path.basename(path)
        self._check_file_size(path, name)
        mode = size = None
        try:  # the header only: a file over the limits is refused before it is decoded
            with Image.open(path) as image:
                mode, size = image.mode, image.size
        except Image.DecompressionBombError:
            raise UploadError(f"{name} is over {self.limits.megapixels:g} megapixels, the "
                              "largest image this app takes (--max-megapixels)") from None
        except (OSError, SyntaxError, ValueError):
            pass  # not identified by Pillow: read_image says what is wrong, or reads it
        if size:
            self._check_pixels(name, *size)
        try:
            image = read_image(path, format="BGR")
        except ImageReadError as e:
            extension = os.path.splitext(name)[1].lower()
            hint = (f" (a {extension} file: segment videos in the Video tab)"
                    if extension in VIDEO_EXTENSIONS else "")
            raise UploadError(str(e).replace(path, name) + hint) from None
        self._check_pixels(name, image.shape[1], image.shape[0])
        notes = [_CONVERSIONS[mode]] if mode in _CONVERSIONS else []
        return image, notes

    def _check_file_size(self, path, name):
        size_mb = os.path.getsize(path) / 2**20
        if size_mb > self.limits.file_mb:
            raise UploadError(f"{name} is {size_mb:.0f} MB; this app takes files of at most "
                              f"{self.limits.file_mb:g} MB (--max-file-mb)")

    def _check_pixels(self, name, width, height):
        megapixels = width * height / 1e6
        if megapixels > self.limits.megapixels:
            raise UploadError(
                f"{name} is {width} x {height} pixels ({megapixels:.1f} megapixels); this app "
                f"takes images of at most {self.limits.megapixels:g} megapixels "
                "(--max-megapixels): make it smaller"
            )

    @returning_freed_memory
    def segment_image(self, path, task, confidence_threshold):
        """
        Segment an uploaded image for ``task``; write the overlay and the prediction files.
        The memory the job freed goes back to the system (demo/freed_memory.py).

        Returns:
            :class:`ImageResult`.
        """
        self._check_task(task)
        image_bgr, notes = self.read_image(path)
        demo = VisualizationDemo(None, confidence_threshold, task, self._predictor(task))
        predictions, drawn = demo.run_on_image(image_bgr)
        stem = safe_stem(path)
        folder = self._new_job_folder(stem)
        overlay = os.path.join(folder, f"{stem}_overlay.png")
        cv2.imwrite(overlay, drawn.get_image()[:, :, ::-1])
        files = write_prediction_files(folder, predictions, task, self.metadata, stem,
                                       confidence_threshold)
        table = segments(predictions, task, confidence_threshold)
        drawable = fit_for_drawing(image_bgr[:, :, ::-1], predictions, task)
        logger.info(f"{os.path.basename(path)}: {len(table)} {task} segments in {folder}")
        return ImageResult(task, folder, overlay, [overlay] + files, table,
                           image_bgr.shape[0] * image_bgr.shape[1], path, confidence_threshold,
                           notes, drawable)

    def redraw(self, result, hidden_classes, confidence_threshold):
        """Draw ``result`` again without the classes ``hidden_classes``; returns the PNG path."""
        demo = VisualizationDemo(None, confidence_threshold, result.task,
                                 self._predictor(result.task))
        drawn = demo.draw(*result.drawable, result.task, hidden_classes)
        stem = os.path.basename(result.overlay)[: -len("_overlay.png")]
        suffix = "-".join(str(c) for c in sorted(hidden_classes))
        path = os.path.join(result.folder, f"{stem}_overlay_without_{suffix}.png")
        cv2.imwrite(path, drawn.get_image()[:, :, ::-1])
        return path

    @returning_freed_memory
    def segment_video(self, path, task, confidence_threshold, progress=None):
        """
        Draw the predictions on every frame of an uploaded video: the tracks of a video
        model (demo_video), else ``task`` per frame (demo.py). ``progress(done, total)`` is
        called after each frame.
        The memory the job freed goes back to the system (demo/freed_memory.py).

        Returns:
            (path of the H.264 mp4, number of frames).
        """
        if not self.is_video_model:
            self._check_task(task)
        name = os.path.basename(path)
        self._check_file_size(path, name)
        total, fps = self._probe_video(path, name)
        stem = safe_stem(path, "video")
        out_path = os.path.join(self._new_job_folder(stem), f"{stem}.mp4")
        video = cv2.VideoCapture(path)
        try:
            with H264Writer(out_path, fps) as writer:
                for drawn in self._drawn_frames(video, task, confidence_threshold):
                    if writer.frames == self.limits.video_frames:  # the header's count was wrong
                        raise UploadError(self._too_many_frames(
                            name, f"more than {self.limits.video_frames}"))
                    writer.write(drawn)
                    if progress:
                        progress(writer.frames, max(total, writer.frames))
        finally:
            video.release()
        logger.info(f"{name}: {writer.frames} frames drawn into {out_path}")
        return out_path, writer.frames

    def _probe_video(self, path, name):
        """(frame count, frames per second) of a video that has a first frame within limits."""
        video = cv2.VideoCapture(path)
        try:
            if not video.isOpened() or not video.read()[0]:
                raise UploadError(f"Cannot read {name}: it is not a video that this app can "
                                  "decode (e.g. an mp4 of H.264 or MPEG-4 frames)")
            width = int(video.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self._check_pixels(name, width, height)
            total = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
            if total > self.limits.video_frames:
                raise UploadError(self._too_many_frames(name, total))
            return total, video.get(cv2.CAP_PROP_FPS) or 10.0
        finally:
            video.release()

    def _too_many_frames(self, name, count):
        """The message for a video of ``count`` (a number or words) frames, over the limit."""
        return (f"{name} has {count} frames; this app takes videos of at most "
                f"{self.limits.video_frames} frames (--max-video-frames)")

    def _drawn_frames(self, video, task, confidence_threshold):
        """BGR frames with the predictions drawn, one per frame of the opened ``video``."""
        if not self.is_video_model:
            demo = VisualizationDemo(None, confidence_threshold, task, self._predictor(task))
            return demo.run_on_video(video)
        from video_predictor import VideoVisualizer

        tracker = VideoVisualizer(self.video_predictor, window=self.window, overlap=self.overlap,
                                  confidence_threshold=confidence_threshold)
        return tracker.run(read_frames(video))


def example_inputs(folder, seed=0, size=128, clip_frames=24):
    """
    Write example inputs of the generated shapes dataset's kind into ``folder``: three scenes
    (JPEG) and a clip of moving shapes (H.264 mp4). Returns (image paths, clip path).
    """
    from mask2former.data.datasets.generated_shapes import render_scene, render_video

    os.makedirs(folder, exist_ok=True)
    images = []
    for index in range(3):
        path = os.path.join(folder, f"shapes_{index + 1}.jpg")
        if not os.path.exists(path):
            rgb, _, _ = render_scene(np.random.default_rng([seed, index]), size, size)
            Image.fromarray(rgb).save(path, quality=95)
        images.append(path)
    clip = os.path.join(folder, "shapes_clip.mp4")
    if not os.path.exists(clip):
        with H264Writer(clip, fps=8) as writer:
            for frame in render_video(seed, clip_frames, size, size):
                writer.write(frame[:, :, ::-1])
    return images, clip
