"""
The web app (demo/app.py) against demo.py, in one run:

1. Time from upload to result on a 512 x 512 photo (the 24-megapixel one below, scaled down).
   The app is timed three ways, each from the start of the upload:

   * **page**: the app's page in Chromium (the system's, headless, driven by Playwright), timed
     by the page's clock from the file handed to it to the overlay's load event (the segment
     table is drawn with it): what a person waits for (the result files are downloaded only
     when clicked);
   * **page's requests**: the requests the page makes (upload, queue, the result, the overlay
     image), sent by this script on one keep-alive HTTP connection: the server's part of it;
   * **HTTP API, every file**: ``gradio_client`` (upload, queue, the result, then every result
     file downloaded one after another): a script that fetches everything.

   demo.py is its own functions on the same photo in a process of their own (reading,
   prediction, drawing, the same files written: ``process_images(..., save_predictions=True)``,
   timed inside that process), in the process's main thread as demo.py runs them and in a
   worker thread as the app's server runs a job. All paths alternate for ``--rounds`` rounds
   after warm-ups (in ABC..CBA order), all with ``--threads`` fixed threads
   (MASK2FORMER_ADAPTIVE_THREADS=0), so they see the same machine load; medians are reported.
2. The app server's peak memory (VmHWM) after a 24-megapixel upload (6000 x 4000 JPEG stored
   sideways with EXIF orientation, bench_large_image.py's photo), and demo.py's on the same
   photo in a process of its own (``/usr/bin/time -v``).

The model: the R50 COCO panoptic config with random weights (seed 0), or --config-file and
--weights (e.g. the main job's model). Both paths compute the panoptic task.

    python benchmarks/bench_app.py [--rounds 10] [--threads 2] [--config-file X.yaml --weights W]
"""
import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "demo"))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "tests"))
from app_helpers import launch_chromium  # noqa: E402
from bench_large_image import make_photo  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

R50_PANOPTIC = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
RESULT_TIMEOUT_S = 300

# Arms a promise that resolves to the page's clock when the overlay of the file named ``stem``
# has loaded (the page draws all outputs of a result at once: the segment table with it), and
# returns the page's clock now. A load listener: nothing polls the page while it works.
ARM_RESULT_SHOWN = """stem => {
  window.resultShown = new Promise(resolve => {
    const listener = event => {
      const target = event.target;
      if (target.tagName === 'IMG' && target.closest('#overlay') !== null
          && target.src.includes(`${stem}_overlay`)) {
        document.removeEventListener('load', listener, true);
        resolve(performance.now());
      }
    };
    document.addEventListener('load', listener, true);  // load events do not bubble
  });
  return performance.now();
}"""
# The page's clock when the armed overlay loaded; fails after ``ms`` milliseconds without it.
RESULT_SHOWN_AT = """ms => Promise.race([window.resultShown, new Promise((_, reject) => setTimeout(
  () => reject(new Error(`no result shown in ${ms} ms`)), ms))])"""


def random_weights(config, path):
    """Save the config's model with random weights (seed 0) as a checkpoint."""
    import torch
    from detectron2.modeling import build_model

    from mask2former.config import get_maskformer2_cfg

    cfg = get_maskformer2_cfg(str(REPO_ROOT / config), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, path)


def start_app(config, weights, output, threads):
    """demo/app.py on a free port of 127.0.0.1; returns (process, url) once it serves."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASK2FORMER_ADAPTIVE_THREADS="0", OMP_NUM_THREADS=str(threads))
    log = open(os.path.join(output + "_server.log"), "w")
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "demo" / "app.py"), "--port", str(port), "--output",
         output, "--config-file", config, "--opts", "MODEL.WEIGHTS", weights,
         "MODEL.DEVICE", "cpu"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"demo/app.py did not start; see {log.name}")


def peak_rss_gib(pid):
    """Peak resident memory (VmHWM) of a running process, in GiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 2**20


def demo_process_memory(config, weights, photo, output, threads):
    """(peak RSS GiB, seconds) of demo.py --save-predictions on ``photo`` in its own process."""
    command = ["/usr/bin/time", "-v", sys.executable, str(REPO_ROOT / "demo" / "demo.py"),
               "--config-file", config, "--input", photo, "--output", output,
               "--save-predictions", "--task", "panoptic", "--opts", "MODEL.WEIGHTS", weights,
               "MODEL.DEVICE", "cpu"]
    env = dict(os.environ, MASK2FORMER_ADAPTIVE_THREADS="0", OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    return int(rss.group(1)) / 2**20, seconds


def demo_worker(config, weights, photo, output):
    """
    demo.py's functions in this process: build the demo, then for each line read from stdin
    draw ``photo`` and write its files into ``output`` (in this process's main thread, as
    demo.py does, or with "thread" in a worker thread, as the app does), and print the seconds.
    """
    from detectron2.utils.logger import setup_logger

    import demo as demo_py

    logger = setup_logger(name="bench_app")
    demo_args = demo_py.get_parser().parse_args(
        ["--config-file", config, "--task", "panoptic", "--opts", "MODEL.WEIGHTS", weights,
         "MODEL.DEVICE", "cpu"])
    demo = demo_py.VisualizationDemo(demo_py.setup_cfg(demo_args), 0.5, "panoptic")
    def run():
        demo_py.process_images(demo, [photo], output, logger, save_predictions=True)

    print("ready", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        if line.strip() == "thread":  # as the app's server runs a job: in a worker thread
            worker = threading.Thread(target=run)
            worker.start()
            worker.join()
        else:
            run()
        print(f"seconds {time.perf_counter() - start}", flush=True)


def start_demo_worker(config, weights, photo, output, threads):
    """
    :func:`demo_worker` in a process of its own; returns (process, run), ``run(mode)`` the
    seconds of one image in the main thread ("main") or in a worker thread ("thread").
    """
    env = dict(os.environ, MASK2FORMER_ADAPTIVE_THREADS="0", OMP_NUM_THREADS=str(threads))
    worker = subprocess.Popen(
        [sys.executable, __file__, "--demo-worker", config, weights, photo, output],
        cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    def reply(prefix):
        for line in worker.stdout:  # the demo logs to stdout too
            if line.startswith(prefix):
                return line[len(prefix):]
        raise SystemExit("the demo worker stopped")

    reply("ready")

    def run(mode):
        worker.stdin.write(mode + "\n")
        worker.stdin.flush()
        return float(reply("seconds "))

    return worker, run


class AppPage:
    """
    The app's page in the system's Chromium; ``upload(photo, stem)``: the seconds from handing
    the page a copy of ``photo`` named ``stem``.jpg to its result shown.
    """

    def __init__(self, url, folder):
        from playwright.sync_api import sync_playwright

        self.folder = folder
        self.playwright = sync_playwright().start()
        self.browser = launch_chromium(self.playwright)
        self.page = self.browser.new_page(viewport={"width": 1280, "height": 1000})
        self.page.set_default_timeout(RESULT_TIMEOUT_S * 1000)
        self.page.goto(url)
        self.page.wait_for_selector("#image_in input[type=file]", state="attached")

    def upload(self, photo, stem):
        copy = os.path.join(self.folder, f"{stem}.jpg")  # a new name: the page sees a new file
        shutil.copy(photo, copy)
        start = self.page.evaluate(ARM_RESULT_SHOWN, stem)
        self.page.set_input_files("#image_in input[type=file]", copy)
        return (self.page.evaluate(RESULT_SHOWN_AT, RESULT_TIMEOUT_S * 1000) - start) / 1000

    def close(self):
        self.browser.close()
        self.playwright.stop()


class PageRequests:
    """
    The requests the app's page makes for one upload (Gradio's upload, queue/join, queue/data
    event stream, the overlay image), from one keep-alive HTTP connection, as a browser keeps.
    """

    def __init__(self, url):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=RESULT_TIMEOUT_S)
        dependencies = self.http.get("config").json()["dependencies"]
        self.fn_index = next(i for i, d in enumerate(dependencies)
                             if d.get("api_name") == "segment_image")

    def segment(self, photo):
        """Upload ``photo``, wait for its panoptic result, fetch its overlay; returns the result."""
        name = os.path.basename(photo)
        with open(photo, "rb") as f:
            upload = self.http.post("gradio_api/upload", files=[("files", (name, f))])
        upload.raise_for_status()
        session = secrets.token_hex(8)
        data = [{"path": upload.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}},
                "panoptic", 0.5]
        self.http.post("gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index, "session_hash": session}).raise_for_status()
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        with self.http.stream("GET", "gradio_api/queue/data",
                              params={"session_hash": session}) as events:
            for line in events.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed" or time.monotonic() > deadline:
                    break
        if not message.get("success"):
            raise SystemExit(f"the app gave no result: {message}")
        result = message["output"]["data"]
        self.http.get(result[0]["url"]).raise_for_status()  # the overlay the page shows
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=R50_PANOPTIC, help="model config")
    parser.add_argument("--weights", help="checkpoint (default: random weights, seed 0)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each path")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both paths")
    parser.add_argument("--size", type=int, default=512, help="side of the timed photo")
    parser.add_argument("--skip-large", action="store_true",
                        help="time the small photo only, not the 24-megapixel upload")
    parser.add_argument("--demo-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.demo_worker:
        demo_worker(*args.demo_worker)
        return
    from gradio_client import Client, handle_file

    workdir = tempfile.mkdtemp(prefix="m2f_bench_app_")
    config = str(REPO_ROOT / args.config_file)
    weights = args.weights or os.path.join(workdir, "random_weights.pth")
    if not args.weights:
        random_weights(args.config_file, weights)
    large = os.path.join(workdir, "photo_6000x4000.jpg")
    make_photo(large)
    photo = os.path.join(workdir, "photo.jpg")
    with Image.open(large) as image:
        ImageOps.exif_transpose(image).resize((args.size, args.size), Image.LANCZOS).save(
            photo, quality=92)

    worker, run_demo = start_demo_worker(config, weights, photo,
                                         os.path.join(workdir, "demo") + os.sep, args.threads)
    server, url = start_app(config, weights, os.path.join(workdir, "app"), args.threads)
    page = None
    try:
        client = Client(url, verbose=False, download_files=os.path.join(workdir, "client"))
        page = AppPage(url, workdir)
        page_requests = PageRequests(url)
        uploads = iter(range(10**6))

        def timed(call):
            start = time.perf_counter()
            call()
            return time.perf_counter() - start

        paths = {
            "demo.py": lambda: run_demo("main"),
            "demo.py in a thread": lambda: run_demo("thread"),
            "app: page": lambda: page.upload(photo, f"photo_{next(uploads):04d}"),
            "app: page's requests": lambda: timed(lambda: page_requests.segment(photo)),
            "app: HTTP API, every file": lambda: timed(lambda: client.predict(
                handle_file(photo), "panoptic", 0.5, api_name="/segment_image")),
        }
        times = {name: [] for name in paths}
        for round_index in range(args.rounds + 2):  # two warm-up rounds
            for name in list(paths) if round_index % 2 else list(paths)[::-1]:  # ABC..CBA order
                seconds = paths[name]()
                if round_index >= 2:
                    times[name].append(seconds)
        medians = {name: statistics.median(t) for name, t in times.items()}
        print(f"model {args.config_file} ({'random weights' if not args.weights else weights}), "
              f"{args.size} x {args.size} photo, {args.threads} threads, {args.rounds} rounds; "
              f"load average {os.getloadavg()[0]:.1f}")
        print("| path | median | min | max |")
        print("|---|---:|---:|---:|")
        for name, t in times.items():
            print(f"| {name} | {medians[name]:.3f} s | {min(t):.3f} s | {max(t):.3f} s |")
        for name in [n for n in paths if n.startswith("app")]:
            for reference in ("demo.py", "demo.py in a thread"):
                ratio = medians[name] / medians[reference]
                paired = statistics.median(a / d for a, d in zip(times[name], times[reference]))
                print(f"{name} / {reference}: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%); "
                      f"median of the rounds' ratios {paired:.3f}")

        if args.skip_large:
            return
        before = peak_rss_gib(server.pid)
        start = time.perf_counter()
        client.predict(handle_file(large), "panoptic", 0.5, api_name="/segment_image")
        seconds = time.perf_counter() - start
        print(f"24-megapixel upload: app server peak RSS {peak_rss_gib(server.pid):.2f} GiB "
              f"(before it {before:.2f} GiB), {seconds:.1f} s from upload to result")
    finally:
        if page:
            page.close()
        worker.stdin.close()
        worker.wait(timeout=60)
        server.terminate()
        server.wait(timeout=30)
    rss, seconds = demo_process_memory(config, weights, large,
                                       os.path.join(workdir, "demo_large") + os.sep, args.threads)
    print(f"24-megapixel photo: demo.py peak RSS {rss:.2f} GiB, {seconds:.1f} s (whole process)")


if __name__ == "__main__":
    main()
