"""
Fine-tuning from a checkpoint trained for other classes.

Mask2Former's class head is the transformer decoder's ``class_embed``, a linear layer whose row
k scores class k and whose last row scores "no object": weight (K + 1, C), bias (K + 1,). The
loss holds ``criterion.empty_weight`` (K + 1,), the cross-entropy's class weights, which follow
from K and MODEL.MASK_FORMER.NO_OBJECT_WEIGHT. A checkpoint trained for K' != K classes (a
published COCO panoptic model, K' = 133, fine-tuned on a dataset of 6 classes) fits every other
tensor of the model.

:func:`reinitialize_class_head` keeps the model's initialization for those tensors;
:class:`ClassHeadInit` starts the rows of the model's classes from the checkpoint's rows of the
classes of the same names. Class names come from a registered dataset's metadata
(:func:`dataset_class_names`) or from the checkpoint: this project's checkpoints store the names
of their training dataset's classes under "class_names" (see ``checkpointer.py``).
"""
import difflib
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.data import MetadataCatalog

from .mismatches import describe_mismatches

__all__ = [
    "ClassHeadInit",
    "build_class_head_init",
    "dataset_class_names",
    "is_class_count_tensor",
    "reinitialize_class_head",
    "training_class_names",
]

KEY = "MODEL.MASK_FORMER.CLASS_HEAD_INIT"
_CLASS_COUNT_BUFFERS = ("criterion.empty_weight",)
_EXAMPLES = ("e.g. 'coco_2017_train_panoptic' (133 classes) for the published COCO panoptic "
             "models, 'coco_2017_train' (80) for COCO instance, 'ade20k_sem_seg_train' (150) for "
             "ADE20K semantic")


def is_class_row_tensor(name: str) -> bool:
    """Whether the model tensor ``name`` has one row per class and a last "no object" row."""
    return name.split(".")[-2:-1] == ["class_embed"]


def is_class_count_tensor(name: str) -> bool:
    """The class head's tensors and the loss's class weights: their first size is K + 1."""
    return is_class_row_tensor(name) or name in _CLASS_COUNT_BUFFERS


def _names_of(metadata, num_classes: int) -> Optional[List[str]]:
    """The metadata's list of ``num_classes`` class names (see :func:`dataset_class_names`)."""
    for field in ("stuff_classes", "thing_classes"):
        names = metadata.get(field)
        if names is not None and len(names) == num_classes:
            return list(names)
    return None


def dataset_class_names(dataset_name: str, num_classes: int, key: str) -> List[str]:
    """
    The names of the ``num_classes`` classes of the registered dataset ``dataset_name`` in
    contiguous-id order: its metadata's "stuff_classes" or "thing_classes", whichever lists
    ``num_classes`` names (panoptic datasets of this project list all K classes in both, those
    of Detectron2 in "stuff_classes"; semantic datasets in "stuff_classes"; instance datasets
    in "thing_classes"). Raises ``ValueError`` naming the config ``key`` when neither does.
    """
    metadata = MetadataCatalog.get(dataset_name)
    names = _names_of(metadata, num_classes)
    if names is None:
        lists = [f"{field} of {len(metadata.get(field))} names"
                 for field in ("stuff_classes", "thing_classes") if metadata.get(field) is not None]
        raise ValueError(
            f"{key}: the metadata of the dataset {dataset_name!r} lists no {num_classes} class "
            f"names (it has {' and '.join(lists) or 'no stuff_classes or thing_classes'}); name "
            f"a registered dataset with {num_classes} classes."
        )
    return names


def training_class_names(cfg) -> Optional[List[str]]:
    """
    The names of the model's MODEL.SEM_SEG_HEAD.NUM_CLASSES classes from the metadata of
    DATASETS.TRAIN[0] (see :func:`dataset_class_names`); None where there is no training
    dataset or its metadata lists no such names.
    """
    if not cfg.DATASETS.TRAIN:
        return None
    return _names_of(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]), cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)


def _containing(name: str, names: Sequence[str]) -> List[str]:
    """Up to 3 of ``names`` that contain ``name`` (COCO's stuff names carry suffixes:
    "sky-other-merged"), ignoring case."""
    return [n for n in names if name.lower() in n.lower()][:3]


def _similar(name: str, names: Sequence[str]) -> List[str]:
    """Up to 3 of ``names`` like ``name``: those containing it, else the closest spellings."""
    return _containing(name, names) or difflib.get_close_matches(name, names, n=3)


def reinitialize_class_head(checkpoint_state, model_state, mismatches, path) -> str:
    """
    Put the model's own tensors (its initialization) in ``checkpoint_state`` in place of the
    checkpoint's class-count tensors of another class count, so that they load as no-ops.

    Args:
        checkpoint_state (dict): name -> tensor or array of the checkpoint; changed in place.
        model_state (dict): the model's ``state_dict()``.
        mismatches: [(name, checkpoint shape, model shape)] of class-count tensors.
        path (str): the checkpoint, for the message.
    Returns:
        the message that says which tensors were not loaded and why.
    """
    for name, _, _ in mismatches:
        checkpoint_state[name] = model_state[name]
    checkpoint_classes, model_classes = mismatches[0][1][0] - 1, mismatches[0][2][0] - 1
    return (
        f"The class head was NOT loaded from {path}: it was trained for {checkpoint_classes} "
        f"classes, the model has {model_classes} (MODEL.SEM_SEG_HEAD.NUM_CLASSES). These "
        f"tensors keep the model's initialization:\n{describe_mismatches(mismatches)}\n"
        f"The other tensors of the same names and shapes load. {KEY}.BY_NAME True starts the "
        "rows of classes of the same name from the checkpoint's."
    )


def parse_pairs(pairs: Sequence[str], class_names: Sequence[str]) -> Dict[str, str]:
    """
    {model class: checkpoint class} of ``pairs``, strings "<model class>:<checkpoint class>";
    ``ValueError`` naming the key for a malformed pair, a model class not in ``class_names``, or
    a model class paired twice.
    """
    parsed = {}
    for pair in pairs:
        parts = [part.strip() for part in str(pair).split(":")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"{KEY}.PAIRS: {pair!r} is not of the form '<class of DATASETS.TRAIN>:<class of "
                "MODEL.WEIGHTS>', e.g. 'mug:cup'."
            )
        model_class, checkpoint_class = parts
        if model_class not in class_names:
            raise ValueError(
                f"{KEY}.PAIRS: {pair!r} pairs {model_class!r}, which is not a class of the model "
                f"(of DATASETS.TRAIN); its classes are: {', '.join(map(repr, class_names))}."
            )
        if model_class in parsed:
            raise ValueError(f"{KEY}.PAIRS pairs {model_class!r} twice.")
        parsed[model_class] = checkpoint_class
    return parsed


class ClassHeadInit:
    """
    Starts a model's class head from a checkpoint's class head of other classes, by name: the
    row of each model class whose name (or the name ``pairs`` gives it) is a class of the
    checkpoint is the checkpoint's row of that class, the "no object" row is the checkpoint's,
    and the rows of the other classes keep the model's initialization.
    """

    def __init__(self, class_names, weights_dataset="", pairs=()):
        """
        Args:
            class_names (list[str]): the model's K class names, in contiguous-id order.
            weights_dataset (str): a registered dataset whose metadata names the checkpoint's
                classes (see :func:`dataset_class_names`); "" for the names the checkpoint
                stores under "class_names".
            pairs (list[str]): "<model class>:<checkpoint class>" for classes named differently.
        """
        self.class_names = list(class_names)
        self.weights_dataset = weights_dataset
        self.pairs = parse_pairs(pairs, self.class_names)

    def checkpoint_class_names(self, checkpoint, num_classes, path) -> List[str]:
        """The names of the checkpoint's ``num_classes`` classes (``checkpoint``: the loaded
        dict, ``path``: its file, for messages)."""
        if self.weights_dataset:
            return dataset_class_names(self.weights_dataset, num_classes, f"{KEY}.WEIGHTS_DATASET")
        names = checkpoint.get("class_names")
        if names is None:
            raise ValueError(
                f"{KEY}.BY_NAME: {path} does not store the names of its {num_classes} classes "
                f"(a published .pkl or a checkpoint of another program); set "
                f"{KEY}.WEIGHTS_DATASET to the registered dataset it was trained on, {_EXAMPLES}."
            )
        if len(names) != num_classes:
            raise ValueError(
                f"{KEY}.BY_NAME: {path} stores {len(names)} class names but its class head has "
                f"{num_classes} classes; set {KEY}.WEIGHTS_DATASET to the dataset it was "
                "trained on."
            )
        return list(names)

    def source_rows(self, checkpoint_names: Sequence[str]) -> List[Optional[int]]:
        """
        For each of the model's K + 1 class-head rows, the index of the checkpoint's row it
        starts from (of K' + 1, the last "no object"), or None (it keeps its initialization).
        """
        index = {}
        for row, name in enumerate(checkpoint_names):
            index.setdefault(name, row)
        unknown = [name for name in self.pairs.values() if name not in index]
        if unknown:
            close = _similar(unknown[0], checkpoint_names)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"{KEY}.PAIRS names {', '.join(map(repr, unknown))} as a class of MODEL.WEIGHTS, "
                f"which has no class of that name.{hint} Its classes are: "
                f"{', '.join(map(repr, checkpoint_names))}."
            )
        rows = [index.get(self.pairs.get(name, name)) for name in self.class_names]
        return rows + [len(checkpoint_names)]

    def initialize(self, checkpoint, model_state, path) -> str:
        """
        Put class-head tensors of the model's K + 1 rows in ``checkpoint["model"]``: the
        checkpoint's rows where :meth:`source_rows` gives one, the model's own rows (its
        initialization) elsewhere; the loss's class weights (``criterion.empty_weight``) are the
        model's own where the class counts differ.

        Args:
            checkpoint (dict): the loaded checkpoint ("model": name -> tensor or array, and
                "class_names" where it stores them); its "model" is changed in place.
            model_state (dict): the model's ``state_dict()``.
            path (str): the checkpoint, for messages.
        Returns:
            the message that says which rows came from which.
        """
        state = checkpoint["model"]
        heads = [name for name in model_state if is_class_row_tensor(name) and name in state
                 and tuple(state[name].shape[1:]) == tuple(model_state[name].shape[1:])]
        if not heads:
            return (f"{KEY}.BY_NAME: {path} has no class head of the model's width: nothing "
                    "to copy, the class head keeps the model's initialization.")
        num_classes = state[heads[0]].shape[0] - 1
        checkpoint_names = self.checkpoint_class_names(checkpoint, num_classes, path)
        rows = self.source_rows(checkpoint_names)
        copied = [(k, j) for k, j in enumerate(rows) if j is not None]
        for name in heads:
            head = model_state[name].clone()
            rows_of_checkpoint = torch.as_tensor(state[name])[[j for _, j in copied]]
            head[[k for k, _ in copied]] = rows_of_checkpoint.to(head.device, head.dtype)
            state[name] = head
        own = [(name, tuple(state[name].shape)) for name in _CLASS_COUNT_BUFFERS
               if name in state and tuple(state[name].shape) != tuple(model_state[name].shape)]
        for name, _ in own:
            state[name] = model_state[name]

        source = (f"the metadata of {self.weights_dataset!r}" if self.weights_dataset
                  else "the names it stores")
        names = self.class_names + ['"no object"']
        checkpoint_row_names = list(checkpoint_names) + ['"no object"']
        fresh = []
        for name in (self.class_names[k] for k, j in enumerate(rows) if j is None):
            similar = _containing(name, checkpoint_names)
            fresh.append(f"{name} (the checkpoint has {', '.join(map(repr, similar))})"
                         if similar else name)
        return "\n".join(
            [f"Class head of the model's {len(self.class_names)} classes from {path} "
             f"({num_classes} classes, named by {source}), {KEY}.BY_NAME: {len(copied)} of "
             f"{len(rows)} rows ({', '.join(heads)}) copied (model row <- checkpoint row):"]
            + [f"  {k} {names[k]} <- {j} {checkpoint_row_names[j]}" for k, j in copied]
            + [f"  keep the model's initialization, no class of that name in the checkpoint "
               f"(add {KEY}.PAIRS for renamed classes): {', '.join(fresh)}"] * bool(fresh)
            + [f"  {name}: the model's own, not the checkpoint's {shape} (it follows the "
               "class count and MODEL.MASK_FORMER.NO_OBJECT_WEIGHT)" for name, shape in own]
        )


def build_class_head_init(cfg) -> Optional[ClassHeadInit]:
    """
    The :class:`ClassHeadInit` of MODEL.MASK_FORMER.CLASS_HEAD_INIT (None when BY_NAME is
    False), for the classes of DATASETS.TRAIN[0]; ``ValueError`` naming the key for PAIRS
    without BY_NAME, or a training dataset that names no MODEL.SEM_SEG_HEAD.NUM_CLASSES classes.
    """
    init = cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT
    if not init.BY_NAME:
        if init.PAIRS:
            raise ValueError(f"{KEY}.PAIRS is set ({list(init.PAIRS)}) but {KEY}.BY_NAME is "
                             f"False; set {KEY}.BY_NAME True to use it.")
        return None
    if not cfg.DATASETS.TRAIN:
        raise ValueError(f"{KEY}.BY_NAME needs DATASETS.TRAIN, whose metadata names the "
                         "model's classes.")
    class_names = dataset_class_names(
        cfg.DATASETS.TRAIN[0], cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        f"{KEY}.BY_NAME (the model's classes are those of DATASETS.TRAIN[0])",
    )
    return ClassHeadInit(class_names, weights_dataset=init.WEIGHTS_DATASET, pairs=init.PAIRS)
