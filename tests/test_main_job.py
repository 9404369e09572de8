"""
The main job (tools/main_job.py) end to end with --quick, the generated shapes dataset it trains
on, and the demo's handling of bad inputs.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from panopticapi.utils import rgb2id
from PIL import Image

from image_files import write_readable_images, write_unreadable_files
from mask2former.data.datasets.generated_shapes import (
    SHAPES_CATEGORIES,
    generate_shapes_dataset,
    register_generated_shapes,
    render_video,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK_VIDEO_FRAMES = 8  # tools/main_job.py QUICK["video_frames"]
QUICK_DEMO_IMAGES = 3  # tools/main_job.py QUICK["demo_images"]


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def _generate(root, seed=0):
    generate_shapes_dataset(str(root), seed=seed, num_train=6, num_val=3, size=64)
    return _files(root)


def test_generator_is_reproducible(tmp_path):
    first = _generate(tmp_path / "a")
    second = _generate(tmp_path / "b")
    assert sorted(first) == sorted(second)
    assert first == second
    other_seed = _generate(tmp_path / "c", seed=1)
    assert other_seed["shapes_train/000000.jpg"] != first["shapes_train/000000.jpg"]


def test_generator_skips_identical_and_refuses_foreign_folder(tmp_path):
    root = tmp_path / "shapes"
    assert generate_shapes_dataset(str(root), num_train=2, num_val=1, size=64)
    assert not generate_shapes_dataset(str(root), num_train=2, num_val=1, size=64)
    assert generate_shapes_dataset(str(root), num_train=3, num_val=1, size=64)
    assert len(os.listdir(root / "shapes_train")) == 3
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="no meta.json"):
        generate_shapes_dataset(str(foreign), num_train=2, num_val=1, size=64)
    assert (foreign / "mine.txt").read_text() == "keep me"


def test_panoptic_png_json_semantic_and_instances_agree(tmp_path):
    root = tmp_path / "shapes"
    generate_shapes_dataset(str(root), seed=3, num_train=12, num_val=2, size=96)
    contiguous = {c["id"]: i for i, c in enumerate(SHAPES_CATEGORIES)}
    isthing = {c["id"]: c["isthing"] for c in SHAPES_CATEGORIES}
    panoptic = json.loads((root / "annotations/panoptic_shapes_train.json").read_text())
    instances = json.loads((root / "annotations/instances_shapes_train.json").read_text())
    assert len(panoptic["annotations"]) == len(panoptic["images"]) == 12
    thing_areas = sorted(a["area"] for a in instances["annotations"])
    assert all(a["iscrowd"] == 0 for a in instances["annotations"])
    seen_things, seen_categories = [], set()
    for ann in panoptic["annotations"]:
        pan_path = root / "annotations/panoptic_shapes_train" / ann["file_name"]
        pan = rgb2id(np.array(Image.open(pan_path)))
        semantic = np.array(Image.open(root / "panoptic_semseg_shapes_train" / ann["file_name"]))
        image = Image.open(root / "shapes_train" / ann["file_name"].replace(".png", ".jpg"))
        assert image.size == (96, 96) and pan.shape == semantic.shape == (96, 96)
        segments = {s["id"]: s for s in ann["segments_info"]}
        assert set(np.unique(pan)) == set(segments)  # every id in the PNG is in the JSON and back
        for seg_id, seg in segments.items():
            mask = pan == seg_id
            assert seg["area"] == mask.sum()
            assert np.all(semantic[mask] == contiguous[seg["category_id"]])
            seen_categories.add(seg["category_id"])
            if isthing[seg["category_id"]]:
                seen_things.append(seg["area"])
    assert sorted(seen_things) == thing_areas
    assert seen_categories == set(contiguous)

    register_generated_shapes(str(root))
    dicts = DatasetCatalog.get("shapes_panoptic_train")
    assert len(dicts) == 12 and all(os.path.isfile(d["sem_seg_file_name"]) for d in dicts)
    assert len(DatasetCatalog.get("shapes_instance_train")) == 12
    assert len(DatasetCatalog.get("shapes_sem_seg_val")) == 2


def test_video_frames_move():
    frames = render_video(seed=0, num_frames=4, height=64, width=64)
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert np.abs(frames[0].astype(int) - frames[3].astype(int)).mean() > 1


def _decodes(path):
    image = cv2.imread(str(path))
    assert image is not None, f"{path} does not decode"
    return image


def test_main_job_quick_outputs(quick_run):
    output, data_root, stdout = quick_run
    results = json.loads((output / "results.json").read_text())
    for key in ("PQ", "mask_AP", "mIoU"):
        assert math.isfinite(results["metrics"][key]) and 0 <= results["metrics"][key] <= 100
    assert results["iterations"] == 4
    records = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    assert any("total_loss" in r for r in records)
    assert (output / "model_final.pth").stat().st_size > 0
    assert _decodes(output / "training_curves.png").shape[1] >= 800
    assert _decodes(output / "overview.png").shape[0] > 0
    demo_images = sorted((output / "demo").glob("*.jpg"))
    assert len(demo_images) == QUICK_DEMO_IMAGES
    for path in demo_images:
        assert min(_decodes(path).shape[:2]) >= 256  # small inputs are drawn upscaled
    for video_path in (output / "shapes_clip.mp4", output / "demo" / "shapes_clip.mp4"):
        video = cv2.VideoCapture(str(video_path))
        frames = 0
        while video.read()[0]:
            frames += 1
        assert frames == QUICK_VIDEO_FRAMES, video_path
    for name in ("results.json", "training_curves.png", "overview.png", "shapes_clip.mp4"):
        assert name in stdout


def _run_demo(output, *args, opts=()):
    return subprocess.run(
        [sys.executable, "demo/demo.py", "--config-file", str(output / "config.yaml"), *args,
         "--opts", "MODEL.WEIGHTS", str(output / "model_final.pth"), *opts],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )


def test_demo_draws_every_readable_format_and_names_unreadable_files(quick_run, tmp_path):
    """A folder of odd formats and broken files: all good ones drawn, exit 1 naming the bad."""
    output, data_root, _ = quick_run
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = sorted(write_readable_images(inputs))
    (inputs / "shapes.jpg").write_bytes((data_root / "shapes_val" / "000001.jpg").read_bytes())
    good.append("shapes.jpg")
    bad = write_unreadable_files(inputs, inputs / "shapes.jpg")
    out_dir = tmp_path / "vis"
    proc = _run_demo(output, "--input", str(inputs / "*"), "--output", str(out_dir))
    assert proc.returncode == 1, proc.stderr[-2000:]
    log = (proc.stdout + proc.stderr).splitlines()
    summary = [line for line in log if "could not be read" in line]
    assert len(summary) == 1 and f"{len(bad)} input(s) could not be read" in summary[0]
    summary = summary[0]
    assert all(name in summary for name in bad)
    assert sorted(os.listdir(out_dir)) == sorted(good)
    for name in good:
        _decodes(out_dir / name)

    missing = tmp_path / "no_such_clip.mp4"
    proc = _run_demo(output, "--video-input", str(missing), "--output", str(out_dir))
    assert proc.returncode != 0
    assert "no_such_clip.mp4" in proc.stderr


def test_demo_refuses_a_checkpoint_for_another_number_of_classes(quick_run, tmp_path):
    output, data_root, _ = quick_run
    good = data_root / "shapes_val" / "000001.jpg"
    proc = _run_demo(output, "--input", str(good), "--output", str(tmp_path / "vis"),
                     opts=("MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7"))
    assert proc.returncode != 0
    assert "model_final.pth does not fit the model" in proc.stderr
    assert "class_embed.weight" in proc.stderr
    assert not (tmp_path / "vis").exists() or not os.listdir(tmp_path / "vis")
