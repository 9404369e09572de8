"""
A training data loader whose stream of samples resumes exactly at any iteration.

Detectron2's ``TrainingSampler`` is an infinite stream of shuffled indices seeded once, and the
data loader workers draw augmentations from per-worker random streams. After ``--resume`` both
start over: the resumed run sees the images of the first iterations again, with other
augmentations than the interrupted run would have drawn. Here every sample is a pure function of
its position ``p`` (0, 1, 2, ...) in one global stream and of a base seed:

* which image: epoch ``e = p // N`` has its own permutation of the N images, seeded by
  (seed, e); position ``p`` takes entry ``p % N`` of it;
* which augmentation: the mapper runs with the global RNGs (torch, numpy, random) seeded by
  (seed, p), and their previous state is restored afterwards.

Iteration ``i`` consumes positions ``[i * B, (i + 1) * B)`` for the total batch size ``B``;
rank ``r`` of ``W`` takes the positions ``i * B + r + W * j`` (j < B / W), the same split as
Detectron2's samplers. A run resumed at iteration ``s`` starts at position ``s * B`` and
produces the same batches as an uninterrupted run, whatever the number of data loader
workers. Batches hold consecutive positions: DATALOADER.ASPECT_RATIO_GROUPING is not applied
(Mask2Former's mappers crop or pad to fixed sizes, and the model pads a batch to its largest
image anyway).
"""
import logging

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from detectron2.data import (
    DatasetFromList,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.utils import comm

from .seeding import AUGMENTATION, EPOCH_ORDER, derive_seed, seeded_global_rngs, training_seed

__all__ = ["TrainingStream", "ResumableTrainLoader", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)


class TrainingStream(Dataset):
    """
    Map-style dataset over stream positions: item ``p`` is ``mapper(dataset_dicts[k])`` for the
    image ``k`` at position ``p``, mapped with the global RNGs seeded by (seed, p).
    """

    def __init__(self, dataset_dicts, mapper, seed):
        """
        Args:
            dataset_dicts (list[dict]): Detectron2 dataset dicts, N >= 1.
            mapper (callable): dataset dict -> model input dict (a training dataset mapper).
            seed (int): base seed (>= 0) of the image order and of the augmentations.
        """
        if len(dataset_dicts) == 0:
            raise ValueError("TrainingStream: the training dataset is empty.")
        self._dicts = DatasetFromList(dataset_dicts, copy=True, serialize=True)
        self._mapper = mapper
        self.seed = seed
        self._epoch_order = (None, None)  # (epoch, permutation (N,)) of the last epoch used

    def __len__(self):
        """Number of images N (the stream itself is infinite)."""
        return len(self._dicts)

    def image_index(self, position):
        """Index in ``dataset_dicts`` of the image at stream ``position``."""
        epoch, offset = divmod(position, len(self._dicts))
        if self._epoch_order[0] != epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, EPOCH_ORDER, epoch))
            self._epoch_order = (epoch, torch.randperm(len(self._dicts), generator=generator))
        return int(self._epoch_order[1][offset])

    def __getitem__(self, position):
        dataset_dict = self._dicts[self.image_index(position)]
        file_name = dataset_dict.get("file_name")
        try:
            with seeded_global_rngs(derive_seed(self.seed, AUGMENTATION, position)):
                data = self._mapper(dataset_dict)
        except Exception:
            logger.error(f"Failed to load the training sample {file_name} (stream position "
                         f"{position}); see the error below.")
            raise
        if data is None:
            raise ValueError(
                f"The training mapper returned None for {file_name}: skipping samples is not "
                "supported by the resumable loader (it would make resumed runs differ); remove "
                "the image from the dataset instead."
            )
        return data


class _PositionBatches(Sampler):
    """Infinite batches of stream positions of this rank, from iteration ``start_iter``."""

    def __init__(self, start_iter, total_batch_size):
        self._start_iter = start_iter
        self._total = total_batch_size
        self._rank, self._world = comm.get_rank(), comm.get_world_size()

    def __iter__(self):
        iteration = self._start_iter
        while True:
            first = iteration * self._total + self._rank
            yield list(range(first, (iteration + 1) * self._total, self._world))
            iteration += 1


def _keep_as_list(batch):
    """collate_fn: a batch is the list of the mapped dicts (no tensor stacking)."""
    return batch


class ResumableTrainLoader:
    """
    Iterable of training batches (list of B / world_size mapped dicts per rank) that starts at
    iteration ``start_iter``. Nothing is read before the first batch is requested, so
    :meth:`start` can set the iteration (and seed) after resuming from a checkpoint.
    """

    def __init__(self, stream, total_batch_size, num_workers=0, pin_memory=False):
        """
        Args:
            stream (TrainingStream): the samples.
            total_batch_size (int): images per iteration over all ranks; divisible by the
                world size.
            num_workers (int): data loader worker processes per rank.
            pin_memory (bool): put the batches' tensors in pinned memory (for a CUDA model).
        """
        world = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={total_batch_size} must be a positive multiple of the "
                f"number of processes ({world})."
            )
        self.stream = stream
        self.total_batch_size = total_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.start_iter = 0

    def start(self, start_iter, seed=None):
        """Make the next iteration over this loader begin at ``start_iter`` (with ``seed``)."""
        self.start_iter = start_iter
        if seed is not None:
            self.stream.seed = seed

    def __iter__(self):
        logger.info(f"Training data stream starts at iteration {self.start_iter} (position "
                    f"{self.start_iter * self.total_batch_size}), seed {self.stream.seed}.")
        yield from DataLoader(
            self.stream,
            batch_sampler=_PositionBatches(self.start_iter, self.total_batch_size),
            num_workers=self.num_workers,
            collate_fn=_keep_as_list,
            pin_memory=self.pin_memory,
            # Its own generator: the loader draws a worker base seed when iteration starts,
            # which must not consume the global torch RNG of the first (resumed) iteration.
            generator=torch.Generator(),
        )


def build_resumable_train_loader(cfg, mapper, dataset_dicts=None):
    """
    The training loader of ``cfg.DATASETS.TRAIN`` (filtered as Detectron2 does, by
    DATALOADER.FILTER_EMPTY_ANNOTATIONS) with ``mapper``: a :class:`ResumableTrainLoader`
    for DATALOADER.SAMPLER_TRAIN "TrainingSampler". Other samplers (repeat factor, random
    subset) use Detectron2's loader, whose stream restarts from the beginning on resume.
    The seed is :func:`training_seed` of ``cfg``; :class:`~.hooks.ResumableRandomness` replaces
    it by the one saved in the checkpoint when resuming. For a model on CUDA the batches'
    tensors come in pinned memory, so that their upload does not block the host.
    ``dataset_dicts``: the samples to use instead of Detectron2's image dataset dicts of
    DATASETS.TRAIN (e.g. one dict per video).
    """
    if dataset_dicts is None:
        dataset_dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        logger.warning(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN}: the data stream is not "
            "resumable; after --resume it starts again from its beginning."
        )
        return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset_dicts)
    return ResumableTrainLoader(
        TrainingStream(dataset_dicts, mapper, training_seed(cfg)),
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.DATALOADER.NUM_WORKERS,
        pin_memory=cfg.MODEL.DEVICE.startswith("cuda"),
    )
