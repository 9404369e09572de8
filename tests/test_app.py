"""
The web app (demo/app.py) as its users meet it: the page in the system's headless Chromium
(Playwright), and the same calls through its HTTP API (gradio_client), each checked against
demo.py's results on the same image. One server, on the quick main job's model, serves the
module; it must never reach beyond 127.0.0.1, nor write outside its output folder.

The quick model is barely trained: it finds panoptic segments only with the panoptic
thresholds at 0, and instances only under a low confidence threshold. Server and demo.py run
with a fixed thread count (threads that follow the machine's load round floats differently).
MASK2FORMER_APP_MODEL=output/main_job runs the tests on that folder's model (config.yaml,
model_final.pth) instead, e.g. for the README's screenshot:

    MASK2FORMER_APP_MODEL=output/main_job MASK2FORMER_APP_SCREENSHOT=docs/app_screenshot.png \
        .venv/bin/python -m pytest tests/test_app.py -k image_as_demo
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app_helpers import REPO_ROOT, AppServer, launch_chromium
from image_files import gradient_rgb

THRESHOLDS = ["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0",
              "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD", "0.0"]
INSTANCE_THRESHOLD = 0.1
MAX_MEGAPIXELS, MAX_FILE_MB = 1, 2
FIXED_THREADS = {"MASK2FORMER_ADAPTIVE_THREADS": "0"}
# Set to a path to keep the screenshot the browser test takes (README: docs/app_screenshot.png).
SCREENSHOT_ENV = "MASK2FORMER_APP_SCREENSHOT"
MODEL_ENV = "MASK2FORMER_APP_MODEL"


def _model_args(quick_run):
    """(--config-file args, --opts) of the served model."""
    if os.environ.get(MODEL_ENV):
        folder = Path(os.environ[MODEL_ENV])  # relative to the repository, where both run
        return ["--config-file", folder / "config.yaml"], ["MODEL.WEIGHTS",
                                                           folder / "model_final.pth"]
    output = quick_run[0]
    return ["--config-file", output / "config.yaml"], \
        ["MODEL.WEIGHTS", output / "model_final.pth", *THRESHOLDS]


@pytest.fixture(scope="module")
def image(quick_run):
    return quick_run[1] / "shapes_val" / "000001.jpg"


@pytest.fixture(scope="module")
def served(quick_run, tmp_path_factory):
    """(server, its output folder, the TMPDIR it was given)."""
    tmp = tmp_path_factory.mktemp("app")
    system_tmp = tmp / "system_tmp"
    system_tmp.mkdir()
    config, opts = _model_args(quick_run)
    args = [*config, "--max-megapixels", MAX_MEGAPIXELS, "--max-file-mb", MAX_FILE_MB,
            "--opts", *opts]
    env = dict(FIXED_THREADS, TMPDIR=str(system_tmp))
    with AppServer(args, tmp / "app_out", env=env) as server:
        yield server, tmp / "app_out", system_tmp
        assert server.alive(), server.log()


@pytest.fixture(scope="module")
def demo_results(quick_run, image, tmp_path_factory):
    """demo.py --save-predictions on ``image``, per task: task -> output folder."""
    config, opts = _model_args(quick_run)
    folders = {}
    for task in ("panoptic", "instance", "semantic"):
        folder = tmp_path_factory.mktemp(f"demo_{task}")
        proc = subprocess.run(
            [sys.executable, "demo/demo.py", *map(str, config), "--input", str(image),
             "--output", str(folder), "--task", task, "--save-predictions",
             "--confidence-threshold", str(INSTANCE_THRESHOLD), "--opts", *map(str, opts)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, **FIXED_THREADS),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        folders[task] = folder
    return folders


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, served):
    """The app's page; ``page.external`` lists requests it tried beyond 127.0.0.1 (refused)."""
    server = served[0]
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(120_000)
    page = context.new_page()
    page.external = []

    def local_only(route):
        url = route.request.url
        if url.startswith((server.url, "data:", "blob:")):
            route.continue_()
        else:
            page.external.append(url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(server.url, wait_until="load")
    page.wait_for_selector("#image_in input[type=file]", state="attached")
    yield page
    context.close()


def _table(page):
    """Rows of the segment table as (class, score or None, area %) (a few: all are drawn)."""
    rows = []
    for row in page.locator("#segments [role=row]:has([role=gridcell])").all():
        cells = [c.inner_text().strip() for c in row.locator("[role=gridcell]").all()]
        rows.append((cells[0], float(cells[1]) if cells[1] else None, float(cells[2])))
    return rows


def _expected_table(entry, image_pixels):
    """Table rows that the segments JSON of demo.py (dataset ids) gives."""
    from mask2former.data.datasets.generated_shapes import SHAPES_CATEGORIES

    names = {c["id"]: c["name"] for c in SHAPES_CATEGORIES}
    return [(names[s["category_id"]], round(s["score"], 3) if "score" in s else None,
             round(100 * s["area"] / image_pixels, 2)) for s in entry["segments_info"]]


def _download(page, container, name, folder):
    with page.expect_download() as download:
        page.locator(f"{container} a[download='{name}']").click()
    path = folder / name
    download.value.save_as(path)
    return path


def _frames(path):
    video = cv2.VideoCapture(str(path))
    count = 0
    while video.read()[0]:
        count += 1
    video.release()
    return count


def test_page_segments_an_image_as_demo_py_does(page, served, image, demo_results, tmp_path):
    jobs = served[1] / "jobs"
    jobs_before = set(jobs.iterdir()) if jobs.is_dir() else set()
    page.set_input_files("#image_in input[type=file]", str(image))
    overlay = page.locator("#overlay img")
    overlay.wait_for()
    assert "000001_overlay" in overlay.get_attribute("src")

    expected = json.loads((demo_results["panoptic"] / "000001_panoptic.json").read_text())
    assert expected["segments_info"], "the model found no segment: nothing is compared"
    downloaded = json.loads(_download(page, "#downloads", "000001_panoptic.json",
                                      tmp_path).read_text())
    assert downloaded == expected
    png = _download(page, "#downloads", "000001_panoptic.png", tmp_path)
    assert np.array_equal(np.asarray(Image.open(png)),
                          np.asarray(Image.open(demo_results["panoptic"] / "000001_panoptic.png")))
    height, width = cv2.imread(str(image)).shape[:2]
    assert _table(page) == _expected_table(expected, height * width)

    screenshot = tmp_path / "app.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if os.environ.get(SCREENSHOT_ENV):  # kept small: 256 colours
        Image.open(screenshot).convert("RGB").quantize(256).save(
            REPO_ROOT / os.environ[SCREENSHOT_ENV], optimize=True)

    # Hiding a class draws the overlay again without it.
    shown = page.locator("#shown input[type=checkbox]")
    assert shown.count() >= 1
    before = overlay.get_attribute("src")
    shown.first.uncheck()
    page.wait_for_function(
        "before => document.querySelector('#overlay img').src !== before", arg=before)
    assert "_overlay_without_" in overlay.get_attribute("src")
    assert page.external == []

    # Each upload is one job, the next upload too (the page reports it as two changes).
    shutil.copy(image, tmp_path / "next.jpg")
    page.set_input_files("#image_in input[type=file]", str(tmp_path / "next.jpg"))
    page.wait_for_function(
        "() => document.querySelector('#overlay img').src.includes('next_overlay')")
    _wait_for_queued_jobs(served[0], image)
    page_jobs = sorted(j.name for j in set(jobs.iterdir()) - jobs_before
                       if list(j.glob("*_panoptic.json")))
    assert len(page_jobs) == 2, f"two uploads ran {len(page_jobs)} jobs: {page_jobs}"


def test_page_names_a_file_that_is_not_an_image_and_takes_the_next(page, quick_run, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are notes, not a photo\n")
    page.set_input_files("#image_in input[type=file]", str(notes))
    message = page.get_by_text("Cannot read notes.jpg: it is empty or not an image file")
    message.wait_for()
    assert message.is_visible()

    page.set_input_files("#image_in input[type=file]",
                         str(quick_run[1] / "shapes_val" / "000002.jpg"))
    page.wait_for_function(
        "() => (document.querySelector('#overlay img') || {}).src?.includes('000002_overlay')")
    # An example is one click away.
    page.get_by_role("tab", name="Image").click()
    page.locator("button:has(img[src*='shapes_2.jpg'])").first.click()
    page.wait_for_function(
        "() => (document.querySelector('#overlay img') || {}).src?.includes('shapes_2_overlay')")
    assert page.external == []


def test_page_segments_a_video(page, served, image, quick_run, tmp_path):
    """An mp4 as demo.py writes them (MPEG-4 part 2), 7 odd-sized frames: 7 frames back; the
    next upload is one job too."""
    from mask2former.data.datasets.generated_shapes import render_video

    clip = tmp_path / "clip.mp4"
    frames = render_video(3, 7, 90, 110)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (110, 90))
    for frame in frames:
        writer.write(frame[:, :, ::-1])
    writer.release()

    page.get_by_role("tab", name="Video").click()
    page.set_input_files("#video_in input[type=file]", str(clip))
    page.locator("#video_out video").wait_for()
    # The browser plays it (H.264): it knows its length and frame size.
    duration, width = page.wait_for_function(
        "() => { const v = document.querySelector('#video_out video');"
        " return v.readyState >= 1 && [v.duration, v.videoWidth]; }").json_value()
    assert duration > 0 and width > 0
    assert _frames(_download(page, "#video_file", "clip.mp4", tmp_path)) == len(frames)
    assert page.external == []

    jobs = served[1] / "jobs"
    jobs_before = set(jobs.iterdir())
    shutil.copy(clip, tmp_path / "next.mp4")
    page.locator("#video_in").get_by_role("button", name="Clear").click()
    page.set_input_files("#video_in input[type=file]", str(tmp_path / "next.mp4"))
    page.wait_for_function(
        "() => (document.querySelector('#video_out video') || {src: ''}).src.includes('next')")
    _wait_for_queued_jobs(served[0], image)
    video_jobs = sorted(j.name for j in set(jobs.iterdir()) - jobs_before if list(j.glob("*.mp4")))
    assert len(video_jobs) == 1, f"one upload ran {len(video_jobs)} jobs: {video_jobs}"


def _wait_for_queued_jobs(server, image):
    """A request of the API waits in the jobs' one-at-a-time queue: when it is answered (a
    semantic result of ``image``), every job queued before it has run."""
    from gradio_client import handle_file

    _client(server).predict(handle_file(str(image)), "semantic", 0.5, api_name="/segment_image")


def _client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=True)


@pytest.mark.parametrize("task", ["panoptic", "instance", "semantic"])
def test_api_gives_the_results_of_demo_py(served, image, demo_results, task):
    from gradio_client import handle_file

    threshold = INSTANCE_THRESHOLD
    overlay, table, _, files, notes, = _client(served[0]).predict(
        handle_file(str(image)), task, threshold, api_name="/segment_image")
    assert os.path.basename(overlay) == "000001_overlay.png" and notes == ""
    expected = sorted(p for p in os.listdir(demo_results[task]) if p != "000001.jpg")
    assert sorted(os.path.basename(f) for f in files[1:]) == expected
    for path in files[1:]:
        reference = demo_results[task] / os.path.basename(path)
        if path.endswith(".json"):
            assert json.loads(open(path).read()) == json.loads(reference.read_text())
        else:
            assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(reference)))
    if task == "instance":
        entries = json.loads(open(files[1]).read())
        assert entries and all(e["score"] >= threshold for e in entries)
        assert [row[1] for row in table["data"]] == [round(e["score"], 3) for e in entries]
    assert table["headers"] == ["class", "score", "area %"] and table["data"]


def test_api_reads_odd_files_names_bad_ones_and_keeps_serving(served, image, tmp_path):
    """16-bit and CMYK images are read (and said so), the others refused with their reason."""
    from gradio_client import handle_file

    server, output, system_tmp = served
    client = _client(server)

    def segment(path):
        return client.predict(handle_file(str(path)), "semantic", 0.5,
                              api_name="/segment_image")

    rgb = gradient_rgb(48, 64)
    gray16 = (rgb[..., 0].astype(np.uint16) * 257)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert segment(tmp_path / "gray16.png")[4] == "16-bit image: scaled to 8 bits"
    assert segment(tmp_path / "cmyk.jpg")[4] == "CMYK image: converted to RGB"

    data = image.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("L", (1200, 1000)).save(tmp_path / "large.png")
    large = (tmp_path / "large.png").read_bytes()  # refused from its header, before decoding:
    (tmp_path / "large.png").write_bytes(large[: len(large) // 2])  # not as a truncated file
    (tmp_path / "huge.jpg").write_bytes(data + bytes(MAX_FILE_MB * 2**20))
    refusals = {
        "truncated.jpg": "Cannot read truncated.jpg: the file is truncated or damaged",
        "large.png": f"large.png is 1200 x 1000 pixels (1.2 megapixels); this app takes "
                     f"images of at most {MAX_MEGAPIXELS} megapixels",
        "huge.jpg": f"exceeds the maximum file size of {MAX_FILE_MB * 2**20} bytes",
    }
    for name, message in refusals.items():
        with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
            segment(tmp_path / name)
    (tmp_path / "notes.mp4").write_text("not a video\n")
    with pytest.raises(Exception, match="Cannot read notes.mp4: it is not a video"):
        client.predict(handle_file(str(tmp_path / "notes.mp4")), "panoptic", 0.5,
                       api_name="/segment_video")
    with pytest.raises(Exception, match=r"\(a .mp4 file: segment videos in the Video tab\)"):
        segment(tmp_path / "notes.mp4")

    assert segment(image)[0].endswith("000001_overlay.png")
    assert server.alive()
    assert not list((REPO_ROOT / "demo").glob("*.pyi"))  # Gradio writes stubs of subclasses
    # Uploads, results and temporary files are in the output folder only.
    assert list(system_tmp.iterdir()) == []
    results = list((output / "jobs").glob("*/000001_sem_seg.png"))
    assert results and all(output in p.parents for p in results)
