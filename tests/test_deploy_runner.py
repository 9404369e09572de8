"""
mask2former.deploy without an exported graph: its numpy inference gives MaskFormer's results from
the same head outputs (with every post-processing option of MODEL.MASK_FORMER.TEST), in chunks
that give the results of one chunk and in memory that grows with the outputs; its resizing is
Detectron2's and PyTorch's, and its deploy info round-trips and refuses files it cannot read.
"""
import dataclasses
import json
import subprocess
import sys

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
from mask2former.deploy.postprocessing import chunk_elements
from mask2former.deploy.resize import resize_image, resize_map_rows, resize_maps, shortest_edge_size
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
# The post-processing options; 0.02 MiB chunks hold one query at these sizes, and a few rows.
TINY_CHUNKS = dict(POSTPROCESS_CHUNK_MB=0.02)
TEST_KEYS = {
    "all_tasks": ALL_TASKS,
    "semantic": SEMANTIC_ONLY,
    "labels_in_chunks": dict(ALL_TASKS, SEMANTIC_OUTPUT="labels", **TINY_CHUNKS),
    "semantic_labels_in_chunks": dict(SEMANTIC_ONLY, SEMANTIC_OUTPUT="labels", **TINY_CHUNKS),
    "network_resolution": dict(ALL_TASKS, POSTPROCESS_AT_NETWORK_RESOLUTION=True),
    "network_resolution_labels": dict(ALL_TASKS, POSTPROCESS_AT_NETWORK_RESOLUTION=True,
                                      SEMANTIC_OUTPUT="labels", **TINY_CHUNKS),
}


def _head_outputs(seed, padded_size):
    """Confident class logits and smooth mask logits at 1/4 of the padded size, as the head's."""
    generator = torch.Generator().manual_seed(seed)
    pred_logits = 4 * torch.randn(1, NUM_QUERIES, NUM_CLASSES + 1, generator=generator)
    coarse = 3 * torch.randn(1, NUM_QUERIES, 3, 4, generator=generator)
    size = (padded_size[0] // 4, padded_size[1] // 4)
    pred_masks = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return {"pred_logits": pred_logits, "pred_masks": pred_masks}


@pytest.mark.parametrize("test_keys", TEST_KEYS.values(), ids=TEST_KEYS.keys())
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


@pytest.mark.parametrize("test_keys", TEST_KEYS.values(), ids=TEST_KEYS.keys())
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
        semantic_output=model.semantic_output,
        postprocess_at_network_resolution=model.postprocess_at_network_resolution,
        postprocess_chunk_mb=settings.postprocess_chunk_mb,
    )
    assert chunk_elements(settings.postprocess_chunk_mb) == model.chunk_elements
    assert metadata is model.metadata


def _mid_size_outputs(seed=0, num_queries=12, size=(90, 77)):
    """(Q, K+1) confident class logits and smooth (Q, H, W) mask logits, mostly < 0."""
    rng = np.random.default_rng(seed)
    mask_cls = (4 * rng.standard_normal((num_queries, NUM_CLASSES + 1))).astype(np.float32)
    coarse = (6 * rng.standard_normal((num_queries, 6, 5))).astype(np.float32)
    return mask_cls, resize_maps(coarse, *size) - 3


@pytest.mark.parametrize("output_size", [(90, 77), (301, 257)], ids=["input_size", "resized"])
def test_chunks_give_the_results_of_one_chunk(output_size):
    """
    One chunk holding every query is the unchunked computation (all masks resized at once);
    chunks of one query and bands of one row give the same panoptic segments, instances and
    label maps to the bit, and the same semantic scores to float rounding.
    """
    mask_cls, mask_pred = _mid_size_outputs()
    settings, _ = inference_settings_from_config(_config(**ALL_TASKS))
    settings = dataclasses.replace(settings, object_mask_threshold=0.2, overlap_threshold=0.3)
    whole = inference_results(mask_cls, mask_pred, *output_size,
                              dataclasses.replace(settings, postprocess_chunk_mb=10**6))
    chunked = inference_results(mask_cls, mask_pred, *output_size,
                                dataclasses.replace(settings, **{"postprocess_chunk_mb": 1e-9}))
    assert len(whole["panoptic_seg"][1]) >= 3 and len(whole["instances"]["scores"]) >= 5

    assert np.array_equal(chunked["panoptic_seg"][0], whole["panoptic_seg"][0])
    assert chunked["panoptic_seg"][1] == whole["panoptic_seg"][1]
    for key, value in whole["instances"].items():
        assert np.array_equal(chunked["instances"][key], value), key
    np.testing.assert_allclose(chunked["sem_seg"], whole["sem_seg"], rtol=0, atol=1e-5)
    labels = inference_results(mask_cls, mask_pred, *output_size, dataclasses.replace(
        settings, semantic_output="labels", postprocess_chunk_mb=1e-9))["sem_seg_labels"]
    assert np.array_equal(labels, whole["sem_seg"].argmax(0))


def test_resize_map_rows_are_rows_of_the_whole_resize():
    maps = _mid_size_outputs(size=(37, 29))[1]
    whole = resize_maps(maps, 301, 257)
    for start, stop in ((0, 1), (0, 301), (17, 40), (300, 301)):
        assert np.array_equal(resize_map_rows(maps, 301, 257, start, stop), whole[:, start:stop])


# Runs in a process where torch cannot be imported; prints the peak memory growth in bytes.
LARGE_IMAGE_CHILD = """
import resource, sys
sys.modules["torch"] = None
import numpy as np
from mask2former.deploy import InferenceSettings, inference_results
rng = np.random.default_rng(0)
mask_cls = rng.standard_normal((60, 11), dtype=np.float32) * 3
mask_pred = rng.standard_normal((60, 375, 300), dtype=np.float32)  # no float64 copy: the peak
mask_pred *= 4  # before inference is the inputs'
settings = InferenceSettings(True, True, True, 0.5, 0.0, 10, False, list(range(5)),
                             semantic_output="labels", postprocess_chunk_mb=4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = inference_results(mask_cls, mask_pred, 800, 640, settings)
assert result["panoptic_seg"][0].shape == (800, 640) and len(result["instances"]["scores"]) > 0
assert result["sem_seg_labels"].shape == (800, 640)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_runner_memory_grows_with_the_outputs_not_with_queries_times_pixels():
    """60 queries at 800 x 640: their float logits at that size alone would take 123 MB."""
    proc = subprocess.run([sys.executable, "-c", LARGE_IMAGE_CHILD], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth = float(proc.stdout.strip().splitlines()[-1])
    queries_times_pixels = 60 * 800 * 640 * 4
    # Resizing all masks at once holds at least that twice (logits and probabilities).
    assert growth < queries_times_pixels / 2, f"peak memory grew by {growth / 2**20:.0f} MiB"


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


def test_inference_settings_refuse_what_maskformer_refuses():
    settings = _info().inference
    with pytest.raises(ValueError, match="MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT is 'probs'"):
        dataclasses.replace(settings, semantic_output="probs")
    with pytest.raises(ValueError, match="no inference task is on; set one of MODEL.MASK_FORMER"):
        dataclasses.replace(settings, semantic_on=False, panoptic_on=False, instance_on=False)
    text = _info().to_json().replace('"semantic_output": "scores"', '"semantic_output": "probs"')
    with pytest.raises(ValueError, match="model.onnx: .*SEMANTIC_OUTPUT is 'probs'"):
        DeployInfo.from_json(text, "model.onnx")


def test_deploy_info_of_earlier_exports_reads_the_default_post_processing():
    """Files written before the post-processing options existed run as they did."""
    data = json.loads(_info().to_json())
    for key in ("semantic_output", "postprocess_at_network_resolution", "postprocess_chunk_mb"):
        del data["inference"][key]
    settings = DeployInfo.from_json(json.dumps(data), "model.onnx").inference
    assert (settings.semantic_output, settings.postprocess_at_network_resolution,
            settings.postprocess_chunk_mb) == ("scores", False, 64)
