"""The environment that tools/setup_env.sh builds: Detectron2 and the evaluation packages import."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module",
    [
        "detectron2.engine",
        "detectron2.evaluation",
        "detectron2.projects.deeplab",
        "detectron2.model_zoo",
        "panopticapi.evaluation",
        "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
        "mask2former",
    ],
)
def test_module_imports(module):
    importlib.import_module(module)


def test_detectron2_evaluators_available():
    from detectron2.evaluation import (
        CityscapesInstanceEvaluator,
        CityscapesSemSegEvaluator,
        COCOEvaluator,
        COCOPanopticEvaluator,
        SemSegEvaluator,
    )

    for evaluator in (COCOEvaluator, COCOPanopticEvaluator, SemSegEvaluator,
                      CityscapesInstanceEvaluator, CityscapesSemSegEvaluator):
        assert callable(evaluator)


def test_detectron2_model_zoo_configs_ship():
    from detectron2.model_zoo import get_config_file

    assert Path(get_config_file("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml")).is_file()


def test_detectron2_builds_and_runs_a_model():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    model = build_model(cfg).eval()
    import torch

    with torch.no_grad():
        outputs = model([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8)}])
    assert "instances" in outputs[0]


def _load_installer():
    spec = importlib.util.spec_from_file_location(
        "install_detectron2", REPO_ROOT / "tools" / "install_detectron2.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installer_refuses_an_unexpected_sdist(tmp_path):
    installer = _load_installer()
    (tmp_path / "setup.py").write_text("setup(name='something-else')\n")
    with pytest.raises(installer.PatchError, match="setup.py"):
        installer.apply_patches(tmp_path)


def test_installer_keeps_a_working_detectron2():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "install_detectron2.py")],
        capture_output=True, text=True, check=True,
    )
    assert "kept the installed Detectron2" in result.stdout
