"""
The web app's jobs without the web page (demo/app_jobs.py) where the page tests do not reach:
a video model tracks the objects of an uploaded video as the video demo does, the tasks of
one model share its weights, and the app finds the main job's model when none is given.
"""
import io
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

import mask2former_video  # noqa: F401  registers the video model
from mask2former_video.data_video.datasets.generated_shapes_video import render_shapes_video
from video_helpers import small_video_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "demo"))
sys.path.insert(0, str(REPO / "demo_video"))
import app  # noqa: E402
from app_jobs import SegmentationJobs, UploadError, UploadLimits  # noqa: E402
from freed_memory import return_freed_memory  # noqa: E402
from video_predictor import VideoPredictor, VideoVisualizer  # noqa: E402


def _resident_mib():
    """This process's resident memory now (VmRSS), in MiB."""
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024


def _decoded(path):
    video, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = video.read()
        if not ok:
            return frames
        frames.append(frame)


def test_video_model_tracks_an_uploaded_video_as_the_video_demo_does(tmp_path):
    cfg = small_video_config(num_classes=3, num_queries=6, dec_layers=2)
    cfg.DATASETS.TEST = ("shapes_video_val",)
    cfg.INPUT.MIN_SIZE_TEST = 64
    torch.manual_seed(0)
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    torch.save({"model": build_model(cfg).state_dict()}, cfg.MODEL.WEIGHTS)
    frames, _ = render_shapes_video(np.random.default_rng(3), 64, 9)
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 64))
    for frame in frames:
        writer.write(frame[:, :, ::-1])
    writer.release()

    jobs = SegmentationJobs(cfg, tmp_path / "out", window=4, overlap=2)
    assert jobs.is_video_model
    with pytest.raises(UploadError, match="This is a video model"):
        jobs.segment_image(str(REPO / "demo" / "app.py"), "instance", 0.5)
    progress = []
    path, count = jobs.segment_video(str(clip), None, 0.0, lambda *p: progress.append(p))
    assert count == len(frames) and progress[-1] == (9, 9)
    assert (tmp_path / "out" / "jobs") in Path(path).parents

    frozen = cfg.clone()
    frozen.freeze()
    tracker = VideoVisualizer(VideoPredictor(frozen), window=4, overlap=2,
                              confidence_threshold=0.0)
    expected = np.stack(list(tracker.run(_decoded(clip)))).astype(int)
    tracker.confidence_threshold = 2.0  # no track drawn
    undrawn = np.stack(list(tracker.run(_decoded(clip)))).astype(int)
    served = np.stack(_decoded(path))
    assert served.shape == expected.shape == (len(frames), 512, 512, 3)
    # H.264 loses a little of the drawn frames; without the tracks they differ far more.
    error, error_undrawn = np.abs(served - expected).mean(), np.abs(served - undrawn).mean()
    assert error < 8 and error < error_undrawn / 3, (error, error_undrawn)


def test_tasks_share_the_weights_loaded_once(quick_run, tmp_path):
    output, data_root, _ = quick_run
    cfg, _ = app.load_config(str(output / "config.yaml"),
                             ["MODEL.WEIGHTS", str(output / "model_final.pth")])
    jobs = SegmentationJobs(cfg, tmp_path)
    image = str(data_root / "shapes_val" / "000001.jpg")
    results = {task: jobs.segment_image(image, task, 0.5) for task in jobs.tasks}
    assert sorted(results) == ["instance", "panoptic", "semantic"]
    weights = [dict(jobs._predictor(task).model.named_parameters()) for task in jobs.tasks]
    for name, parameter in weights[0].items():
        assert all(w[name].data_ptr() == parameter.data_ptr() for w in weights[1:]), name


def test_app_serves_the_main_job_model_when_none_is_given(quick_run, tmp_path, monkeypatch):
    output, _, _ = quick_run
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="No model given: .*python tools/main_job.py"):
        app.load_config(None, [])
    shapes = str(REPO / "configs" / "shapes" / "maskformer2_R18_shapes.yaml")
    with pytest.raises(SystemExit, match="names no weights: add --opts MODEL.WEIGHTS"):
        app.load_config(shapes, [])

    main_job = tmp_path / "output" / "main_job"
    main_job.mkdir(parents=True)
    shutil.copy(output / "model_final.pth", main_job)
    cfg, title = app.load_config(None, [])
    assert cfg.MODEL.WEIGHTS == str(Path("output", "main_job", "model_final.pth"))
    assert title.endswith("maskformer2_R18_shapes.yaml)")  # no config.yaml: the shapes config
    shutil.copy(output / "config.yaml", main_job)
    assert app.load_config(None, [])[1] == \
        f"model_final.pth ({Path('output', 'main_job', 'config.yaml')})"
    assert app.load_config(shapes, [])[0].MODEL.WEIGHTS == cfg.MODEL.WEIGHTS


def test_hidden_semantic_classes_are_not_drawn_as_another_class(quick_run):
    """Hiding a class leaves its pixels undrawn, also when a higher class id is absent (the
    hidden pixels once got the largest present label + 1: another class, drawn in its color)."""
    from predictor import VisualizationDemo

    output, _, _ = quick_run
    cfg, _ = app.load_config(str(output / "config.yaml"),
                             ["MODEL.WEIGHTS", str(output / "model_final.pth")])
    demo = VisualizationDemo(cfg, task="semantic")
    assert len(demo.metadata.stuff_classes) > 3
    image = np.full((64, 64, 3), 128, np.uint8)
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[:, 32:] = 2  # classes 0 and 2 present, 3 (= max + 1) absent
    predictions = {"sem_seg_labels": labels}
    drawn = demo.draw(image, predictions, "semantic", hidden_classes=[0]).get_image()
    only_class_2 = demo.draw(image, {"sem_seg_labels": labels.masked_fill(labels == 0, 255)},
                             "semantic").get_image()
    assert np.array_equal(drawn, only_class_2)


class _Unseekable(io.RawIOBase):
    """A file written as a stream (as by a recorder or a pipe): its container has no index."""

    def __init__(self, file):
        self.file = file

    def writable(self):
        return True

    def write(self, data):
        return self.file.write(data)


def test_video_frames_over_the_limit_stop_the_job_when_the_header_has_no_count(quick_run,
                                                                               tmp_path):
    import av

    video_path = tmp_path / "streamed.webm"
    with open(video_path, "wb") as raw:
        container = av.open(_Unseekable(raw), "w", format="webm")
        stream = container.add_stream("libvpx", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(12):
            frame = np.full((64, 64, 3), 20 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
        container.close()
    assert cv2.VideoCapture(str(video_path)).get(cv2.CAP_PROP_FRAME_COUNT) <= 0  # no count

    output, _, _ = quick_run
    cfg, _ = app.load_config(str(output / "config.yaml"),
                             ["MODEL.WEIGHTS", str(output / "model_final.pth")])
    jobs = SegmentationJobs(cfg, tmp_path / "out", limits=UploadLimits(video_frames=5))
    with pytest.raises(UploadError, match=r"streamed.webm has more than 5 frames.*"
                                          r"--max-video-frames"):
        jobs.segment_video(str(video_path), "semantic", 0.5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_memory_freed_by_a_job_goes_back_to_the_system():
    """
    256 MiB freed under a block still in use stay with the process (glibc keeps them for the
    next allocations) until ``return_freed_memory``, which every job of the app calls last.
    """
    blocks = [b"\x01" * 65536 for _ in range(4096)]  # each under glibc's mmap threshold: heap
    kept = blocks[-1]  # the heap's top stays in use: free() alone cannot shrink the heap
    del blocks
    before = _resident_mib()
    assert return_freed_memory()
    assert _resident_mib() < before - 128, "malloc_trim returned less than half of the memory"
    assert kept[0] == 1
    assert SegmentationJobs.segment_image.__wrapped__ and SegmentationJobs.segment_video.__wrapped__
