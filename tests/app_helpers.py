"""
Run the web app (demo/app.py) as its users do, on a free port of 127.0.0.1, and drive it in the
system's Chromium with Playwright. Every wait is bounded; the server is always stopped.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Headless Chromium that makes no connection of its own (updates, sync, field trials).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
]


def chromium_path():
    """The system's Chromium: $MASK2FORMER_CHROMIUM, else chromium on PATH; else the test fails."""
    path = os.environ.get("MASK2FORMER_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not path:
        pytest.fail("The browser tests need Chromium from the system's packages: run "
                    "'bash tools/install_chromium.sh' as root (or 'sudo apt-get install "
                    "chromium'), or set MASK2FORMER_CHROMIUM to a Chromium binary")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """
    ``python demo/app.py --host 127.0.0.1 --port P --output OUTPUT ARGS`` in a process of its
    own, started by ``with`` (waiting at most ``startup_s`` for the page) and stopped on exit.
    ``env`` is added to the environment. ``url``: the page's address; ``log()``: its output.
    """

    def __init__(self, args, output, env=None, startup_s=240):
        self.args, self.output, self.startup_s = [str(a) for a in args], Path(output), startup_s
        self.env = dict(os.environ, **(env or {}))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = self.output.parent / f"{self.output.name}_server.log"
        self.process = None

    def __enter__(self):
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "demo" / "app.py"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--output", str(self.output), *self.args],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_serving(self):
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"demo/app.py exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        pytest.fail(f"demo/app.py did not serve {self.url} in {self.startup_s} s:\n{self.log()}")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        return self.log_path.read_text()[-5000:] if self.log_path.exists() else ""

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def __exit__(self, *exc):
        self.stop()


def launch_chromium(playwright):
    """The system's Chromium, headless, through Playwright."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS,
                                      headless=True, timeout=60_000)
