#!/usr/bin/env bash
# Set up ./.venv (or $VENV) with everything Mask2Former needs, offline but for the package index:
# torch + torchvision, the Python dependencies (with the test, deploy and app extras: pytest,
# playwright, onnx, onnxruntime, gradio), Detectron2 (tools/install_detectron2.py) and this
# package, editable, with its native MSDeformAttn op; and, where it may (as root), Chromium from
# the system's packages for the web app's browser tests (tools/install_chromium.sh). Safe to run
# again: when nothing it depends on changed since the last successful run, it checks the
# environment and returns in seconds.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
venv="${VENV:-$repo_root/.venv}"
python_bin="${PYTHON:-python3}"
torch_pins=(torch==2.14.1 torchvision==0.29.1)

say() { echo "[setup_env] $*"; }
# The machine's pip config lists local folders that do not exist for most packages; drop that noise.
pip_quiet() { "$venv/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# Everything whose change calls for a new install.
stamp_inputs() {
  cat setup.py tools/setup_env.sh tools/install_detectron2.py tools/install_chromium.sh
  find mask2former -path '*/csrc/*' -type f | LC_ALL=C sort | xargs -r cat
}
stamp="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
stamp_file="$venv/.mask2former-setup-stamp"

# The browser tests need a Chromium; a user who cannot install system packages is told how, and
# everything else still installs (.ci/run requires it).
bash tools/install_chromium.sh || say "WARNING: without Chromium the web app's browser tests fail"

if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]] \
   && "$venv/bin/python" -c "import torch, detectron2, mask2former, onnxruntime, gradio, playwright" \
      2>/dev/null; then
  say "environment in $venv is up to date"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  say "creating $venv with $("$python_bin" --version)"
  "$python_bin" -m venv "$venv"
fi

say "installing ${torch_pins[*]}"
pip_quiet install -q "${torch_pins[@]}"

say "installing the Python dependencies and mask2former (editable, with its native op)"
pip_quiet install -q --no-build-isolation -e ".[test,deploy,app]"

say "installing Detectron2"
"$venv/bin/python" tools/install_detectron2.py 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

"$venv/bin/python" - <<'PY'
import gradio
import onnxruntime
import torch
import detectron2
import mask2former
from mask2former.modeling.pixel_decoder.ops import ms_deform_attn
print(f"[setup_env] torch {torch.__version__}, detectron2 {detectron2.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, gradio {gradio.__version__}, "
      f"mask2former from {mask2former.__file__}")
PY
echo "$stamp" > "$stamp_file"
say "done: use $venv/bin/python"
