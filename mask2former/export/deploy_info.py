"""The deploy info (mask2former/deploy/deploy_info.py) of a model and its config."""
from ..deploy.deploy_info import DeployInfo, InferenceSettings, InputPolicy
from ..maskformer_model import _dataset_metadata

__all__ = ["build_deploy_info", "inference_settings_from_config", "MIN_IMAGE_SIZE"]

# Smallest height and width an exported graph serves: torch.export specializes sizes 0 and 1,
# so the coarsest feature map (1/32 of the padded image) must be at least 2 x 2.
MIN_IMAGE_SIZE = 33

# Metadata keys copied into the deploy info, where the dataset has them.
_METADATA_LISTS = ("stuff_classes", "thing_classes", "stuff_colors", "thing_colors")
_METADATA_MAPS = ("thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id")


def inference_settings_from_config(cfg):
    """
    The inference settings that ``MaskFormer.from_config`` gives a model built from ``cfg``
    (tests/test_export.py checks that they agree), and the dataset metadata they depend on.

    Returns:
        (InferenceSettings, Detectron2 Metadata of the test dataset)
    """
    test = cfg.MODEL.MASK_FORMER.TEST
    metadata = _dataset_metadata(cfg)
    thing_ids = None
    if hasattr(metadata, "thing_dataset_id_to_contiguous_id"):
        thing_ids = sorted(set(metadata.thing_dataset_id_to_contiguous_id.values()))
    settings = InferenceSettings(
        semantic_on=test.SEMANTIC_ON,
        panoptic_on=test.PANOPTIC_ON,
        instance_on=test.INSTANCE_ON,
        object_mask_threshold=test.OBJECT_MASK_THRESHOLD,
        overlap_threshold=test.OVERLAP_THRESHOLD,
        test_topk_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
        sem_seg_postprocess_before_inference=test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE,
        thing_ids=thing_ids,
        semantic_output=test.SEMANTIC_OUTPUT,
        postprocess_at_network_resolution=test.POSTPROCESS_AT_NETWORK_RESOLUTION,
        postprocess_chunk_mb=test.POSTPROCESS_CHUNK_MB,
    )
    return settings, metadata


def _metadata(metadata):
    out = {"name": getattr(metadata, "name", "")}
    for key in _METADATA_LISTS:
        if hasattr(metadata, key):
            out[key] = [list(v) if isinstance(v, (list, tuple)) else v for v in metadata.get(key)]
    for key in _METADATA_MAPS:
        if hasattr(metadata, key):
            out[key] = sorted([int(k), int(v)] for k, v in metadata.get(key).items())
    return out


def build_deploy_info(cfg, model, export_format, export_size):
    """
    Args:
        cfg: the config the model was built from.
        model: the :class:`MaskFormer` being exported.
        export_format: "onnx" or "torchscript".
        export_size: (H, W) of the example image of the export.
    """
    class_embed = model.sem_seg_head.predictor.class_embed
    settings, metadata = inference_settings_from_config(cfg)
    return DeployInfo(
        format=export_format,
        num_classes=class_embed.out_features - 1,
        num_queries=model.sem_seg_head.predictor.num_queries,
        device=str(model.device),
        input=InputPolicy(
            input_format=cfg.INPUT.FORMAT,
            min_size_test=cfg.INPUT.MIN_SIZE_TEST,
            max_size_test=cfg.INPUT.MAX_SIZE_TEST,
            size_divisibility=model.size_divisibility,
            pixel_mean=[float(v) for v in cfg.MODEL.PIXEL_MEAN],
            pixel_std=[float(v) for v in cfg.MODEL.PIXEL_STD],
            export_size=list(export_size),
            min_image_size=MIN_IMAGE_SIZE,
        ),
        inference=settings,
        metadata=_metadata(metadata),
    )
