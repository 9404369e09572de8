"""
tools/deploy/export_model.py as users run it, on the main job's --quick model: --run-eval prints
the metrics of train_net.py --eval-only; the exported model follows the post-processing keys of
MODEL.MASK_FORMER.TEST as MaskFormer does; the demo runs the exported model on a large photo,
computing only what it draws; the runner needs only numpy and onnxruntime, and the package
imports without them; bad input is refused clearly.
"""
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import ImageList

from deploy_checks import as_numpy, assert_same_results
from mask2former.checkpoint import MaskFormerCheckpointer
from mask2former.config import get_maskformer2_cfg
from mask2former.deploy import ExportedMask2Former
from mask2former.export import ExportedMaskFormer

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tools" / "deploy"))
import export_model  # noqa: E402

# Metrics of the two evaluations may differ by this much (the bar).
METRIC_TOLERANCE = 0.01


def _env(data_root, **extra):
    """The environment of a user's process: datasets found under DETECTRON2_DATASETS."""
    return dict(os.environ, DETECTRON2_DATASETS=str(Path(data_root).parents[1]), **extra)


def _run(args, data_root, **kwargs):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, env=_env(data_root), **kwargs)
    return proc


def _copypaste_metrics(log):
    """{task: {metric: value}} from the "copypaste:" lines of Detectron2's print_csv_format."""
    metrics = {}
    lines = [line.split("copypaste: ", 1)[1] for line in log.splitlines() if "copypaste: " in line]
    for task_line, names_line, values_line in zip(lines[0::3], lines[1::3], lines[2::3]):
        task = task_line.replace("Task: ", "").strip()
        values = [float(v) for v in values_line.split(",")]
        metrics[task] = dict(zip(names_line.split(","), values))
    return metrics


@pytest.fixture(scope="module")
def exported_quick_model(quick_run, tmp_path_factory):
    """The quick model exported to ONNX with --run-eval, and train_net.py --eval-only's log."""
    output, data_root, _ = quick_run
    export_dir = tmp_path_factory.mktemp("export")
    weights = output / "model_final.pth"
    exported = _run([REPO_ROOT / "tools/deploy/export_model.py", "--config-file",
                     output / "config.yaml", "--format", "onnx", "--output", export_dir,
                     "--run-eval", "MODEL.WEIGHTS", weights], data_root)
    assert exported.returncode == 0, exported.stderr[-3000:]
    evaluated = _run([REPO_ROOT / "train_net.py", "--config-file", output / "config.yaml",
                      "--eval-only", "MODEL.WEIGHTS", weights,
                      "OUTPUT_DIR", tmp_path_factory.mktemp("eval_only")], data_root)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    return export_dir, exported.stdout + exported.stderr, evaluated.stdout + evaluated.stderr


def test_run_eval_gives_the_metrics_of_train_net_eval_only(exported_quick_model):
    export_dir, export_log, eval_only_log = exported_quick_model
    assert {p.name for p in export_dir.iterdir()} >= {"model.onnx", "deploy_info.json",
                                                      "config.yaml"}
    settings = json.loads((export_dir / "deploy_info.json").read_text())["inference"]
    assert (settings["semantic_output"], settings["postprocess_at_network_resolution"],
            settings["postprocess_chunk_mb"]) == ("scores", False, 64)
    exported, expected = _copypaste_metrics(export_log), _copypaste_metrics(eval_only_log)
    assert set(expected) >= {"panoptic_seg", "segm", "sem_seg"}
    assert set(exported) == set(expected)
    for task, metrics in expected.items():
        assert exported[task].keys() == metrics.keys()
        for name, value in metrics.items():
            if math.isnan(value):  # AP of a size range without objects
                assert math.isnan(exported[task][name]), (task, name)
            else:
                assert abs(exported[task][name] - value) <= METRIC_TOLERANCE, (task, name)
    # The same tables: Detectron2's evaluators print them, then print_csv_format.
    for table_title in ("Panoptic Evaluation Results", "Evaluation results for segm"):
        assert table_title in export_log and table_title in eval_only_log


# Post-processing options of MODEL.MASK_FORMER.TEST, as the demo sets them for a large photo
# (a label map) and in the fast mode; chunks of 1 MiB hold 2 of the 20 queries at 400 x 300.
POSTPROCESS_OPTIONS = {
    "labels_in_chunks": ["MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", "labels",
                         "MODEL.MASK_FORMER.TEST.POSTPROCESS_CHUNK_MB", "1"],
    "network_resolution": ["MODEL.MASK_FORMER.TEST.POSTPROCESS_AT_NETWORK_RESOLUTION", "True"],
}


@pytest.mark.parametrize("opts", POSTPROCESS_OPTIONS.values(), ids=POSTPROCESS_OPTIONS.keys())
def test_exported_model_follows_the_post_processing_keys(exported_quick_model, quick_run, opts):
    """
    The keys mean for the exported model what they mean for MaskFormer: given the same head
    outputs, the same results at an output size larger than the input's.
    """
    export_dir, _, _ = exported_quick_model
    output, data_root, _ = quick_run
    weights = str(output / "model_final.pth")
    cfg = get_maskformer2_cfg(str(export_dir / "config.yaml"), opts + ["MODEL.WEIGHTS", weights])
    exported = ExportedMaskFormer(cfg, str(export_dir / "model.onnx"))
    model = build_model(cfg).eval()
    MaskFormerCheckpointer(model).load(weights)

    image = cv2.imread(str(data_root / "shapes_val" / "000004.jpg"))[:, :, ::-1]  # RGB
    image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    size = tuple(image.shape[-2:])
    inputs = [{"image": image, "height": 400, "width": 300}]
    class_logits, mask_logits = exported.runner.head_outputs(image.numpy())
    # MaskFormer's inference of those logits: at the image size its resizes before the
    # output size are identities.
    outputs = {"pred_logits": torch.from_numpy(class_logits),
               "pred_masks": torch.from_numpy(mask_logits)}
    with torch.no_grad():
        expected = model.inference(outputs, inputs, ImageList(image[None].float(), [size]))[0]
    actual = exported(inputs)[0]
    assert "sem_seg" not in actual or "sem_seg_labels" not in actual
    assert actual["panoptic_seg"][0].shape == (400, 300)
    assert_same_results(expected, as_numpy(actual))


def test_demo_runs_the_exported_model_on_a_large_photo(exported_quick_model, quick_run,
                                                      tmp_path):
    """A 2400 x 1800 photo (56 times the model's input): the model computes only the drawn task."""
    export_dir, _, _ = exported_quick_model
    _, data_root, _ = quick_run
    image = tmp_path / "large.jpg"
    small = cv2.imread(str(data_root / "shapes_val" / "000001.jpg"))
    cv2.imwrite(str(image), cv2.resize(small, (2400, 1800), interpolation=cv2.INTER_CUBIC))
    proc = _run([REPO_ROOT / "demo/demo.py", "--config-file", export_dir / "config.yaml",
                 "--input", image, "--output", f"{tmp_path / 'vis'}{os.sep}", "--opts",
                 "MODEL.WEIGHTS", export_dir / "model.onnx"], data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    described = [line.split("large.jpg: ", 1)[1] for line in log.splitlines()
                 if "large.jpg: " in line]
    assert len(described) == 1 and "panoptic segments" in described[0]
    assert "instances" not in described[0] and "semantic map" not in described[0]
    assert cv2.imread(str(tmp_path / "vis" / "large.jpg")).shape == (1536, 2048, 3)


def test_exported_model_for_another_class_count_is_refused(exported_quick_model):
    export_dir, _, _ = exported_quick_model
    cfg = get_maskformer2_cfg(str(export_dir / "config.yaml"),
                              ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7"])
    with pytest.raises(ValueError) as error:
        ExportedMaskFormer(cfg, str(export_dir / "model.onnx"))
    message = str(error.value)
    assert "model.onnx does not fit the config" in message
    assert "(B, 20, 7)" in message and "(B, 20, 8)" in message


def test_checkpoint_for_another_class_count_is_refused(quick_run, tmp_path):
    output, _, _ = quick_run
    with pytest.raises(ValueError, match=r"class_embed.weight: checkpoint \(7, 64\), model "
                                         r"\(8, 64\)"):
        export_model.main(["--config-file", str(output / "config.yaml"), "--output",
                           str(tmp_path), "MODEL.WEIGHTS", str(output / "model_final.pth"),
                           "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "7"])
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("args, expected", [
    (["--format", "tflite"], "invalid choice: 'tflite' (choose from onnx, torchscript)"),
    (["--export-method", "scripting"], "scripting is not supported"),
    (["MODEL.META_ARCHITECTURE", "SemanticSegmentor"],
     "only Mask2Former's image model (MaskFormer) is exported"),
    (["TEST.AUG.ENABLED", "True"], "Export with TEST.AUG.ENABLED False"),
])
def test_bad_input_says_why_and_what_to_do(quick_run, tmp_path, capsys, args, expected):
    output, _, _ = quick_run
    with pytest.raises(SystemExit) as exit_info:
        export_model.main(["--config-file", str(output / "config.yaml"), "--output",
                           str(tmp_path), *args])
    message = f"{exit_info.value.code} {capsys.readouterr().err}".replace("'onnx'", "onnx")
    assert expected in message.replace("'torchscript'", "torchscript")
    assert not (tmp_path / "model.onnx").exists()


# Runs in a process where torch and Detectron2 cannot be imported.
WITHOUT_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = sys.modules["detectron2"] = None
    import numpy as np
    from mask2former.deploy import ExportedMask2Former
    runner = ExportedMask2Former(sys.argv[1], num_threads=1)
    image = np.load(sys.argv[2])
    results = runner(image)
    np.savez(sys.argv[3], sem_seg=results["sem_seg"], panoptic=results["panoptic_seg"][0],
             masks=results["instances"]["pred_masks"])
    assert not any(name.split(".")[0] in ("torch", "detectron2") and module is not None
                   for name, module in sys.modules.items())
""")


def test_runner_needs_only_numpy_and_onnxruntime(exported_quick_model, quick_run, tmp_path):
    export_dir, _, _ = exported_quick_model
    _, data_root, _ = quick_run
    image = cv2.imread(str(data_root / "shapes_val" / "000002.jpg"))
    np.save(tmp_path / "image.npy", image)
    proc = _run(["-c", WITHOUT_TORCH, export_dir / "model.onnx", tmp_path / "image.npy",
                 tmp_path / "results.npz"], data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = np.load(tmp_path / "results.npz")
    expected = ExportedMask2Former(str(export_dir / "model.onnx"))(image)
    assert np.array_equal(found["sem_seg"], expected["sem_seg"])
    assert np.array_equal(found["panoptic"], expected["panoptic_seg"][0])
    assert np.array_equal(found["masks"], expected["instances"]["pred_masks"])


# Runs in a process where onnx, onnxruntime and onnxscript cannot be imported.
WITHOUT_ONNX = textwrap.dedent("""
    import sys
    sys.modules["onnx"] = sys.modules["onnxruntime"] = sys.modules["onnxscript"] = None
    import mask2former, mask2former.export, mask2former.deploy
    from mask2former.deploy import ExportedMask2Former
    try:
        ExportedMask2Former(sys.argv[1])
    except ImportError as error:
        print(error)
""")


def test_package_imports_without_onnx(exported_quick_model, quick_run):
    export_dir, _, _ = exported_quick_model
    proc = _run(["-c", WITHOUT_ONNX, export_dir / "model.onnx"], quick_run[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "needs onnxruntime: `pip install onnxruntime`" in proc.stdout


def test_example_image_too_small_is_refused(quick_run, tmp_path):
    output, _, _ = quick_run
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 40, 3), np.uint8))
    with pytest.raises(ValueError, match=r"the example image is \(20, 40\); give one of at "
                                         r"least 33 x 33 pixels"):
        export_model.main(["--config-file", str(output / "config.yaml"), "--output",
                           str(tmp_path), "--sample-image", str(small),
                           "INPUT.MIN_SIZE_TEST", "0"])


def test_torchscript_export_runs_like_onnx(exported_quick_model, quick_run, tmp_path):
    export_dir, _, _ = exported_quick_model
    output, data_root, _ = quick_run
    image_path = data_root / "shapes_val" / "000003.jpg"
    export_model.main(["--config-file", str(output / "config.yaml"), "--format", "torchscript",
                       "--sample-image", str(image_path), "--output", str(tmp_path),
                       "MODEL.WEIGHTS", str(output / "model_final.pth")])
    image = cv2.imread(str(image_path))
    onnx_logits = ExportedMask2Former(str(export_dir / "model.onnx")).head_outputs(
        image.transpose(2, 0, 1)[::-1])
    torchscript_logits = ExportedMask2Former(str(tmp_path / "model.ts")).head_outputs(
        image.transpose(2, 0, 1)[::-1])
    for a, b in zip(onnx_logits, torchscript_logits):
        assert np.abs(a - b).max() <= 1e-4


def test_web_app_serves_every_task_of_an_exported_model_from_one_session(exported_quick_model,
                                                                        quick_run, tmp_path):
    """The web app's jobs (demo/app_jobs.py) on the ONNX model: one ONNX Runtime session."""
    export_dir, _, _ = exported_quick_model
    sys.path.insert(0, str(REPO_ROOT / "demo"))
    from app_jobs import SegmentationJobs

    cfg = get_maskformer2_cfg(str(export_dir / "config.yaml"),
                              ["MODEL.WEIGHTS", str(export_dir / "model.onnx")])
    jobs = SegmentationJobs(cfg, tmp_path)
    image = str(quick_run[1] / "shapes_val" / "000001.jpg")
    results = [jobs.segment_image(image, task, 0.0) for task in jobs.tasks]
    assert [r.task for r in results] == ["panoptic", "instance", "semantic"]
    assert all(os.path.isfile(path) for r in results for path in r.files)
    assert len({id(jobs._predictor(task).model.runner) for task in jobs.tasks}) == 1
