"""
Training machinery beyond Detectron2's: resumable randomness, data order and checkpoints, a
non-finite-loss guard, launching / training on several processes and machines, on GPUs
(NCCL) or CPUs (Gloo), and CPU threads that follow the machine's load.
"""
from .checkpoint import AtomicCheckpointer, atomic_write
from .config_checks import check_datasets_registered
from .cpu_distributed import (
    convert_sync_batchnorm_on_cpu,
    create_ddp_model,
    ddp_on_cpu_in_default_trainer,
)
from .hooks import NonFiniteLossGuard, ResumableRandomness
from .launch import launch
from .resumable_loader import ResumableTrainLoader, TrainingStream, build_resumable_train_loader
from .seeding import derive_seed, seed_global_rngs, seeded_global_rngs, training_seed
from .threads import AdaptiveThreads, install_adaptive_threads
