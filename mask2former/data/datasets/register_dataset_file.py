"""
Registering a dataset described by a file (:mod:`.dataset_file`), and what it sets in a config.

:func:`register_dataset_file` registers the file's splits as ``<name>_<split>`` in
``DatasetCatalog`` / ``MetadataCatalog`` (class names and colors, thing / stuff ids, the
evaluator type and the files the evaluators read). Loading a split reads its annotations,
runs the dataset check (:mod:`.dataset_check`) and builds the dataset dicts of the task
(:mod:`.dataset_records`); a split with defects is refused unless ``skip_invalid`` drops the
defective records, which the log counts. The dicts and the derived files are kept under
``<folder of the dataset file>/.mask2former/<name>/<split>/`` and reused while no file of the
split changes (size or modification time).

:func:`apply_dataset_file` does this for a config's DATASETS.FILE and sets the keys that follow
from the dataset: DATASETS.TRAIN / TEST, MODEL.SEM_SEG_HEAD.NUM_CLASSES / IGNORE_VALUE,
INPUT.DATASET_MAPPER_NAME and the MODEL.MASK_FORMER.TEST outputs the task can evaluate.
:func:`derive_schedule` sets SOLVER.MAX_ITER, STEPS and TEST.EVAL_PERIOD from the size of the
train split where the config leaves them to the dataset (see mask2former/config.py).
"""
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass

from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from .catalog import panoptic_meta, register_dataset
from .dataset_check import (
    DatasetDefectsError,
    check_samples,
    drop_defective,
    split_report,
)
from .dataset_file import DatasetFile, load_dataset_file
from .dataset_records import build_records
from .formats import Defect, detect_format, read_split, resolve_categories
from .formats.folders import image_files, walk_files

__all__ = [
    "RegisteredDatasetFile",
    "register_dataset_file",
    "apply_dataset_file",
    "derive_schedule",
    "check_dataset_file",
]

logger = logging.getLogger(__name__)

# Bump when the dataset dicts or derived files change: cached ones are then rebuilt.
RECORDS_VERSION = 2
# INPUT.DATASET_MAPPER_NAME of each task; the first is set when the config's is of another task.
TASK_MAPPERS = {
    "instance": ("coco_instance_lsj", "mask_former_instance"),
    "panoptic": ("coco_panoptic_lsj", "mask_former_panoptic"),
    "semantic": ("mask_former_semantic",),
}
# MODEL.MASK_FORMER.TEST outputs each task's annotations can evaluate.
TASK_OUTPUTS = {
    "instance": ("INSTANCE_ON",),
    "panoptic": ("PANOPTIC_ON", "INSTANCE_ON", "SEMANTIC_ON"),
    "semantic": ("SEMANTIC_ON",),
}
# Learning-rate steps of a derived schedule, as fractions of SOLVER.MAX_ITER: those of the
# published 50-epoch COCO schedule (327778 and 355092 of 368750 iterations).
STEP_FRACTIONS = (0.889, 0.963)
# A derived schedule evaluates (and checkpoints) this many times during training.
EVALUATIONS_PER_RUN = 5
_FIX = ("Fix these records (tools/check_dataset.py lists every defect), or train without them: "
        "DATASETS.SKIP_INVALID_RECORDS True drops each image whose annotations have a defect "
        "and logs how many.")


@dataclass
class RegisteredDatasetFile:
    """
    A registered dataset file: the parsed file, its format and classes, split -> name, and
    notes for the user on what the classes leave out.
    """

    dataset: DatasetFile
    format: str
    categories: list
    names: dict
    notes: list

    def folder(self, split):
        """Where the split's dicts and derived files are kept."""
        return os.path.join(self.dataset.derived_folder, split)


def _metadata(registered):
    dataset, categories = registered.dataset, registered.categories
    names = [c.name for c in categories]
    colors = [c.color for c in categories]
    common = {"dataset_file": dataset.path, "ignore_label": dataset.ignore_label}
    if dataset.task == "instance":
        return dict(common, evaluator_type="coco", thing_classes=names, thing_colors=colors,
                    thing_dataset_id_to_contiguous_id={c.id: i for i, c in enumerate(categories)})
    if dataset.task == "panoptic":
        return dict(common, evaluator_type="coco_panoptic_seg",
                    **panoptic_meta([asdict(c) for c in categories]))
    return dict(common, evaluator_type="sem_seg", stuff_classes=names, stuff_colors=colors,
                stuff_dataset_id_to_contiguous_id={c.id: i for i, c in enumerate(categories)})


def _derived_paths(registered, split):
    """Metadata paths of the files the evaluators read (derived, or the dataset's own)."""
    folder, task = registered.folder(split), registered.dataset.task
    if task == "semantic":
        own = registered.format == "sem_seg"
        return {"sem_seg_root": registered.dataset.splits[split].annotations if own
                else os.path.join(folder, "semantic")}
    paths = {"json_file": os.path.join(folder, "instances.json")}
    if task == "panoptic":
        paths.update(panoptic_json=os.path.join(folder, "panoptic.json"), panoptic_root=folder,
                     sem_seg_root=os.path.join(folder, "semantic"))
    return paths


def register_dataset_file(path, skip_invalid=False):
    """
    Register the splits of the dataset file ``path`` as ``<name>_<split>`` (replacing earlier
    registrations of those names).

    Args:
        path (str): the dataset YAML.
        skip_invalid (bool): when loading a split, drop the images whose annotations have
            defects (logged with their count) instead of refusing the split.

    Returns:
        RegisteredDatasetFile
    """
    dataset = load_dataset_file(path)
    fmt = detect_format(dataset)
    categories, notes = resolve_categories(dataset, fmt)
    registered = RegisteredDatasetFile(
        dataset, fmt, categories, {s: dataset.split_name(s) for s in dataset.splits},
        dataset.notes + notes)
    metadata = _metadata(registered)
    for split, name in registered.names.items():
        register_dataset(
            name,
            lambda split=split: load_split(registered, split, skip_invalid),
            image_root=dataset.splits[split].images,
            **metadata,
            **_derived_paths(registered, split),
        )
    return registered


def _signature(registered, split, skip_invalid):
    """Hash of the split's files (paths, sizes, modification times) and of the settings."""
    entry = registered.dataset.splits[split]
    digest = hashlib.sha1(json.dumps([
        RECORDS_VERSION, registered.dataset.task, registered.format,
        [asdict(c) for c in registered.categories], registered.dataset.ignore_label,
        skip_invalid, registered.folder(split), asdict(entry),
    ]).encode())
    for root in (entry.images, entry.annotations, entry.panoptic_root):
        if not root:
            continue
        for file in [root] if os.path.isfile(root) else walk_files(root):
            stat = os.stat(file)
            digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


_LOADED = {}  # signature -> (dataset dicts, report)


def load_split(registered, split, skip_invalid=False):
    """
    The Detectron2 dataset dicts of ``split``: read, checked and built once, then reused from
    the split's folder (see the module docstring) while its files are unchanged.

    Raises:
        DatasetDefectsError: when the split has defects and ``skip_invalid`` is False.
    """
    signature = _signature(registered, split, skip_invalid)
    if signature not in _LOADED:
        folder = registered.folder(split)
        try:
            os.makedirs(os.path.dirname(folder), exist_ok=True)
        except OSError as e:
            raise OSError(f"Cannot write the checked dataset dicts of {registered.dataset.path} "
                          f"to {os.path.dirname(folder)} ({e}): the folder of the dataset file "
                          "must be writable (or copy the file to a writable folder and set its "
                          "'root' key to the dataset)") from e
        with open(folder + ".lock", "w") as lock:  # one process builds, the others wait
            fcntl.flock(lock, fcntl.LOCK_EX)
            _LOADED[signature] = _cached(folder, signature) or _build(
                registered, split, skip_invalid, folder, signature)
        logger.info(f"Dataset {registered.names[split]} ({registered.dataset.path}):\n"
                    f"{_LOADED[signature][1]}"
                    + "".join(f"\n  note: {note}" for note in registered.notes))
    return list(_LOADED[signature][0])


def _cached(folder, signature):
    """(dicts, report) kept in ``folder`` for ``signature``, or None."""
    stamp = os.path.join(folder, "signature.txt")
    if not os.path.isfile(stamp) or open(stamp).read() != signature:
        return None
    with open(os.path.join(folder, "records.json")) as f:
        cached = json.load(f)
    for record in cached["records"]:
        for ann in record.get("annotations", ()):
            ann["bbox_mode"] = BoxMode.XYWH_ABS
    return cached["records"], cached["report"]


def check_split(registered, split):
    """
    Read and check ``split``: (samples, defects, ``dataset_check.SplitReport`` of the samples
    without defects).
    """
    dataset = registered.dataset
    samples, defects = read_split(dataset, split, registered.format, registered.categories)
    defects += check_samples(samples, len(registered.categories), dataset.ignore_label)
    if dataset.task == "panoptic":
        defects += _duplicate_basenames(samples)
    kept, skipped = drop_defective(samples, defects)
    report = split_report(registered.names[split], kept, defects, skipped)
    if registered.format == "labelme":  # LabelMe files name their images: count the others
        listed = {os.path.abspath(s.file_name) for s in samples}
        report.unused_images = sum(os.path.abspath(path) not in listed
                                   for path in image_files(dataset.splits[split].images).values())
    return samples, defects, report


def _duplicate_basenames(samples):
    """Panoptic evaluation names predictions by image file name: names must be unique."""
    seen, defects = {}, []
    for sample in samples:
        stem = os.path.splitext(os.path.basename(sample.file_name))[0]
        if stem in seen:
            defects.append(Defect("duplicate_id", sample.source, f"image {sample.file_name}",
                                  f"same file name as {seen[stem]}: panoptic evaluation needs "
                                  "unique image names", sample.file_name))
        seen.setdefault(stem, sample.file_name)
    return defects


def _build(registered, split, skip_invalid, folder, signature):
    name = registered.names[split]
    samples, defects, report = check_split(registered, split)
    if defects and not skip_invalid:
        raise DatasetDefectsError(name, defects, _FIX)
    kept, _ = drop_defective(samples, defects)
    if defects:
        logger.warning(f"Dataset {name}: skipped {report.skipped} of {len(samples)} images and "
                       f"{sum(d.sample_key is None for d in defects)} records of no image for "
                       f"{len(defects)} defects (DATASETS.SKIP_INVALID_RECORDS); first: "
                       f"{defects[0]}")
    if not kept:
        raise DatasetDefectsError(name, defects, f"Dataset {name} has no image without defects.")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    records = build_records(kept, registered.dataset.task, registered.categories, folder,
                            registered.dataset.ignore_label)
    text = report.format([c.name for c in registered.categories],
                         "images" if kept[0].sem_seg_file else "objects")
    with open(os.path.join(folder, "records.json"), "w") as f:
        json.dump({"records": records, "report": text}, f, default=int)
    with open(os.path.join(folder, "signature.txt"), "w") as f:
        f.write(signature)
    return records, text


def check_dataset_file(path):
    """
    Register and check every split of the dataset file ``path``. Writes only the images LabelMe
    files embed (to ``.mask2former/<name>/embedded_images/``), as loading the split does.

    Returns:
        (RegisteredDatasetFile, dict split -> SplitReport)
    """
    registered = register_dataset_file(path)
    return registered, {s: check_split(registered, s)[2] for s in registered.dataset.splits}


def apply_dataset_file(cfg, path=None):
    """
    Register the dataset file of ``cfg`` (DATASETS.FILE, or ``path``, which is then stored in
    DATASETS.FILE as an absolute path) and set the config keys that follow from it (module
    docstring). ``cfg`` must not be frozen. Does nothing when there is no dataset file.

    Returns:
        RegisteredDatasetFile or None
    """
    if path:
        cfg.DATASETS.FILE = path
    if not cfg.DATASETS.FILE:
        return None
    registered = register_dataset_file(cfg.DATASETS.FILE, cfg.DATASETS.SKIP_INVALID_RECORDS)
    dataset = registered.dataset
    cfg.DATASETS.FILE = dataset.path
    own = set(registered.names.values())
    changes = []

    def set_key(node, key, value, full_key):
        if node[key] != value:
            changes.append(f"{full_key}: {node[key]!r} -> {value!r}")
            node[key] = value

    for key, default in (("TRAIN", "train"), ("TEST", "val")):
        if not cfg.DATASETS[key] or not set(cfg.DATASETS[key]) <= own:
            set_key(cfg.DATASETS, key, (registered.names[default],), f"DATASETS.{key}")
    set_key(cfg.MODEL.SEM_SEG_HEAD, "NUM_CLASSES", len(registered.categories),
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES")
    set_key(cfg.MODEL.SEM_SEG_HEAD, "IGNORE_VALUE", dataset.ignore_label,
            "MODEL.SEM_SEG_HEAD.IGNORE_VALUE")
    if cfg.INPUT.DATASET_MAPPER_NAME not in TASK_MAPPERS[dataset.task]:
        set_key(cfg.INPUT, "DATASET_MAPPER_NAME", TASK_MAPPERS[dataset.task][0],
                "INPUT.DATASET_MAPPER_NAME")
    test = cfg.MODEL.MASK_FORMER.TEST
    for key in ("PANOPTIC_ON", "INSTANCE_ON", "SEMANTIC_ON"):
        if test[key] and key not in TASK_OUTPUTS[dataset.task]:
            set_key(test, key, False, f"MODEL.MASK_FORMER.TEST.{key}")
    if not any(test[key] for key in TASK_OUTPUTS[dataset.task]):
        set_key(test, TASK_OUTPUTS[dataset.task][0], True,
                f"MODEL.MASK_FORMER.TEST.{TASK_OUTPUTS[dataset.task][0]}")
    logger.info(
        f"Dataset file {dataset.path}: {dataset.task} task, {registered.format} annotations, "
        f"{len(registered.categories)} classes ({', '.join(c.name for c in registered.categories)})"
        f"; registered {', '.join(sorted(own))}"
        + ("; set " + "; ".join(changes) if changes else "")
        + "".join(f"; {note}" for note in registered.notes))
    return registered


def derive_schedule(cfg):
    """
    Prepare a training config: load (and so check) the dataset file's train and test splits
    now rather than at the end of training, and when SOLVER.MAX_ITER is 0 set it from the train
    split's size: SOLVER.EPOCHS passes over the images at SOLVER.IMS_PER_BATCH; then
    SOLVER.STEPS (when empty, for WarmupMultiStepLR) at :data:`STEP_FRACTIONS` of it,
    SOLVER.WARMUP_ITERS at most a tenth of it, and TEST.EVAL_PERIOD (when -1) and
    SOLVER.CHECKPOINT_PERIOD (when longer) a fifth of it. A TEST.EVAL_PERIOD of -1 with a given
    MAX_ITER means no periodic evaluation (0). ``cfg`` must not be frozen.
    """
    num_images = None
    if cfg.DATASETS.FILE:
        num_images = sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TRAIN)
        for name in cfg.DATASETS.TEST:
            DatasetCatalog.get(name)
    solver = cfg.SOLVER
    if solver.MAX_ITER != 0:
        cfg.TEST.EVAL_PERIOD = max(cfg.TEST.EVAL_PERIOD, 0)
        return
    if num_images is None or solver.EPOCHS <= 0:
        raise ValueError(
            "SOLVER.MAX_ITER is 0, which derives the schedule from a dataset file's train split "
            f"and SOLVER.EPOCHS (now {solver.EPOCHS}, DATASETS.FILE {cfg.DATASETS.FILE!r}): give "
            "--dataset my_data.yaml (with SOLVER.EPOCHS > 0), or set SOLVER.MAX_ITER")
    solver.MAX_ITER = max(1, math.ceil(solver.EPOCHS * num_images / solver.IMS_PER_BATCH))
    if not solver.STEPS and solver.LR_SCHEDULER_NAME == "WarmupMultiStepLR":
        solver.STEPS = tuple(int(f * solver.MAX_ITER) for f in STEP_FRACTIONS)
    solver.WARMUP_ITERS = min(solver.WARMUP_ITERS, solver.MAX_ITER // 10)
    period = max(1, math.ceil(solver.MAX_ITER / EVALUATIONS_PER_RUN))
    if cfg.TEST.EVAL_PERIOD < 0:
        cfg.TEST.EVAL_PERIOD = period
    solver.CHECKPOINT_PERIOD = min(solver.CHECKPOINT_PERIOD, period)
    logger.info(
        f"Schedule from the dataset ({num_images} train images, SOLVER.EPOCHS {solver.EPOCHS}, "
        f"SOLVER.IMS_PER_BATCH {solver.IMS_PER_BATCH}): SOLVER.MAX_ITER {solver.MAX_ITER}, "
        f"SOLVER.STEPS {solver.STEPS}, SOLVER.WARMUP_ITERS {solver.WARMUP_ITERS}, "
        f"TEST.EVAL_PERIOD {cfg.TEST.EVAL_PERIOD}, SOLVER.CHECKPOINT_PERIOD "
        f"{solver.CHECKPOINT_PERIOD}")
