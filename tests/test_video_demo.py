"""demo_video/demo.py on generated videos (a folder of frames, an mp4), its window policy, and
the video main job (tools/main_job_video.py --quick) end to end."""
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from video_helpers import small_video_config

import mask2former_video  # noqa: F401  registers the video model
from mask2former_video.data_video.datasets.generated_shapes_video import render_shapes_video

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "demo_video"))
from video_predictor import link_tracks  # noqa: E402


def test_tracks_link_across_windows_by_their_iou_on_shared_frames():
    def box(x):
        mask = torch.zeros(2, 16, 16, dtype=torch.bool)
        mask[:, 4:10, x:x + 6] = True
        return mask

    previous = [(7, box(0)), (3, box(9))]
    # Same places (shifted by one pixel), in another order, and a new object.
    new_object = torch.zeros(2, 16, 16, dtype=torch.bool)
    new_object[:, 12:, :4] = True
    assert link_tracks(previous, [box(10), new_object, box(1)], link_iou=0.5) == [3, None, 7]
    assert link_tracks(previous, [box(5)], link_iou=0.5) == [None]  # half-way: no link
    assert link_tracks([], [box(0)], link_iou=0.5) == [None]


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory):
    """A random-weight tiny video model (yaml + checkpoint), a frames folder and an mp4."""
    root = tmp_path_factory.mktemp("video_demo")
    cfg = small_video_config(num_classes=3, num_queries=6, dec_layers=2)
    cfg.DATASETS.TEST = ("shapes_video_val",)
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.MODEL.WEIGHTS = ""
    (root / "config.yaml").write_text(cfg.dump())
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, root / "model.pth")
    frames, _ = render_shapes_video(np.random.default_rng(3), 64, 11)
    (root / "frames").mkdir()
    for t, frame in enumerate(frames):
        cv2.imwrite(str(root / "frames" / f"{t:05d}.jpg"), frame[:, :, ::-1])
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8,
                             (64, 64))
    for frame in frames:
        writer.write(frame[:, :, ::-1])
    writer.release()
    return root


def _demo(root, *args):
    return subprocess.run(
        [sys.executable, "demo_video/demo.py", "--config-file", str(root / "config.yaml"), *args,
         "--confidence-threshold", "0.0", "--opts", "MODEL.WEIGHTS", str(root / "model.pth")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


def _frame_count(path):
    video, count = cv2.VideoCapture(str(path)), 0
    while video.read()[0]:
        count += 1
    return count


def test_demo_draws_every_frame_of_a_frames_folder_in_windows(demo_inputs, tmp_path):
    proc = _demo(demo_inputs, "--input", str(demo_inputs / "frames"), "--output", str(tmp_path),
                 "--save-frames", "--window", "4", "--overlap", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _frame_count(tmp_path / "frames.mp4") == 11
    drawn = sorted((tmp_path / "frames").glob("*.jpg"))
    assert len(drawn) == 11
    assert min(cv2.imread(str(drawn[0])).shape[:2]) >= 512  # small videos are drawn upscaled


def test_demo_reads_a_video_file_and_names_a_missing_one(demo_inputs, tmp_path):
    proc = _demo(demo_inputs, "--input", str(demo_inputs / "clip.mp4"), "--output",
                 str(tmp_path))  # one window holds the whole video
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _frame_count(tmp_path / "clip.mp4") == 11
    proc = _demo(demo_inputs, "--input", str(tmp_path / "no_such_clip.mp4"), "--output",
                 str(tmp_path))
    assert proc.returncode != 0 and "no_such_clip.mp4" in proc.stderr


def test_demo_reads_16_bit_frames_and_names_a_damaged_one(demo_inputs, tmp_path):
    frames = tmp_path / "frames16"
    frames.mkdir()
    for path in sorted((demo_inputs / "frames").glob("*.jpg"))[:5]:
        frame = cv2.imread(str(path)).astype(np.uint16) * 257  # 16-bit, as some cameras write
        cv2.imwrite(str(frames / (path.stem + ".png")), frame)
    proc = _demo(demo_inputs, "--input", str(frames), "--output", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _frame_count(tmp_path / "out" / "frames16.mp4") == 5
    last = sorted(frames.glob("*.png"))[-1]
    last.write_bytes(last.read_bytes()[:100])  # truncated
    proc = _demo(demo_inputs, "--input", str(frames), "--output", str(tmp_path / "out2"))
    assert proc.returncode != 0 and f"Cannot read a frame: Cannot read {last}" in proc.stderr


def test_video_main_job_refuses_missing_image_weights(tmp_path):
    output, data = tmp_path / "out", tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "tools/main_job_video.py", "--quick", "--output", str(output),
         "--data-root", str(data), "--image-weights", str(tmp_path / "no_such_model.pth")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode != 0 and "no_such_model.pth: no such file" in proc.stderr
    assert not data.exists()  # refused before generating anything


def test_video_main_job_quick(quick_video_run):
    output, data, stdout = quick_video_run
    summary = json.loads((output / "results.json").read_text())
    assert all(math.isfinite(summary["metrics"][k]) for k in ("AP", "AP50", "AR10"))
    assert summary["iterations"] == 4
    assert (data / "valid.json").exists() and (data / "train" / "JPEGImages").is_dir()
    assert (output / "inference" / "shapes_video_val" / "results.json").exists()
    assert _frame_count(output / "demo" / "00000.mp4") == 6
    assert len(list((output / "demo" / "00000").glob("*.jpg"))) == 6
    assert _frame_count(output / "demo" / "shapes_video_clip.mp4") == 10
    assert cv2.imread(str(output / "training_curves.png")) is not None
    assert "AP" in stdout and "results.json" in stdout
