"""Install Detectron2 into the running Python environment, offline-friendly and idempotent.

Order of preference:

1. a Detectron2 that already imports and passes the smoke check is kept as it is;
2. an official source checkout named by ``--source`` or ``$DETECTRON2_SOURCE`` is installed
   with ``pip install --no-build-isolation`` (it builds ``detectron2._C`` with a C++ compiler);
3. otherwise the Detectron2 v0.6 sources on the package index (the sdist ``pb1-detectron2==0.6``)
   are downloaded, patched for current numpy / Pillow / setuptools / a missing ``_C``, and
   installed without compiled ops.

Every patch names the exact text it expects and fails loudly when that text is not found, so a
different sdist is never half-patched. After installing, the smoke check imports the modules
Mask2Former uses and builds a small Detectron2 model.

Run with the Python of the target environment: ``python tools/install_detectron2.py``.
"""
import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"

SMOKE_CHECK = """
import detectron2, detectron2.config, detectron2.engine, detectron2.modeling
import detectron2.evaluation, detectron2.projects.deeplab, detectron2.model_zoo
from detectron2.evaluation import (COCOEvaluator, COCOPanopticEvaluator, SemSegEvaluator,
    CityscapesInstanceEvaluator, CityscapesSemSegEvaluator)
from detectron2.config import get_cfg
from detectron2.modeling import build_model
cfg = get_cfg()
cfg.MODEL.DEVICE = "cpu"
model = build_model(cfg)
assert sum(p.numel() for p in model.parameters()) > 0
print("detectron2", detectron2.__version__, "from", detectron2.__file__)
"""


class PatchError(RuntimeError):
    pass


def _literal(path, old, new, count=1):
    """A patch replacing the exact text ``old`` (found ``count`` times) by ``new``."""
    return (path, re.escape(old), new.replace("\\", "\\\\"), count)


_OPTIONAL_C = (
    "try:\n"
    "    from detectron2 import _C\n"
    "except ImportError:  # built without compiled ops: only the ops that need _C fail\n"
    "    _C = None\n"
)

# (file relative to the sdist root, regex, replacement, expected number of matches)
PATCHES = [
    # Build no extension module: the _C sources are not in the sdist.
    _literal("setup.py", "    ext_modules=get_extensions(),\n", ""),
    # Ship the model-zoo yaml files that the sdist keeps next to model_zoo.py.
    _literal(
        "setup.py",
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
        'package_data={"detectron2.model_zoo": ["configs/*.yaml", "configs/**/*.yaml",'
        ' "configs/**/*.py"]},',
    ),
    _literal("detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", ""),
    _literal(
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n'
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
        '    )',
        'cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
    ),
    # _C is optional, as in upstream main.
    _literal("detectron2/layers/rotated_boxes.py", "from detectron2 import _C\n", _OPTIONAL_C),
    _literal("detectron2/layers/deform_conv.py", "from detectron2 import _C\n", _OPTIONAL_C),
    _literal("detectron2/layers/roi_align_rotated.py", "from detectron2 import _C\n", _OPTIONAL_C),
    _literal(
        "detectron2/evaluation/coco_evaluation.py",
        "from detectron2.evaluation.fast_eval_api import COCOeval_opt\n",
        "try:\n"
        "    from detectron2.evaluation.fast_eval_api import COCOeval_opt\n"
        "    from detectron2 import _C as _compiled_ops\n"
        "except ImportError:  # no compiled ops: pycocotools' COCOeval gives the same numbers\n"
        "    COCOeval_opt = COCOeval\n",
    ),
    # numpy >= 1.24 removed the aliases of builtin types.
    ("detectron2/evaluation/pascal_voc_evaluation.py", r"np\.bool\b(?!_)", "bool", 2),
    ("detectron2/evaluation/sem_seg_evaluation.py", r"np\.int\b(?!_)", "int", 2),
    ("detectron2/evaluation/sem_seg_evaluation.py", r"np\.float\b(?!_)", "float", 5),
    ("detectron2/structures/masks.py", r"np\.bool\b(?!_)", "bool", 3),
    ("detectron2/data/datasets/pascal_voc.py", r"np\.str\b(?!_)", "str", 1),
    ("detectron2/data/build.py", r"np\.int\b(?!_)", "int", 2),
    ("detectron2/utils/visualizer.py", r"np\.bool\b(?!_)", "bool", 3),
    ("detectron2/utils/video_visualizer.py", r"np\.bool\b(?!_)", "bool", 1),
    # Pillow >= 10 removed Image.LINEAR (it was an alias of BILINEAR).
    _literal("detectron2/data/transforms/transform.py", "Image.LINEAR", "Image.BILINEAR"),
]


def log(msg):
    print(f"[install_detectron2] {msg}", flush=True)


def smoke_check():
    """
    Import Detectron2 and build a small model in a fresh process.

    Returns (ok, summary): ``summary`` is the version line when ok, else the error output.
    """
    proc = subprocess.run(
        [sys.executable, "-c", SMOKE_CHECK],
        capture_output=True, text=True, cwd=tempfile.gettempdir(),
    )
    if proc.returncode == 0:
        return True, proc.stdout.strip().splitlines()[-1]
    return False, (proc.stdout + proc.stderr).strip()


def apply_patches(root: Path):
    """Apply PATCHES under ``root``; raise PatchError naming the file and text on any mismatch."""
    for rel_path, pattern, replacement, expected in PATCHES:
        path = root / rel_path
        if not path.is_file():
            raise PatchError(f"{path} does not exist: this is not the expected {SDIST_NAME} sdist")
        text = path.read_text()
        new_text, found = re.subn(pattern, replacement, text)
        if found != expected:
            raise PatchError(
                f"{path}: expected {expected} match(es) of {pattern!r}, found {found}. "
                f"This is not the {SDIST_NAME}=={SDIST_VERSION} sdist the patches were written "
                "for; install Detectron2 from an official source checkout instead "
                "(--source /path/to/detectron2)."
            )
        path.write_text(new_text)
    log(f"applied {len(PATCHES)} compatibility patches")


def pip(*args):
    cmd = [sys.executable, "-m", "pip", args[0], "-q", *args[1:]]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True)


def install_from_source_checkout(source: Path):
    if not (source / "setup.py").is_file() or not (source / "detectron2").is_dir():
        raise SystemExit(
            f"{source} is not a Detectron2 source checkout (no setup.py / detectron2/)"
        )
    pip("install", "--no-build-isolation", "--no-deps", str(source))


def install_from_index_sdist(cache_dir: Path):
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
    if not archive.is_file():
        pip("download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
            "-d", str(cache_dir), f"{SDIST_NAME}=={SDIST_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        root = Path(tmp) / f"{SDIST_NAME}-{SDIST_VERSION}"
        apply_patches(root)
        pip("install", "--no-build-isolation", "--no-deps", str(root))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=os.environ.get("DETECTRON2_SOURCE"),
                        help="an official Detectron2 source checkout to install")
    parser.add_argument("--cache-dir", default=str(Path(sys.prefix) / "detectron2-sdist"),
                        help="where the downloaded sdist is kept")
    args = parser.parse_args()

    ok, output = smoke_check()
    if ok:
        log(f"kept the installed Detectron2: {output}")
        return
    if "No module named 'detectron2'" not in output:
        log("an installed Detectron2 fails the smoke check; reinstalling. It said:\n" + output)

    if args.source:
        install_from_source_checkout(Path(args.source))
    else:
        install_from_index_sdist(Path(args.cache_dir))

    ok, output = smoke_check()
    if not ok:
        raise SystemExit(
            "[install_detectron2] Detectron2 was installed but fails to import or build a model:\n"
            f"{output}\nFix the error above, or point --source / $DETECTRON2_SOURCE at an official "
            "Detectron2 checkout, then run this again."
        )
    log(f"installed: {output}")


if __name__ == "__main__":
    try:
        main()
    except PatchError as err:
        raise SystemExit(f"[install_detectron2] {err}")
