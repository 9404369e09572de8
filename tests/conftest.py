"""Fixtures shared by several test files."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_quick_job(script, output, data_root):
    """Run ``script --quick`` (a main job) into ``output`` and ``data_root``; returns stdout."""
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--output", str(output), "--data-root",
         str(data_root)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """
    Run the real entry point once per session: ``tools/main_job.py --quick``. Returns (output
    folder, dataset folder, stdout); the dataset folder is ``<root>/generated/shapes``, so a
    process started with ``DETECTRON2_DATASETS=<root>`` (``quick_run[1].parents[1]``) finds the
    generated datasets under their registered names.
    """
    tmp = tmp_path_factory.mktemp("main_job")
    output, data_root = tmp / "out", tmp / "datasets" / "generated" / "shapes"
    return output, data_root, _run_quick_job("tools/main_job.py", output, data_root)


@pytest.fixture(scope="session")
def quick_video_run(tmp_path_factory):
    """
    Run ``tools/main_job_video.py --quick`` once per session. Returns (output folder, video
    dataset folder, stdout).
    """
    tmp = tmp_path_factory.mktemp("main_job_video")
    output, data_root = tmp / "out", tmp / "data"
    return output, data_root, _run_quick_job("tools/main_job_video.py", output, data_root)
