"""
Video Mask2Former demo: segment and track the objects of a video, drawing each track with one
colour and its class and score in every frame.

    python demo_video/demo.py \
        --config-file configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml \
        --input video.mp4 --output out/ --opts MODEL.WEIGHTS model_final_34112b.pkl
    python demo_video/demo.py --config-file X.yaml --input frames_folder/ --output out/ \
        --save-frames --opts MODEL.WEIGHTS model.pth

``--input``: a video file, a folder of frames (image files in name order), or frame files.
``--output DIR``: writes DIR/<input name>.mp4 (and DIR/<input name>/<frame>.jpg with
``--save-frames``); without it the frames are shown in a window. Long videos are processed in
windows of ``--window`` frames that share ``--overlap`` frames (see video_predictor.py).
"""
import argparse
import glob
import os
import sys

import cv2
import tqdm
from detectron2.utils.logger import setup_logger

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from video_predictor import VideoPredictor, VideoVisualizer  # noqa: E402

from mask2former.data.image_io import ImageReadError, read_image  # noqa: E402
from mask2former_video import get_maskformer2_video_cfg  # noqa: E402

WINDOW_NAME = "video mask2former"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def get_parser():
    parser = argparse.ArgumentParser(description="Video Mask2Former demo")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--input", nargs="+", required=True,
                        help="a video file, a folder of frames, or frame files in order")
    parser.add_argument("--output", help="folder for the drawn video (and frames); else a window")
    parser.add_argument("--save-frames", action="store_true",
                        help="also write the drawn frames as JPEGs under --output")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="minimum score of drawn tracks")
    parser.add_argument("--window", type=int, default=30, help="frames the model sees at once")
    parser.add_argument("--overlap", type=int, default=5,
                        help="frames shared by consecutive windows, to link their tracks")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="frame rate of the output when the input is frames")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="config options as KEY VALUE pairs")
    return parser


def open_input(inputs, fps):
    """
    Returns:
        name (str), frame rate, number of frames, and an iterator of BGR frames.
    """
    if len(inputs) == 1 and os.path.isdir(inputs[0]):
        folder = inputs[0].rstrip(os.sep)
        paths = sorted(p for p in glob.glob(os.path.join(folder, "*"))
                       if p.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise SystemExit(
                f"The folder {folder!r} holds no frames ({', '.join(IMAGE_EXTENSIONS)})"
            )
        return os.path.basename(folder), fps, len(paths), _read_frames(paths)
    if len(inputs) == 1 and not inputs[0].lower().endswith(IMAGE_EXTENSIONS):
        video = cv2.VideoCapture(inputs[0])
        if not video.isOpened():
            raise SystemExit(
                f"Cannot open the video {inputs[0]!r}: check that the file exists and is a video"
            )
        name = os.path.splitext(os.path.basename(inputs[0]))[0]
        count = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
        return name, video.get(cv2.CAP_PROP_FPS) or fps, count, _video_frames(video)
    missing = [p for p in inputs if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"Cannot find the frames {missing[:5]}")
    name = os.path.basename(os.path.dirname(os.path.abspath(inputs[0]))) or "frames"
    return name, fps, len(inputs), _read_frames(inputs)


def _read_frames(paths):
    for path in paths:
        try:
            yield read_image(path, format="BGR")
        except ImageReadError as e:  # names the file and what is wrong with it
            raise SystemExit(f"Cannot read a frame: {e}") from e


def _video_frames(video):
    while True:
        ok, frame = video.read()
        if not ok:
            break
        yield frame
    video.release()


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    logger = setup_logger()
    logger.info("Arguments: " + str(args))
    name, fps, count, frames = open_input(args.input, args.fps)
    cfg = get_maskformer2_video_cfg(args.config_file, args.opts)
    cfg.freeze()
    visualizer = VideoVisualizer(VideoPredictor(cfg), window=args.window, overlap=args.overlap,
                                 confidence_threshold=args.confidence_threshold)
    writer, frames_dir = None, None
    if args.output:
        os.makedirs(args.output, exist_ok=True)
        video_path = os.path.join(args.output, name + ".mp4")
        if args.save_frames:
            frames_dir = os.path.join(args.output, name)
            os.makedirs(frames_dir, exist_ok=True)
    for index, drawn in enumerate(tqdm.tqdm(visualizer.run(frames), total=count, unit="frame")):
        if not args.output:
            cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
            cv2.imshow(WINDOW_NAME, drawn)
            if cv2.waitKey(1) == 27:  # Esc
                break
            continue
        if writer is None:
            height, width = drawn.shape[:2]
            writer = cv2.VideoWriter(video_path, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (width, height))
            if not writer.isOpened():
                raise SystemExit(f"Cannot write the video {video_path!r} with the mp4v codec")
        writer.write(drawn)
        if frames_dir:
            cv2.imwrite(os.path.join(frames_dir, f"{index:05d}.jpg"), drawn)
    if writer is not None:
        writer.release()
        logger.info(f"Wrote {video_path}" + (f" and the frames in {frames_dir}" if frames_dir
                                              else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
