"""
The web app (demo/app.py) against demo.py, in one run:

1. Time from upload to result on a 512 x 512 photo (the 24-megapixel one below, scaled down):
   the app through its HTTP API (gradio_client: upload, queue, reading, prediction, drawing, the
   result files written and downloaded) against demo.py's own functions on the same photo in a
   process of their own (reading, prediction, drawing, the same files written:
   ``process_images(..., save_predictions=True)``, timed inside that process). The two alternate
   for ``--rounds`` rounds after warm-ups (in ABCCBA order), both with ``--threads`` fixed threads
   (MASK2FORMER_ADAPTIVE_THREADS=0), so they see the same machine load; medians are reported.
   demo.py's functions run in their process's main thread, as demo.py runs them, and also in a
   worker thread, as the app's server runs a job (the two differ: BENCHMARKS.md).
2. The app server's peak memory (VmHWM) after a 24-megapixel upload (6000 x 4000 JPEG stored
   sideways with EXIF orientation, bench_large_image.py's photo), and demo.py's on the same
   photo in a process of its own (``/usr/bin/time -v``).

The model: the R50 COCO panoptic config with random weights (seed 0), or --config-file and
--weights (e.g. the main job's model). Both paths compute the panoptic task.

    python benchmarks/bench_app.py [--rounds 10] [--threads 2] [--config-file X.yaml --weights W]
"""
import argparse
import os
import re
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
from bench_large_image import make_photo  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

R50_PANOPTIC = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=R50_PANOPTIC, help="model config")
    parser.add_argument("--weights", help="checkpoint (default: random weights, seed 0)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each path")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both paths")
    parser.add_argument("--size", type=int, default=512, help="side of the timed photo")
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
    try:
        client = Client(url, verbose=False, download_files=os.path.join(workdir, "client"))

        def run_app():
            start = time.perf_counter()
            client.predict(handle_file(photo), "panoptic", 0.5, api_name="/segment_image")
            return time.perf_counter() - start

        paths = [("demo.py", lambda: run_demo("main")), ("app", run_app),
                 ("demo.py in a thread", lambda: run_demo("thread"))]
        times = {name: [] for name, _ in paths}
        for round_index in range(args.rounds + 2):  # two warm-up rounds
            for name, run in paths if round_index % 2 else paths[::-1]:  # ABCCBA order
                seconds = run()
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
        for reference in ("demo.py", "demo.py in a thread"):
            ratio = medians["app"] / medians[reference]
            paired = statistics.median(a / d for a, d in zip(times["app"], times[reference]))
            print(f"app / {reference}: {ratio:.3f} (overhead {100 * (ratio - 1):+.1f}%); median "
                  f"of the rounds' ratios {paired:.3f}")

        before = peak_rss_gib(server.pid)
        start = time.perf_counter()
        client.predict(handle_file(large), "panoptic", 0.5, api_name="/segment_image")
        seconds = time.perf_counter() - start
        print(f"24-megapixel upload: app server peak RSS {peak_rss_gib(server.pid):.2f} GiB "
              f"(before it {before:.2f} GiB), {seconds:.1f} s from upload to result")
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
        server.terminate()
        server.wait(timeout=30)
    rss, seconds = demo_process_memory(config, weights, large,
                                       os.path.join(workdir, "demo_large") + os.sep, args.threads)
    print(f"24-megapixel photo: demo.py peak RSS {rss:.2f} GiB, {seconds:.1f} s (whole process)")


if __name__ == "__main__":
    main()
