"""
Mask2Former demo: draw panoptic, instance or semantic predictions on images, a video or a webcam.

    python demo/demo.py --config-file configs/shapes/maskformer2_R18_shapes.yaml \
        --input "images/*.jpg" --video-input clip.mp4 --output out/ \
        --opts MODEL.WEIGHTS output/main_job/model_final.pth

MODEL.WEIGHTS may name a model exported by tools/deploy/export_model.py (model.onnx, run by ONNX
Runtime, or model.ts, TorchScript) instead of a checkpoint.
"""
import argparse
import glob
import os
import sys
import time

import cv2
import torch
import tqdm
from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prediction_files import write_prediction_files  # noqa: E402
from predictor import TASKS, VisualizationDemo, compute_only_drawn_task  # noqa: E402

from mask2former.config import get_maskformer2_cfg  # noqa: E402
from mask2former.data.image_io import ImageReadError, read_image  # noqa: E402
from mask2former.engine import apply_cuda_settings, install_adaptive_threads  # noqa: E402

WINDOW_NAME = "mask2former"


def setup_cfg(args):
    opts = list(args.opts) + (["DATASETS.FILE", args.dataset] if args.dataset else [])
    cfg = get_maskformer2_cfg(args.config_file, opts)
    compute_only_drawn_task(cfg, args.task)
    cfg.freeze()
    apply_cuda_settings(cfg)
    return cfg


def get_parser():
    parser = argparse.ArgumentParser(description="Mask2Former demo for builtin configs")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--dataset", metavar="FILE",
                        help="dataset file whose class names and colors the drawings use "
                        "(DATASETS.FILE; a run's config.yaml already names it)")
    parser.add_argument("--webcam", action="store_true", help="take inputs from the webcam")
    parser.add_argument("--video-input", help="path to a video file")
    parser.add_argument(
        "--input", nargs="+", help="image files or glob patterns, e.g. 'directory/*.jpg'"
    )
    parser.add_argument(
        "--output",
        help="file or directory to save the drawn outputs to; if not given, show them in a window",
    )
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="minimum score of drawn instances"
    )
    parser.add_argument(
        "--task",
        choices=("auto",) + TASKS,
        default="auto",
        help="which predictions to draw; auto: panoptic, else instance, else semantic",
    )
    parser.add_argument(
        "--save-predictions",
        action="store_true",
        help="also write each image's predictions to --output (a folder) in the evaluators' "
        "formats: <name>_panoptic.png and .json, <name>_instances.json (COCO RLE), "
        "<name>_sem_seg.png (class ids)",
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config options as KEY VALUE pairs"
    )
    return parser


def expand_inputs(patterns):
    """Files named by ``patterns`` (paths or globs), in order; a pattern matching nothing stays."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        paths.extend(matches if matches else [pattern])
    return paths


def show(image_bgr, wait_ms):
    """Show an image in a window; returns the key pressed (27: Esc) as ``cv2.waitKey``."""
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        cv2.imshow(WINDOW_NAME, image_bgr)
        return cv2.waitKey(wait_ms)
    except cv2.error as e:
        raise SystemExit(f"Cannot open a window to show the output ({e}); pass --output DIR") from e


def process_images(demo, paths, output, logger, save_predictions=False):
    """
    Draw each image's predictions (and with ``save_predictions`` write them to the ``output``
    folder: prediction_files.py); unreadable files are reported, skipped and returned.
    """
    to_dir = output and _is_dir(output, len(paths) > 1 or save_predictions)
    if to_dir:
        os.makedirs(output, exist_ok=True)
    failed = []
    for path in tqdm.tqdm(paths, disable=not output):
        try:
            image = read_image(path, format="BGR")
        except ImageReadError as e:
            logger.error(f"Skipping {path}: {e}")
            failed.append(path)
            continue
        start = time.time()
        predictions, vis = demo.run_on_image(image)
        logger.info(f"{path}: {_describe(predictions)} in {time.time() - start:.2f}s")
        drawn = vis.get_image()[:, :, ::-1]
        if save_predictions:
            stem = os.path.splitext(os.path.basename(path))[0]
            write_prediction_files(output, predictions, demo.task_for(predictions),
                                   demo.metadata, stem, demo.confidence_threshold)
        if output:
            cv2.imwrite(os.path.join(output, os.path.basename(path)) if to_dir else output, drawn)
        elif show(drawn, 0) == 27:
            break
    return failed


def _is_dir(output, many):
    """Whether ``output`` is a directory: it is one, ends with a separator, or gets many files."""
    return many or output.endswith(os.sep) or os.path.isdir(output)


def _describe(predictions):
    parts = []
    if "panoptic_seg" in predictions:
        parts.append(f"{len(predictions['panoptic_seg'][1])} panoptic segments")
    if "instances" in predictions:
        parts.append(f"{len(predictions['instances'])} instances")
    if "sem_seg" in predictions or "sem_seg_labels" in predictions:
        parts.append("semantic map")
    return ", ".join(parts)


def open_video(path):
    video = cv2.VideoCapture(path)
    if not video.isOpened():
        raise SystemExit(
            f"Cannot open the video {path!r}: check that the file exists and is a video"
        )
    return video


def process_video(demo, path, output):
    """Draw the predictions on every frame of the video at ``path``; write an mp4 or show it."""
    video = open_video(path)
    fps = video.get(cv2.CAP_PROP_FPS) or 10.0
    num_frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
    out_path = output
    if output and _is_dir(output, False):
        os.makedirs(output, exist_ok=True)
        out_path = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".mp4")
    writer = None
    for frame in tqdm.tqdm(demo.run_on_video(video), total=num_frames, unit="frame"):
        if not output:
            if show(frame, 1) == 27:
                break
            continue
        if writer is None:  # drawn frames of small videos are upscaled: size from the first one
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(
                out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height)
            )
            if not writer.isOpened():
                raise SystemExit(f"Cannot write the video {out_path!r} with the mp4v codec")
        writer.write(frame)
    video.release()
    if writer is not None:
        writer.release()


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    logger = setup_logger()
    logger.info("Arguments: " + str(args))
    if not (args.input or args.video_input or args.webcam):
        raise SystemExit("Nothing to do: give --input, --video-input or --webcam")
    if args.save_predictions and not (args.input and args.output):
        raise SystemExit("--save-predictions writes the predictions of --input images to the "
                         "--output folder: give both")
    if args.video_input and not args.webcam:
        open_video(args.video_input).release()  # fail before building the model
    demo = VisualizationDemo(setup_cfg(args), args.confidence_threshold, args.task)
    if isinstance(demo.predictor.model, torch.nn.Module):  # exported models run their own threads
        install_adaptive_threads(demo.predictor.model)

    failed = []
    if args.input:
        paths = expand_inputs(args.input)
        if args.output and len(paths) > 1 and os.path.isfile(args.output):
            raise SystemExit(f"--output {args.output} is a file; give a directory for many inputs")
        failed = process_images(demo, paths, args.output, logger, args.save_predictions)
    if args.video_input:
        process_video(demo, args.video_input, args.output)
    if args.webcam:
        cam = cv2.VideoCapture(0)
        if not cam.isOpened():
            raise SystemExit("Cannot open the webcam (device 0)")
        for frame in demo.run_on_video(cam):
            if show(frame, 1) == 27:
                break
        cam.release()
    if failed:
        logger.error(f"{len(failed)} input(s) could not be read: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
