#!/usr/bin/env python
"""
Train and evaluate Mask2Former with Detectron2:

    python train_net.py --config-file \
        configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml
    python train_net.py --config-file X.yaml --eval-only MODEL.WEIGHTS model.pkl
    python train_net.py --config-file X.yaml --num-gpus 8 --resume

On a machine without GPUs, --num-gpus N starts N CPU worker processes (PyTorch's Gloo backend);
--num-machines / --machine-rank / --dist-url work as in Detectron2 on GPUs and CPUs.

Datasets are read from $DETECTRON2_DATASETS (see datasets/README.md).
"""
import logging
import os
import weakref
from collections import OrderedDict

import torch

import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup
from detectron2.evaluation import (
    CityscapesInstanceEvaluator,
    COCOPanopticEvaluator,
    DatasetEvaluators,
    verify_results,
)
from detectron2.utils.logger import setup_logger

from mask2former.config import get_maskformer2_cfg
from mask2former.checkpoint import MaskFormerCheckpointer
from mask2former.data import InferenceDatasetMapper, build_train_mapper
from mask2former.engine import (
    AtomicCheckpointer,
    NonFiniteLossGuard,
    ResumableRandomness,
    build_resumable_train_loader,
    check_datasets_registered,
    convert_sync_batchnorm_on_cpu,
    ddp_on_cpu_in_default_trainer,
    install_adaptive_threads,
    launch,
    training_seed,
)
from mask2former.evaluation import (
    CityscapesSemSegEvaluator,
    InstanceSegEvaluator,
    SemSegEvaluator,
)
from mask2former.solver import build_lr_scheduler, build_optimizer
from mask2former.test_time_augmentation import SemanticSegmentorWithTTA

# evaluator_type values of panoptic datasets.
_PANOPTIC_TYPES = (
    "coco_panoptic_seg",
    "ade20k_panoptic_seg",
    "cityscapes_panoptic_seg",
    "mapillary_vistas_panoptic_seg",
)


class Trainer(DefaultTrainer):
    """DefaultTrainer with Mask2Former's data mappers, evaluators, optimizer and LR schedule."""

    def __init__(self, cfg):
        """DefaultTrainer's, also on CPU workers (DistributedDataParallel without device_ids)."""
        with ddp_on_cpu_in_default_trainer():
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        """
        Detectron2's model; on the CPU, SyncBN layers run as NaiveSyncBatchNorm, and torch's
        threads follow the machine's load (mask2former/engine/threads.py).
        """
        model = convert_sync_batchnorm_on_cpu(super().build_model(cfg))
        install_adaptive_threads(model)
        return model

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """
        Evaluators chosen by the dataset's ``evaluator_type`` and the model's
        MODEL.MASK_FORMER.TEST.{SEMANTIC,INSTANCE,PANOPTIC}_ON outputs:
        semantic mIoU (SemSegEvaluator / Cityscapes, reading "sem_seg" or "sem_seg_labels"),
        panoptic PQ (COCOPanopticEvaluator) and
        instance AP (InstanceSegEvaluator / Cityscapes).
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

    def build_hooks(self):
        """
        Detectron2's hooks, saving with an atomic checkpointer, plus exactly resumable
        randomness and a NaN / Inf loss guard naming the loss term (mask2former/engine/).
        """
        self.checkpointer = AtomicCheckpointer(
            self.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        return [ResumableRandomness(training_seed(self.cfg)), NonFiniteLossGuard()] + (
            super().build_hooks()
        )

    def state_dict(self):
        """
        Detectron2's trainer state (iteration, hooks: LR scheduler, ...) plus the inner
        trainer's (optimizer, AMP grad scaler), which Detectron2 v0.6's DefaultTrainer leaves
        out of checkpoints (later versions save it under the same key).
        """
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logging.getLogger("detectron2.trainer").warning(
                "The checkpoint holds no optimizer state: the optimizer starts afresh."
            )

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """SOLVER.LR_SCHEDULER_NAME: "WarmupPolyLR" or one of Detectron2's schedules."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """AdamW / SGD with backbone LR multiplier, norm / embedding weight decay, clipping."""
        return build_optimizer(cfg, model)

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


def disable_amp_without_cuda(cfg):
    """
    Detectron2's AMPTrainer needs CUDA: on a CPU-only run with SOLVER.AMP.ENABLED, log a
    warning and train in float32 instead.
    """
    if cfg.SOLVER.AMP.ENABLED and (cfg.MODEL.DEVICE == "cpu" or not torch.cuda.is_available()):
        logging.getLogger("detectron2.trainer").warning(
            "SOLVER.AMP.ENABLED is True but CUDA is not used (MODEL.DEVICE=%s); mixed precision "
            "training needs a GPU, so training runs in float32 (SOLVER.AMP.ENABLED=False).",
            cfg.MODEL.DEVICE,
        )
        cfg.SOLVER.AMP.ENABLED = False


def setup(args):
    """Config from ``args.config_file`` and ``args.opts``, frozen, and Detectron2's setup."""
    cfg = get_maskformer2_cfg(args.config_file, args.opts)
    check_datasets_registered(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="mask2former")
    cfg.defrost()
    disable_amp_without_cuda(cfg)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        MaskFormerCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, require_matching_shapes=True
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
