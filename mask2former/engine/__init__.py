"""
Training machinery beyond Detectron2's: resumable randomness and data order, a
non-finite-loss guard, launching / training on several processes and machines, on GPUs
(NCCL) or CPUs (Gloo), under torchrun or SLURM, checkpoints on a clock and on the signals of
a preemption, automatic resume after a launcher's restart, the config's process-wide CUDA
settings, CPU threads that follow the machine's load, and the trainer and entry point that
train_net.py and train_net_video.py share. Checkpoints (atomic saves, fine-tuning from other
classes) are in :mod:`mask2former.checkpoint`.
"""
from .cluster import LaunchedProcess, launched_process, launcher_restart
from .config_checks import check_datasets_registered
from .cpu_distributed import (
    convert_sync_batchnorm_on_cpu,
    create_ddp_model,
    ddp_on_cpu_in_default_trainer,
)
from .cuda_settings import apply_cuda_settings
from .hooks import NonFiniteLossGuard, ResumableRandomness
from .launch import launch, run_launched_process
from .preemption import REQUEUE_EXIT_CODE, TimedAndSignalCheckpointer, TrainingStopped
from .resumable_loader import ResumableTrainLoader, TrainingStream, build_resumable_train_loader
from .seeding import derive_seed, seed_global_rngs, seeded_global_rngs, training_seed
from .threads import AdaptiveThreads, install_adaptive_threads
from .trainer import (
    MaskFormerTrainer,
    argument_parser,
    disable_amp_without_cuda,
    launch_from_command_line,
    setup_from_args,
    train_or_evaluate,
)
