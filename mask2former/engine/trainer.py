"""
What ``train_net.py`` (images) and ``train_net_video.py`` (videos) share: the trainer with the
project's model building, optimizer, LR schedule, checkpointing and hooks, the setup of a run from
the command line, the train-or-evaluate step, and the launch on CPUs or GPUs. Each script adds
its data loaders and evaluators in a subclass of :class:`MaskFormerTrainer`.
"""
import logging
import os
import weakref

import torch
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, hooks
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from mask2former.checkpoint import (
    MaskFormerCheckpointer,
    build_class_head_init,
    training_class_names,
)
from mask2former.config import get_maskformer2_cfg
from mask2former.data.datasets.register_dataset_file import derive_schedule
from mask2former.solver import build_lr_scheduler, build_optimizer

from .cluster import launched_process, launcher_restart
from .config_checks import check_datasets_registered
from .cpu_distributed import convert_sync_batchnorm_on_cpu, ddp_on_cpu_in_default_trainer
from .cuda_settings import apply_cuda_settings
from .hooks import NonFiniteLossGuard, ResumableRandomness
from .launch import launch, run_launched_process
from .preemption import TimedAndSignalCheckpointer
from .seeding import training_seed
from .threads import install_adaptive_threads

__all__ = [
    "MaskFormerTrainer",
    "argument_parser",
    "disable_amp_without_cuda",
    "setup_from_args",
    "train_or_evaluate",
    "launch_from_command_line",
]


class MaskFormerTrainer(DefaultTrainer):
    """
    DefaultTrainer with Mask2Former's optimizer and LR schedule, atomic checkpoints that also
    hold the optimizer state, checkpoints on a clock and on SIGTERM / SIGUSR1, exactly
    resumable randomness, a NaN / Inf loss guard, and CPU workers. Subclasses add
    ``build_evaluator`` and ``build_train_loader`` (and may add ``build_test_loader`` and
    ``test_with_TTA``).
    """

    def __init__(self, cfg):
        """DefaultTrainer's, also on CPU workers (DistributedDataParallel without device_ids)."""
        if cfg.SOLVER.MAX_ITER <= 0:
            raise ValueError(
                f"SOLVER.MAX_ITER is {cfg.SOLVER.MAX_ITER}: nothing to train. A config of "
                "configs/custom/ derives it from the dataset: call derive_schedule(cfg) "
                "(mask2former.data.datasets) before freezing it, as train_net.py does, or set "
                "SOLVER.MAX_ITER")
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

    def build_hooks(self):
        """
        Detectron2's hooks with the project's checkpointer (atomic saves that carry the
        class names; MODEL.WEIGHTS of other classes loads all but the class head, see
        MODEL.MASK_FORMER.CLASS_HEAD_INIT), plus exactly resumable randomness, a NaN / Inf loss
        guard naming the loss term, and checkpoints every SOLVER.CHECKPOINT_PERIOD_MINUTES and
        on SIGTERM / SIGUSR1, after Detectron2's periodic checkpoint and before its evaluation
        (mask2former/engine/).
        """
        self.checkpointer = MaskFormerCheckpointer(
            self.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self),
            class_names=training_class_names(self.cfg),
            class_head_init=build_class_head_init(self.cfg),
        )
        ret = super().build_hooks()
        evaluation = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
        ret.insert(evaluation, TimedAndSignalCheckpointer(
            self.cfg.SOLVER.CHECKPOINT_PERIOD_MINUTES, self.cfg.SOLVER.CHECKPOINT_PERIOD))
        return [ResumableRandomness(training_seed(self.cfg)), NonFiniteLossGuard()] + ret

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
        """Evaluation with test-time augmentation; subclasses that support it override this."""
        raise NotImplementedError(
            f"TEST.AUG.ENABLED: {cls.__module__}.{cls.__name__} has no test-time augmentation; "
            "set TEST.AUG.ENABLED False."
        )


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


def setup_from_args(args, add_configs=()):
    """
    The frozen config of a run: ``args.config_file`` and ``args.opts`` merged over the
    Mask2Former keys (and those ``add_configs`` add, see
    :func:`~mask2former.config.get_maskformer2_cfg`), with ``args.dataset`` as DATASETS.FILE
    (``--dataset``), its datasets checked (a dataset file's splits are loaded and checked before
    training, and its schedule derived from the train split's size where the config leaves it
    to the dataset), Detectron2's setup (output folder, logs, config dump), AMP turned off
    without CUDA, and the config's CUDA settings applied (FLOAT32_MATMUL_PRECISION).
    """
    opts = list(args.opts)
    if getattr(args, "dataset", None):
        opts += ["DATASETS.FILE", args.dataset]
    cfg = get_maskformer2_cfg(args.config_file, opts, add_configs=add_configs)
    check_datasets_registered(cfg)
    # Before the dataset check of derive_schedule, whose report goes to the run's log.txt.
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="mask2former")
    if not args.eval_only:
        derive_schedule(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    cfg.defrost()
    disable_amp_without_cuda(cfg)
    cfg.freeze()
    apply_cuda_settings(cfg)
    return cfg


def train_or_evaluate(cfg, args, trainer_cls):
    """
    ``--eval-only``: load MODEL.WEIGHTS (or, with ``--resume``, the last checkpoint) into the
    model, which must fit it exactly, and evaluate on DATASETS.TEST (with TEST.AUG also with
    test-time augmentation). Otherwise train with ``trainer_cls``, resuming with ``--resume``,
    or without it when torchrun or SLURM restarted the job (a lost worker or machine, a
    preemption): the restarted job continues from the last checkpoint instead of starting over.

    Returns:
        the evaluation results (dict), or those of the trainer's final evaluation.
    """
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        MaskFormerCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, require_matching_shapes=True
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = trainer_cls.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(trainer_cls.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=_resume_training(cfg, args))
    return trainer.train()


def argument_parser():
    """Detectron2's ``default_argument_parser`` with ``--dataset FILE`` (DATASETS.FILE)."""
    parser = default_argument_parser()
    parser.add_argument("--dataset", metavar="FILE", help="a dataset file (YAML) to train and "
                        "evaluate on; the same as the option DATASETS.FILE FILE")
    return parser


def _resume_training(cfg, args):
    """
    ``--resume``, or a launcher's restart of any worker (all ranks decide alike: a machine that
    replaces a lost one starts its workers as a first attempt); logs why, or warns before
    starting over.
    """
    logger = logging.getLogger("detectron2.trainer")
    restart = launcher_restart()
    if not args.resume and any(comm.all_gather(restart is not None)):
        logger.info(f"{restart or 'The launcher restarted the job (other workers)'}: resuming "
                    f"from the last checkpoint in {cfg.OUTPUT_DIR}, as with --resume.")
        return True
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if not args.resume and comm.is_main_process() and os.path.isfile(last):
        with open(last) as f:
            logger.warning(
                f"{cfg.OUTPUT_DIR} holds the checkpoint {f.read().strip()} of an earlier run, and "
                "--resume was not given: training starts from MODEL.WEIGHTS and its checkpoints "
                "replace that run's. Stop now and add --resume to continue that run instead."
            )
    return args.resume


def launch_from_command_line(main, argv=None):
    """
    Parse Detectron2's command line (``--config-file``, ``--eval-only``, ``--resume``,
    ``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``, ``KEY VALUE``
    options) and ``--dataset FILE`` (a dataset file: DATASETS.FILE), and run ``main(args)`` in
    every process (see :func:`~.launch.launch`); ``main`` must be a module-level function when
    several processes run. Under torchrun or srun, which start the processes themselves, run
    ``main`` in this one (see ``cluster.py``).
    """
    args = argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    process = launched_process(args.num_gpus, args.num_machines)
    if process is not None:
        return run_launched_process(main, process, args=(args,))
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
