"""
Bad input gives a clear error naming the file or key and the fix (never a silent wrong
result), on real files in the generated shapes dataset's layout. Covered elsewhere: wrong-size
annotation of COCO (test_data_coco.py), checkpoint of another number of classes
(test_checkpoint.py), unreadable video in the demo (test_main_job.py).
"""
import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from panopticapi.utils import id2rgb
from PIL import Image

from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model

from mask2former.checkpoint import MaskFormerCheckpointer
from mask2former.data.dataset_mappers import COCOPanopticLSJDatasetMapper
from mask2former.data.datasets.catalog import load_sem_seg_checked
from mask2former.data.datasets.generated_shapes import generate_shapes_dataset, load_shapes_panoptic
from mask2former.engine import TrainingStream
from small_model import small_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from train_net import setup  # noqa: E402

CONFIG = str(REPO / "configs" / "shapes" / "maskformer2_R18_shapes.yaml")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A copy of a 4-image generated shapes dataset: (root, panoptic train dataset dicts)."""
    root = tmp_path_factory.mktemp("shapes") / "shapes"
    generate_shapes_dataset(str(root), seed=1, num_train=4, num_val=1, size=64)
    return root, load_shapes_panoptic(str(root), "train")


@pytest.fixture(scope="module")
def mapper():
    cfg = small_config(num_classes=6)
    cfg.DATASETS.TRAIN = ("shapes_panoptic_train",)
    cfg.INPUT.IMAGE_SIZE = 64
    return COCOPanopticLSJDatasetMapper(cfg, is_train=True)


# ------------------------------------------------------------------------- datasets on disk
def test_missing_dataset_folder_names_path_and_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_shapes_panoptic(str(tmp_path / "nowhere"), "train")
    assert str(tmp_path / "nowhere") in str(error.value)
    assert "tools/main_job.py" in str(error.value) and "DETECTRON2_DATASETS" in str(error.value)


def test_empty_dataset_folders_are_an_error(shapes, tmp_path):
    root, _ = shapes
    empty = tmp_path / "empty"
    shutil.copytree(root, empty)
    json_file = empty / "annotations" / "panoptic_shapes_train.json"
    content = json.loads(json_file.read_text())
    json_file.write_text(json.dumps(dict(content, annotations=[])))
    with pytest.raises(FileNotFoundError, match=r"shapes_train\.json lists no annotations"):
        load_shapes_panoptic(str(empty), "train")
    for folder in ("shapes_train", "panoptic_semseg_shapes_train"):
        for f in (empty / folder).iterdir():
            f.unlink()
    with pytest.raises(FileNotFoundError, match=r"No \*\.jpg images with \*\.png annotations"):
        load_sem_seg_checked(str(empty / "panoptic_semseg_shapes_train"),
                             str(empty / "shapes_train"), "prepare it")


# ------------------------------------------------------------------------- files of one image
def _truncated(path, out):
    data = Path(path).read_bytes()
    out.write_bytes(data[: len(data) // 2])


def _not_an_image(path, out):
    out.write_bytes(b"<html>404 Not Found</html>")


@pytest.mark.parametrize("damage", [_truncated, _not_an_image])
def test_unreadable_image_names_the_file(shapes, mapper, tmp_path, damage):
    _, dicts = shapes
    bad = tmp_path / "000000.jpg"
    damage(dicts[0]["file_name"], bad)
    with pytest.raises(OSError) as error:
        mapper(dict(copy.deepcopy(dicts[0]), file_name=str(bad)))
    assert f"Cannot read {bad}" in str(error.value) and "remove it from the dataset" in str(
        error.value)


def test_unreadable_image_in_training_stream_is_logged_with_its_file(shapes, mapper, tmp_path,
                                                                     caplog):
    _, dicts = shapes
    bad = tmp_path / "bad.jpg"
    _truncated(dicts[0]["file_name"], bad)
    stream = TrainingStream([dict(dicts[0], file_name=str(bad))], mapper, seed=0)
    with pytest.raises(OSError):
        stream[5]
    assert f"Failed to load the training sample {bad} (stream position 5)" in caplog.text


def test_annotation_of_wrong_size_names_both_files(shapes, mapper, tmp_path):
    _, dicts = shapes
    small = tmp_path / "pan.png"
    Image.open(dicts[0]["pan_seg_file_name"]).resize((32, 32), Image.NEAREST).save(small)
    with pytest.raises(ValueError) as error:
        mapper(dict(copy.deepcopy(dicts[0]), pan_seg_file_name=str(small)))
    message = str(error.value)
    assert str(small) in message and dicts[0]["file_name"] in message and "32x32" in message


def test_panoptic_segment_id_missing_from_json_is_an_error(shapes, mapper, tmp_path):
    _, dicts = shapes
    pan = np.asarray(Image.open(dicts[0]["pan_seg_file_name"])).copy()
    pan[:4, :4] = id2rgb(987654)
    path = tmp_path / "pan.png"
    Image.fromarray(pan).save(path)
    with pytest.raises(ValueError) as error:
        mapper(dict(copy.deepcopy(dicts[0]), pan_seg_file_name=str(path)))
    assert str(path) in str(error.value) and "[987654]" in str(error.value)
    # Void pixels (id 0) are allowed.
    pan[:4, :4] = 0
    Image.fromarray(pan).save(path)
    mapper(dict(copy.deepcopy(dicts[0]), pan_seg_file_name=str(path)))


def test_image_without_segments_trains(shapes, mapper, tmp_path):
    """No annotated segment: zero targets, finite losses and gradients for every parameter."""
    _, dicts = shapes
    pan = tmp_path / "void.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(pan)
    empty = mapper(dict(copy.deepcopy(dicts[0]), pan_seg_file_name=str(pan), segments_info=[]))
    assert len(empty["instances"]) == 0
    torch.manual_seed(0)
    model = build_model(small_config(num_classes=6, num_queries=4, dec_layers=2)).train()
    for batch in ([empty], [empty, mapper(copy.deepcopy(dicts[1]))]):
        model.zero_grad()
        losses = model(batch)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_evaluation_refuses_a_checkpoint_for_another_number_of_classes(tmp_path):
    """train_net.py --eval-only loads with require_matching_shapes (training fine-tunes:
    skipped weights are only logged, see test_checkpoint.py)."""
    torch.manual_seed(0)
    path = tmp_path / "four_classes.pth"
    torch.save({"model": build_model(small_config(num_classes=4, dec_layers=2)).state_dict()},
               path)
    model = build_model(small_config(num_classes=6, dec_layers=2))
    with pytest.raises(ValueError) as error:
        MaskFormerCheckpointer(model, require_matching_shapes=True).load(str(path))
    message = str(error.value)
    assert str(path) in message and "NUM_CLASSES" in message
    assert "sem_seg_head.predictor.class_embed.weight: checkpoint (5, 64), model (7, 64)" in message


# ------------------------------------------------------------------------- config
@pytest.mark.parametrize("opts, pattern", [
    (["MODEL.MASK_FORMER.NUM_QUERIES", "10"], r"MODEL\.MASK_FORMER\.NUM_QUERIES"),
    (["SOLVER.MAX_ITER", "ten"], r"Type mismatch .* for config key: SOLVER\.MAX_ITER"),
    (["DATASETS.TRAIN", "('shapes_panoptic_trian',)"],
     r"DATASETS\.TRAIN names the dataset 'shapes_panoptic_trian', which is not registered\. "
     r"Did you mean 'shapes_panoptic_train'"),
    (["DATASETS.TEST", "('my_val',)"], r"DATASETS\.TEST names the dataset 'my_val'"),
])
def test_config_errors_name_the_key(opts, pattern):
    args = default_argument_parser().parse_args(["--config-file", CONFIG] + opts)
    with pytest.raises((AssertionError, KeyError, ValueError), match=pattern):
        setup(args)


def test_unknown_key_in_yaml_file_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"_BASE_: {CONFIG}\nSOLVER:\n  MAX_ITERS: 5\n")
    args = default_argument_parser().parse_args(["--config-file", str(config)])
    with pytest.raises(KeyError, match=r"Non-existent config key: SOLVER\.MAX_ITERS"):
        setup(args)
