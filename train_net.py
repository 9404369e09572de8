#!/usr/bin/env python
"""
Train and evaluate Mask2Former with Detectron2:

    python train_net.py --config-file \
        configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml
    python train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS model.pkl
    python train_net.py --config-file X.yaml --num-gpus 8 --resume

On a machine without GPUs, --num-gpus N starts N CPU worker processes (PyTorch's Gloo backend);
--num-machines / --machine-rank / --dist-url work as in Detectron2 on GPUs and CPUs. Under
torchrun or SLURM's srun, which start the processes, leave them out (README, "Clusters"):

    torchrun --nproc-per-node 8 train_net.py --config-file X.yaml --resume

Datasets are read from $DETECTRON2_DATASETS (see datasets/README.md).
"""
import logging
import os
from collections import OrderedDict

from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import (
    CityscapesInstanceEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluators,
)

from mask2former.data import InferenceDatasetMapper, build_train_mapper
from mask2former.engine import (
    MaskFormerTrainer,
    build_resumable_train_loader,
    launch_from_command_line,
    setup_from_args,
    train_or_evaluate,
)
from mask2former.evaluation import (
    CityscapesSemSegEvaluator,
    InstanceSegEvaluator,
    SemSegEvaluator,
)
from mask2former.test_time_augmentation import SemanticSegmentorWithTTA

# evaluator_type values of panoptic datasets.
_PANOPTIC_TYPES = (
    "coco_panoptic_seg",
    "ade20k_panoptic_seg",
    "cityscapes_panoptic_seg",
    "mapillary_vistas_panoptic_seg",
)


class Trainer(MaskFormerTrainer):
    """
    The shared Mask2Former trainer (mask2former/engine/trainer.py) with the image data mappers,
    the evaluators of each dataset type and semantic test-time augmentation.
    """

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """
        Evaluators chosen by the dataset's ``evaluator_type`` and the model's
        MODEL.MASK_FORMER.TEST.{SEMANTIC,INSTANCE,PANOPTIC}_ON outputs:
        semantic mIoU (SemSegEvaluator / Cityscapes, reading "sem_seg" or "sem_seg_labels"),
        panoptic PQ (COCOPanopticEvaluator) and instance AP (InstanceSegEvaluator / Cityscapes).
        """
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        meta = MetadataCatalog.get(dataset_name)
        evaluator_type = meta.get("evaluator_type")
        test = cfg.MODEL.MASK_FORMER.TEST
        evaluators = []

        has_sem_seg_gt = meta.get("sem_seg_root") is not None
        if evaluator_type == "sem_seg" or (
            evaluator_type in _PANOPTIC_TYPES and evaluator_type != "cityscapes_panoptic_seg"
            and test.SEMANTIC_ON and has_sem_seg_gt
        ):
            evaluators.append(SemSegEvaluator(dataset_name, distributed=True,
                                              output_dir=output_folder))
        if evaluator_type in _PANOPTIC_TYPES and test.PANOPTIC_ON:
            evaluators.append(COCOPanopticEvaluator(dataset_name, output_folder))
        if evaluator_type == "coco" or (
            evaluator_type in ("coco_panoptic_seg", "ade20k_panoptic_seg") and test.INSTANCE_ON
        ):
            evaluators.append(InstanceSegEvaluator(dataset_name, output_dir=output_folder))
        if evaluator_type == "cityscapes_sem_seg" or (
            evaluator_type == "cityscapes_panoptic_seg" and test.SEMANTIC_ON
        ):
            evaluators.append(CityscapesSemSegEvaluator(dataset_name))
        if evaluator_type == "cityscapes_instance" or (
            evaluator_type == "cityscapes_panoptic_seg" and test.INSTANCE_ON
        ):
            evaluators.append(CityscapesInstanceEvaluator(dataset_name))

        if not evaluators:
            raise NotImplementedError(
                f"No evaluator for dataset {dataset_name!r} with evaluator_type "
                f"{evaluator_type!r} and MODEL.MASK_FORMER.TEST semantic/instance/panoptic = "
                f"{test.SEMANTIC_ON}/{test.INSTANCE_ON}/{test.PANOPTIC_ON}."
            )
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

    @classmethod
    def build_train_loader(cls, cfg):
        """
        Training loader with the mapper named by INPUT.DATASET_MAPPER_NAME, whose data stream
        resumes where a checkpoint left it (mask2former/engine/resumable_loader.py).
        """
        return build_resumable_train_loader(cfg, mapper=build_train_mapper(cfg))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Detectron2's test loader, images read by mask2former/data/image_io.py."""
        return build_detection_test_loader(cfg, dataset_name, mapper=InferenceDatasetMapper(cfg))

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """
        Evaluate with multi-scale + flip test-time augmentation of the semantic scores, with
        the semantic evaluators of the test sets (TTA yields no instance / panoptic output).
        """
        logger = logging.getLogger("detectron2.trainer")
        logger.info("Running inference with test-time augmentation ...")
        model = SemanticSegmentorWithTTA(cfg, model)
        semantic_cfg = cfg.clone()
        semantic_cfg.defrost()
        semantic_cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
        semantic_cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
        semantic_cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
        evaluators = [
            cls.build_evaluator(
                semantic_cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA")
            )
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict({k + "_TTA": v for k, v in res.items()})


def setup(args):
    """Config from ``args.config_file`` and ``args.opts``, frozen, and Detectron2's setup."""
    return setup_from_args(args)


def main(args):
    return train_or_evaluate(setup(args), args, Trainer)


if __name__ == "__main__":
    launch_from_command_line(main)
