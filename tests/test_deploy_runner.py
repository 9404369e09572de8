"""
mask2former.deploy without an exported graph: its numpy inference gives MaskFormer's results from
the same head outputs, its resizing is Detectron2's and PyTorch's, and its deploy info
round-trips and refuses files it cannot read.
"""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import ImageList
from PIL import Image

from deploy_checks import assert_same_results
from mask2former.deploy import DeployInfo, InferenceSettings, InputPolicy, inference_results
from mask2former.deploy.resize import resize_image, resize_maps, shortest_edge_size
from mask2former.export import inference_settings_from_config
from small_model import small_config

DATASET = "mask2former_test_deploy_runner"
NUM_CLASSES = 5
NUM_QUERIES = 12
THING_IDS = {11: 0, 12: 1, 13: 3}  # dataset id -> contiguous id


def _config(**test_keys):
    MetadataCatalog.get(DATASET).set(thing_dataset_id_to_contiguous_id=THING_IDS)
    cfg = small_config(num_classes=NUM_CLASSES, num_queries=NUM_QUERIES, test_dataset=DATASET)
    for key, value in test_keys.items():
        setattr(cfg.MODEL.MASK_FORMER.TEST, key, value)
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    return cfg


ALL_TASKS = dict(SEMANTIC_ON=True, PANOPTIC_ON=True, INSTANCE_ON=True,
                 OBJECT_MASK_THRESHOLD=0.4, OVERLAP_THRESHOLD=0.25)
SEMANTIC_ONLY = dict(SEMANTIC_ON=True, PANOPTIC_ON=False, INSTANCE_ON=False)


def _head_outputs(seed, padded_size):
    """Confident class logits and smooth mask logits at 1/4 of the padded size, as the head's."""
    generator = torch.Generator().manual_seed(seed)
    pred_logits = 4 * torch.randn(1, NUM_QUERIES, NUM_CLASSES + 1, generator=generator)
    coarse = 3 * torch.randn(1, NUM_QUERIES, 3, 4, generator=generator)
    size = (padded_size[0] // 4, padded_size[1] // 4)
    pred_masks = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return {"pred_logits": pred_logits, "pred_masks": pred_masks}


@pytest.mark.parametrize("test_keys", [ALL_TASKS, SEMANTIC_ONLY], ids=["all_tasks", "semantic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("output_size", [None, (75, 88)], ids=["input_size", "resized"])
def test_numpy_inference_gives_maskformers_results(test_keys, seed, output_size):
    cfg = _config(**test_keys)
    model = build_model(cfg).eval()
    image_size = (50, 61)  # padded to (64, 64) inside the model
    images = ImageList(torch.zeros(1, 3, 64, 64), [image_size])
    outputs = _head_outputs(seed, (64, 64))
    inputs = [{"image": torch.zeros(3, *image_size)}]
    if output_size:
        inputs[0].update(height=output_size[0], width=output_size[1])
    with torch.no_grad():
        expected = model.inference(outputs, inputs, images)[0]

    # What the exported graph outputs: the mask logits upsampled and cropped to the image.
    mask_logits = F.interpolate(outputs["pred_masks"], size=(64, 64), mode="bilinear",
                                align_corners=False)[0, :, : image_size[0], : image_size[1]]
    settings, _ = inference_settings_from_config(cfg)
    height, width = output_size or image_size
    actual = inference_results(outputs["pred_logits"][0].numpy(), mask_logits.numpy(), height,
                               width, settings)
    assert_same_results(expected, actual)
    if "panoptic_seg" in expected:
        assert expected["panoptic_seg"][1], "no panoptic segment: the test checks too little"
        assert len(expected["instances"]) > 0


@pytest.mark.parametrize("test_keys", [ALL_TASKS, SEMANTIC_ONLY])
def test_inference_settings_from_config_are_the_models(test_keys):
    cfg = _config(**test_keys)
    model = build_model(cfg)
    settings, metadata = inference_settings_from_config(cfg)
    assert settings == InferenceSettings(
        semantic_on=model.semantic_on,
        panoptic_on=model.panoptic_on,
        instance_on=model.instance_on,
        object_mask_threshold=model.object_mask_threshold,
        overlap_threshold=model.overlap_threshold,
        test_topk_per_image=model.test_topk_per_image,
        sem_seg_postprocess_before_inference=model.sem_seg_postprocess_before_inference,
        thing_ids=None if model.thing_classes is None else sorted(model.thing_classes),
    )
    assert metadata is model.metadata


SIZES = [(480, 640, 800, 1333), (100, 37, 64, 1000), (1000, 800, 512, 2048), (33, 47, 128, 128),
         (700, 300, 300, 350), (64, 64, 64, 64), (513, 300, 200, 1000), (90, 160, 0, 1333)]


@pytest.mark.parametrize("height, width, short_edge, max_size", SIZES)
def test_resize_image_is_detectron2s(height, width, short_edge, max_size):
    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    transform = T.ResizeShortestEdge([short_edge, short_edge], max_size).get_transform(image)
    expected = transform.apply_image(image)
    new_size = shortest_edge_size(height, width, short_edge, max_size)
    assert new_size == expected.shape[:2]

    # Each pass is Pillow's to the byte ...
    for size in ((height, new_size[1]), (new_size[0], width)):
        pillow = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
        assert np.array_equal(resize_image(image, *size), pillow)
    # ... and both passes, horizontal first, are Detectron2's resize up to one level: Pillow
    # >= 13 runs the vertical pass first for some sizes.
    actual = resize_image(image, *new_size)
    assert np.abs(actual.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("maps_size, size", [((17, 23), (40, 50)), ((64, 64), (30, 100)),
                                             ((10, 10), (10, 13)), ((8, 9), (8, 9))])
def test_resize_maps_is_pytorchs_bilinear(maps_size, size):
    maps = np.random.default_rng(0).standard_normal((4,) + maps_size).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(maps)[None], size=size, mode="bilinear",
                             align_corners=False)[0].numpy()
    actual = resize_maps(maps, *size)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def _info():
    settings, _ = inference_settings_from_config(_config(**ALL_TASKS))
    policy = InputPolicy("RGB", 800, 1333, 32, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [64, 96], 33)
    return DeployInfo("onnx", NUM_CLASSES, NUM_QUERIES, "cpu", policy, settings,
                      {"name": DATASET, "thing_dataset_id_to_contiguous_id": [[11, 0]]})


def test_deploy_info_round_trips():
    info = _info()
    assert DeployInfo.from_json(info.to_json(), "model.onnx") == info
    assert dataclasses.asdict(DeployInfo.from_json(info.to_json(), "model.onnx"))["input"][
        "pixel_std"] == [4.0, 5.0, 6.0]


def test_deploy_info_refuses_other_versions_and_incomplete_info():
    text = _info().to_json()
    with pytest.raises(ValueError, match="model.onnx: deploy info format version 99"):
        DeployInfo.from_json(text.replace('"format_version": 1', '"format_version": 99'),
                             "model.onnx")
    with pytest.raises(ValueError, match="model.onnx: incomplete .*InputPolicy lacks"):
        DeployInfo.from_json(text.replace('"input_format"', '"format_of_input"'), "model.onnx")
    with pytest.raises(ValueError, match="model.onnx: its Mask2Former deploy info is not JSON"):
        DeployInfo.from_json("{", "model.onnx")
