"""
Shared steps of the data tests: run a prepare script as users do, train a small
Mask2Former for two iterations through train_net.py's Trainer, and run the real evaluators
on predictions made from the ground truth.
"""
import contextlib
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from panopticapi.utils import rgb2id
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import builtin
from detectron2.structures import BitMasks, Instances

from mask2former.data.datasets import register_all

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import dataset_writers  # noqa: E402
from small_model import small_config  # noqa: E402
from train_net import Trainer  # noqa: E402

_DATASETS_ROOT = {}


def register_datasets(root):
    """
    Register every dataset the configs use with files under ``root``, as importing
    Detectron2 and mask2former.data does for $DETECTRON2_DATASETS: Detectron2's own COCO and
    Cityscapes datasets (removed and registered again) and Mask2Former's.
    """
    for name in DatasetCatalog.list():
        if name.startswith(("coco_", "keypoints_coco_", "cityscapes_")):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    builtin.register_all_coco(str(root))
    builtin.register_all_cityscapes(str(root))
    builtin.register_all_cityscapes_panoptic(str(root))
    register_all(str(root))


@contextlib.contextmanager
def registered_at(root, datasets_root):
    """Register the datasets with files under ``root`` for a ``with`` block, then again under
    ``datasets_root`` (the session's datasets)."""
    register_datasets(root)
    try:
        yield
    finally:
        register_datasets(datasets_root)


@pytest.fixture(scope="session")
def datasets_root(tmp_path_factory):
    """
    A $DETECTRON2_DATASETS folder with tiny COCO, ADE20K, ADE20K-Full, Cityscapes and
    Mapillary Vistas datasets in their official layouts, prepared by the prepare scripts (and
    cityscapesscripts for Cityscapes) and registered. Built once per test session.
    """
    if "root" not in _DATASETS_ROOT:
        root = tmp_path_factory.mktemp("datasets")
        dataset_writers.write_coco(root)
        dataset_writers.write_ade20k(root)
        dataset_writers.write_ade20k_full(root)
        dataset_writers.write_mapillary_vistas(root)
        dataset_writers.write_cityscapes(root)
        for script in ("prepare_coco_semantic_annos_from_panoptic.py",
                       "prepare_ade20k_sem_seg.py", "prepare_ade20k_pan_seg.py",
                       "prepare_ade20k_ins_seg.py", "prepare_ade20k_full_sem_seg.py"):
            run_prepare(script, root)
        prepare_cityscapes(root)
        _DATASETS_ROOT["root"] = root
    register_datasets(_DATASETS_ROOT["root"])
    return _DATASETS_ROOT["root"]


def prepare_cityscapes(root):
    """The Cityscapes preparation users run: cityscapesscripts' train-id and panoptic PNGs."""
    from cityscapesscripts.preparation import createPanopticImgs, createTrainIdLabelImgs

    env = os.environ.get("CITYSCAPES_DATASET")
    os.environ["CITYSCAPES_DATASET"] = str(Path(root) / "cityscapes")
    try:
        createTrainIdLabelImgs.main()
        createPanopticImgs.convert2panoptic(setNames=["train", "val"])
    finally:
        if env is None:
            del os.environ["CITYSCAPES_DATASET"]
        else:
            os.environ["CITYSCAPES_DATASET"] = env


def run_prepare(script, root):
    """Run ``datasets/<script>`` as ``python datasets/<script> root``."""
    argv = sys.argv
    sys.argv = [str(REPO / "datasets" / script), str(root)]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.argv = argv


def train_config(train_dataset, test_dataset, mapper, num_classes, output_dir, **input_keys):
    """
    Config of a small Mask2Former trained for 2 iterations (batch 2, 64 px images) on
    ``train_dataset`` with the mapper ``mapper``; INPUT keys can be overridden by name.
    """
    cfg = small_config(num_classes=num_classes, num_queries=6, dec_layers=2,
                       test_dataset=test_dataset)
    cfg.DATASETS.TRAIN = (train_dataset,)
    cfg.INPUT.DATASET_MAPPER_NAME = mapper
    cfg.INPUT.MIN_SIZE_TRAIN = (48, 64)
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    cfg.INPUT.MIN_SIZE_TEST = 48
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (40, 40)
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.SIZE_DIVISIBILITY = 32
    cfg.INPUT.IMAGE_SIZE = 64
    cfg.INPUT.FORMAT = "RGB"
    for key, value in input_keys.items():
        setattr(cfg.INPUT, key, value)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.BASE_LR = 1e-4
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OUTPUT_DIR = str(output_dir)
    return cfg


def train_two_iterations(cfg):
    """Train with train_net.Trainer; return the last iteration's losses (all finite)."""
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = trainer.storage.latest()
    total = losses["total_loss"][0]
    assert trainer.iter == cfg.SOLVER.MAX_ITER and np.isfinite(total), total
    return trainer


def evaluate(evaluator, dataset_name, make_output):
    """Run ``evaluator`` over ``dataset_name`` with outputs ``make_output(dataset_dict)``."""
    evaluator.reset()
    for d in DatasetCatalog.get(dataset_name):
        inputs = [dict(d, height=d.get("height", 0) or _size(d)[0],
                       width=d.get("width", 0) or _size(d)[1])]
        evaluator.process(inputs, [make_output(d)])
    return evaluator.evaluate()


def _size(d):
    with Image.open(d["file_name"]) as image:
        return image.height, image.width


def semantic_output(d, num_classes, ignore_label):
    """{"sem_seg": (K, H, W)} one-hot scores of the ground-truth labels."""
    gt = np.asarray(Image.open(d["sem_seg_file_name"])).astype(np.int64)
    gt[gt == ignore_label] = 0
    scores = torch.zeros((num_classes,) + gt.shape)
    scores.scatter_(0, torch.from_numpy(gt)[None], 1.0)
    return {"sem_seg": scores}


def panoptic_output(d, thing_ids=()):
    """
    {"panoptic_seg": ((H, W) segment ids, segments_info)} of the ground truth; segments
    without "isthing" are things when their class is in ``thing_ids``.
    """
    pan = torch.from_numpy(rgb2id(np.asarray(Image.open(d["pan_seg_file_name"]).convert("RGB"))))
    segments = [{"id": s["id"], "category_id": s["category_id"],
                 "isthing": s.get("isthing", s["category_id"] in thing_ids)}
                for s in d["segments_info"]]
    return {"panoptic_seg": (pan.int(), segments)}


def panoptic_dataset_output(d, num_classes, ignore_label, instances_meta=None):
    """
    {"sem_seg", "panoptic_seg"} of the ground truth of a panoptic dataset dict (see
    :func:`semantic_output`, :func:`panoptic_output`) and, when ``instances_meta`` is given,
    "instances" read from its "json_file" (see :func:`instance_output_from_json`).
    """
    out = semantic_output(d, num_classes, ignore_label)
    out.update(panoptic_output(d))
    if instances_meta is not None:
        out.update(instance_output_from_json(d, instances_meta.json_file,
                                             instances_meta.thing_dataset_id_to_contiguous_id))
    return out


def instance_output(d, height, width):
    """{"instances"} holding the dataset dict's objects as confident predictions."""
    masks = []
    for obj in d["annotations"]:
        segm = obj["segmentation"]
        if isinstance(segm, list):
            segm = mask_util.merge(mask_util.frPyObjects(segm, height, width))
        masks.append(torch.from_numpy(mask_util.decode(segm).astype(bool)))
    instances = Instances((height, width))
    instances.pred_masks = torch.stack(masks) if masks else torch.zeros((0, height, width),
                                                                          dtype=torch.bool)
    instances.pred_boxes = BitMasks(instances.pred_masks).get_bounding_boxes()
    instances.scores = torch.ones(len(masks))
    instances.pred_classes = torch.tensor([obj["category_id"] for obj in d["annotations"]],
                                          dtype=torch.int64)
    return {"instances": instances}


def instance_output_from_json(d, json_file, dataset_to_contiguous):
    """
    {"instances"} holding the objects of image ``d["image_id"]`` in the COCO json
    ``json_file`` as predictions, classes mapped by ``dataset_to_contiguous``.
    """
    from pycocotools.coco import COCO

    coco = COCO(json_file)
    h, w = _size(d)
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=[d["image_id"]]))
    objects = [{"segmentation": a["segmentation"],
                "category_id": dataset_to_contiguous[a["category_id"]]} for a in annotations]
    return instance_output({"annotations": objects}, h, w)
