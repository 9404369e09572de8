"""Config keys of Mask2Former (:func:`add_maskformer2_config`) and the config loader."""
import logging

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config


def add_maskformer2_config(cfg):
    """
    Add the Mask2Former keys and their defaults to ``cfg`` (a Detectron2 ``CfgNode``).

    Call it after ``add_deeplab_config(cfg)``, which adds the poly LR schedule and the
    DeepLab-style ResNet keys that the published configs use.
    """
    # ---- data ----
    # Name of the dataset mapper that turns a dataset dict into model inputs for training.
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
    # Color augmentation of SSD (brightness, contrast, saturation, hue) in the semantic mapper.
    cfg.INPUT.COLOR_AUG_SSD = False
    # Pad images to a multiple of this size in the semantic mapper (-1: no padding).
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    # Large-scale jitter (LSJ) mappers: output square size and the range of the random scale.
    cfg.INPUT.IMAGE_SIZE = 1024
    cfg.INPUT.MIN_SCALE = 0.1
    cfg.INPUT.MAX_SCALE = 2.0

    # ---- a dataset described by a file (mask2former/data/datasets/dataset_file.py) ----
    # Path of a dataset YAML (task, splits, classes; README "Train on your own data"). When set,
    # loading the config (get_maskformer2_cfg, or apply_dataset_file(cfg)) registers its splits
    # as <name>_train / <name>_val / <name>_test and sets from the dataset: DATASETS.TRAIN and
    # TEST (unless they already name its splits), MODEL.SEM_SEG_HEAD.NUM_CLASSES and
    # IGNORE_VALUE, INPUT.DATASET_MAPPER_NAME (when the config's is for another task) and turns
    # off the MODEL.MASK_FORMER.TEST outputs the task cannot evaluate. The path is stored
    # absolute, so the config.yaml a run writes works from any folder.
    cfg.DATASETS.FILE = ""
    # Loading a split of DATASETS.FILE checks it (tools/check_dataset.py) and refuses defects;
    # True drops every image whose annotations have a defect instead, and logs how many.
    cfg.DATASETS.SKIP_INVALID_RECORDS = False

    # ---- solver ----
    # SOLVER.MAX_ITER 0: derive the schedule from the train split's size when training
    # (mask2former/data/datasets/register_dataset_file.py, derive_schedule): MAX_ITER =
    # EPOCHS x train images / IMS_PER_BATCH; for WarmupMultiStepLR with empty STEPS, steps at
    # 88.9% and 96.3% of it (the published COCO schedule's); WARMUP_ITERS at most a tenth of it;
    # TEST.EVAL_PERIOD -1 and a longer CHECKPOINT_PERIOD become a fifth of it. A MAX_ITER, STEPS
    # or EVAL_PERIOD given on the command line (e.g. SOLVER.MAX_ITER 5000) wins; WARMUP_ITERS and
    # CHECKPOINT_PERIOD stay capped under a derived MAX_ITER (the log lists the schedule).
    cfg.SOLVER.EPOCHS = 0
    # Weight decay of embedding parameters (query features, query and level embeddings).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    # "ADAMW" or "SGD".
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    # Learning rate multiplier of the backbone parameters.
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    # Also save a checkpoint when this many minutes of training have passed since the last one
    # (0: only every SOLVER.CHECKPOINT_PERIOD iterations), so that a lost machine costs at most
    # that much work. Each timed checkpoint (model_<iteration>.pth) replaces the previous timed
    # one; the periodic ones stay. Rank 0's clock decides for all workers
    # (mask2former/engine/preemption.py, which also checkpoints on SIGTERM / SIGUSR1).
    cfg.SOLVER.CHECKPOINT_PERIOD_MINUTES = 0.0

    # ---- Mask2Former head: loss ----
    cfg.MODEL.MASK_FORMER = CN()
    # Supervise the predictions before the first decoder layer and after every layer.
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = True
    # Classification weight of the "no object" class in the cross-entropy loss.
    cfg.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1
    # Weights of the classification, dice and sigmoid BCE mask terms (loss and matching cost).
    cfg.MODEL.MASK_FORMER.CLASS_WEIGHT = 1.0
    cfg.MODEL.MASK_FORMER.DICE_WEIGHT = 1.0
    cfg.MODEL.MASK_FORMER.MASK_WEIGHT = 20.0

    # ---- Mask2Former head: fine-tuning from a checkpoint of other classes ----
    # Training from MODEL.WEIGHTS trained for another number of classes (e.g. a published COCO
    # panoptic model, 133 classes) loads every weight but the class head: the decoder's
    # class_embed (K + 1 rows, the last "no object") keeps the model's initialization, as does
    # criterion.empty_weight (it follows K and NO_OBJECT_WEIGHT), and the log names them with
    # both shapes. These keys start rows of that head from the checkpoint's. They do not apply
    # when --resume continues from OUTPUT_DIR's last checkpoint; evaluation (--eval-only), the
    # demo and export require a checkpoint of the config's classes.
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT = CN()
    # True: the row of each class of DATASETS.TRAIN[0] (names from its metadata) starts from
    # the checkpoint's row of the class of the same name (exact match, or PAIRS), the "no
    # object" row from the checkpoint's; rows of other classes keep the initialization. The
    # log lists which row came from which.
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.BY_NAME = False
    # Registered dataset whose metadata names the classes of MODEL.WEIGHTS (its stuff_classes
    # or thing_classes, whichever has as many names as the checkpoint has classes), e.g.
    # "coco_2017_train_panoptic" (133 names) for the published COCO panoptic models,
    # "coco_2017_train" (80) COCO instance, "ade20k_sem_seg_train" (150) ADE20K semantic,
    # "ytvis_2019_train" (40). "": the names stored in the checkpoint (this project's
    # checkpoints store those of their DATASETS.TRAIN[0]).
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.WEIGHTS_DATASET = ""
    # Classes named differently, "<class of DATASETS.TRAIN[0]>:<class of MODEL.WEIGHTS>" each,
    # e.g. ["mug:cup", "sea:water-other"]; needs BY_NAME True.
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.PAIRS = []

    # ---- Mask2Former head: transformer decoder ----
    # Registered name of the transformer decoder (TRANSFORMER_DECODER_REGISTRY).
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    # Which features the decoder reads: "multi_scale_pixel_decoder" for Mask2Former.
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "res5"
    # Number of transformer encoder layers inside the decoder module (unused by Mask2Former).
    cfg.MODEL.MASK_FORMER.ENC_LAYERS = 0
    # Total number of decoder layers including the prediction before the first layer
    # (the decoder runs DEC_LAYERS - 1 layers).
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 6
    # Use LayerNorm before (True) or after (False) each attention / FFN block.
    cfg.MODEL.MASK_FORMER.PRE_NORM = False
    # Width of queries and attention layers.
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = 256
    # Number of learnable queries.
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 100
    # Number of attention heads.
    cfg.MODEL.MASK_FORMER.NHEADS = 8
    # Dropout of the decoder layers (the published Mask2Former configs set 0.0).
    cfg.MODEL.MASK_FORMER.DROPOUT = 0.1
    # Hidden width of the feed-forward blocks.
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048
    # Always project decoder inputs with a 1x1 conv, even when the channels already match.
    cfg.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ = False
    # Pad the input batch to a multiple of this size.
    cfg.MODEL.MASK_FORMER.SIZE_DIVISIBILITY = 32

    # ---- Mask2Former head: inference ----
    cfg.MODEL.MASK_FORMER.TEST = CN()
    # Which outputs inference produces.
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = False
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = False
    # Panoptic: keep queries whose class score exceeds this threshold.
    cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0
    # Panoptic: drop a segment when less than this fraction of its mask survives the merge.
    cfg.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0
    # Semantic: post-process at the padded input size (True) or at the original size (False).
    cfg.MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
    # Semantic output: "scores", Detectron2's "sem_seg" (K, H, W) float class scores; or
    # "labels", "sem_seg_labels" (H, W) int64, their argmax computed in chunks of rows without
    # the scores (K times less memory: use it for large images; the demo and the semantic
    # evaluators read it and give the same result). Test-time augmentation needs "scores".
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT = "scores"
    # Post-process at the network's input size and resize only the results to the output size
    # (panoptic ids and instance masks by nearest neighbour, semantic scores bilinearly): much
    # faster on images larger than the test size, results nearly the same (agreement measured
    # in BENCHMARKS.md). False: every mask is resized to the output size first (the paper's).
    cfg.MODEL.MASK_FORMER.TEST.POSTPROCESS_AT_NETWORK_RESOLUTION = False
    # Memory (MiB) of one chunk of mask logits resized to the output size: post-processing
    # resizes the masks a chunk of queries at a time and never holds all of them at that size.
    cfg.MODEL.MASK_FORMER.TEST.POSTPROCESS_CHUNK_MB = 64
    # Precision of the network at inference: "float32" (default: the published model's
    # results), or, opt-in, "bfloat16" / "float16": backbone, pixel decoder and transformer
    # decoder run under torch.autocast with that type (norms, softmaxes and the deformable
    # sampling stay float32; post-processing is float32). Faster where the hardware has the
    # type (bfloat16: CPUs with AVX-512 BF16 or AMX, recent GPUs; float16: GPUs), results
    # differ slightly: the agreement with float32 is measured in BENCHMARKS.md. Training is
    # not affected (see SOLVER.AMP.ENABLED).
    cfg.MODEL.MASK_FORMER.TEST.PRECISION = "float32"

    # ---- pixel decoder ----
    # Channels of the per-pixel mask features.
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
    # Number of transformer encoder layers of the pixel decoder.
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 0
    # Registered name of the pixel decoder (PIXEL_DECODER_REGISTRY).
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "BasePixelDecoder"
    # Backbone features the MSDeformAttn encoder reads (the three coarsest).
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    # Heads and sampling points per head and level of MSDeformAttn.
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8

    # ---- Swin Transformer backbone (D2SwinTransformer) ----
    cfg.MODEL.SWIN = CN()
    # Image size the backbone was pre-trained at (sets the absolute position embedding size).
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224
    # Patch size of the patch embedding.
    cfg.MODEL.SWIN.PATCH_SIZE = 4
    # Channels of the first stage.
    cfg.MODEL.SWIN.EMBED_DIM = 96
    # Blocks per stage.
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]
    # Attention heads per stage.
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]
    # Window size of the (shifted) window attention.
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    # Hidden width of the MLP relative to the channels.
    cfg.MODEL.SWIN.MLP_RATIO = 4.0
    # Bias of the query / key / value projection.
    cfg.MODEL.SWIN.QKV_BIAS = True
    # Attention scale (None: head_dim ** -0.5).
    cfg.MODEL.SWIN.QK_SCALE = None
    # Dropout, attention dropout and stochastic depth rates.
    cfg.MODEL.SWIN.DROP_RATE = 0.0
    cfg.MODEL.SWIN.ATTN_DROP_RATE = 0.0
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.3
    # Absolute position embedding.
    cfg.MODEL.SWIN.APE = False
    # LayerNorm after the patch embedding.
    cfg.MODEL.SWIN.PATCH_NORM = True
    # Stages whose outputs the backbone returns.
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    # Gradient checkpointing of the Swin blocks (saves memory, costs time).
    cfg.MODEL.SWIN.USE_CHECKPOINT = False

    # ---- GPU settings (no effect on the CPU) ----
    # Precision of float32 matrix multiplications on CUDA (torch.set_float32_matmul_precision),
    # applied by train_net.py, train_net_video.py and demo/demo.py (mask2former.engine.
    # apply_cuda_settings): ""
    # keeps PyTorch's setting, full float32 unless changed elsewhere, as Detectron2 and the
    # published Mask2Former run; "high" allows TF32 (Ampere and later GPUs: faster, about 1e-3
    # relative error per product); "medium" also bfloat16. "highest" forces full float32.
    # Convolutions follow torch.backends.cudnn.allow_tf32 (PyTorch's default: TF32 allowed).
    cfg.FLOAT32_MATMUL_PRECISION = ""

    # ---- point-sampled losses ----
    # Number of points sampled per mask for matching and for the mask losses.
    cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 112 * 112
    # Oversampling ratio and fraction of points chosen by uncertainty (PointRend).
    cfg.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0
    cfg.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75


def get_maskformer2_cfg(config_file=None, opts=(), add_configs=()):
    """
    A Detectron2 config with the DeepLab and Mask2Former keys, merged with ``config_file`` (a
    yaml path) and then ``opts`` (a flat KEY VALUE list, as on the command line); not frozen.
    ``add_configs``: further functions ``f(cfg)`` that add keys before the merge (e.g.
    ``add_maskformer2_video_config``).

    With DATASETS.FILE set, the dataset file's splits are registered and the keys that follow
    from it are set (:func:`~mask2former.data.datasets.register_dataset_file.apply_dataset_file`).
    On a machine without CUDA, MODEL.DEVICE "cuda" becomes "cpu" (logged), so that the published
    configs run there unchanged.
    """
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    for add_config in add_configs:
        add_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if cfg.DATASETS.FILE:
        from .data.datasets.register_dataset_file import apply_dataset_file

        apply_dataset_file(cfg)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(
            "MODEL.DEVICE is %r but CUDA is not available: running on the CPU.", cfg.MODEL.DEVICE
        )
        cfg.MODEL.DEVICE = "cpu"
    return cfg
