#!/usr/bin/env python
"""
Train and evaluate video Mask2Former (video instance segmentation) with Detectron2:

    python train_net_video.py --config-file \
        configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml --num-gpus 8
    python train_net_video.py --config-file X.yaml --eval-only MODEL.WEIGHTS model.pkl
    python train_net_video.py --config-file X.yaml --num-gpus 8 --resume

The flags, resume, checkpoints and distributed training (GPUs, or CPU workers with Gloo; also
under torchrun or srun) are those of train_net.py (mask2former/engine/trainer.py). Datasets are
read from $DETECTRON2_DATASETS (see datasets/README.md, YouTube-VIS).
"""
import os

from mask2former.engine import (
    MaskFormerTrainer,
    launch_from_command_line,
    setup_from_args,
    train_or_evaluate,
)
from mask2former_video import add_maskformer2_video_config
from mask2former_video.data_video import build_video_test_loader, build_video_train_loader
from mask2former_video.evaluation import YTVISEvaluator


class Trainer(MaskFormerTrainer):
    """The shared Mask2Former trainer with clip / video data loaders and the YouTube-VIS metric."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """:class:`YTVISEvaluator`: results.json, and AP when the dataset has annotations."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return YTVISEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        """Clips of INPUT.SAMPLING_FRAME_NUM frames, in a stream that resumes exactly."""
        return build_video_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Whole videos, one per batch."""
        return build_video_test_loader(cfg, dataset_name)


def setup(args):
    """Config (with the video keys) from ``args``, frozen, and Detectron2's setup."""
    if getattr(args, "dataset", None):
        raise SystemExit(
            "--dataset: dataset files describe image datasets (train_net.py); video datasets "
            "are read in the YouTube-VIS layout (datasets/README.md)")
    return setup_from_args(args, add_configs=(add_maskformer2_video_config,))


def main(args):
    return train_or_evaluate(setup(args), args, Trainer)


if __name__ == "__main__":
    launch_from_command_line(main)
