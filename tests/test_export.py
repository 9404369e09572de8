"""
Export to ONNX (run by ONNX Runtime) and TorchScript: for the published R50 COCO panoptic, R50
ADE20K semantic and Swin-T COCO instance configs (random weights, small images), at the export
size and at two other sizes, the exported graphs give the PyTorch model's class and mask logits
to 1e-4, and the runner turns them into the semantic maps, panoptic segments and instances that
the PyTorch model's inference makes of them.

Two float computations of the same model differ by about 1e-5, so whatever is decided by a
threshold can differ where a value lies within 1e-5 of it. Inside the model, masked attention
thresholds each query's mask logits: an image with an attention-mask logit within 1e-5 of the
threshold is ill-conditioned (both results are right, and they differ by up to 0.1), so each
size uses the first image whose logits keep ATTENTION_MARGIN from it. The results are compared
on the same logits, for the same reason: measured here, 1 mask pixel of 614,400 differs
between the R50 panoptic model's own results and the runner's at 64 x 96, none elsewhere.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.structures import ImageList

from deploy_checks import as_numpy, assert_same_results
from mask2former.config import get_maskformer2_cfg
from mask2former.deploy import ExportedMask2Former, inference_results
from mask2former.export import ExportableMaskFormer, build_deploy_info, export_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "r50_coco_panoptic": "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml",
    "r50_ade20k_semantic": "configs/ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml",
    "swin_t_coco_instance":
        "configs/coco/instance-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml",
}
EXPORT_SIZE = (64, 96)
# Portrait, and neither side a multiple of 32 (the graph pads inside).
OTHER_SIZES = [(96, 64), (70, 90)]
# Largest difference of the exported logits from PyTorch's (the bar).
LOGITS_TOLERANCE = 1e-4
# Smallest distance of the mask logits that masked attention thresholds from the threshold, in
# the images the test uses (the implementations differ by about 1e-6 there).
ATTENTION_MARGIN = 1e-5


def _confident(model):
    """
    Scale the random class head so that some queries are confident: the panoptic threshold
    (0.8 for COCO) then keeps segments, and the comparison checks more than empty results.
    """
    with torch.no_grad():
        model.sem_seg_head.predictor.class_embed.weight.mul_(12)
    return model


def _image(size, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=generator)


def _logits_and_attention_margin(model, image):
    """
    PyTorch's (class_logits, mask_logits) of the image, and the smallest |mask logit|
    (probability 0.5) among those its masked attention thresholds.
    """
    captured = {}

    def keep(module, args):
        captured["args"] = args

    predictor = model.sem_seg_head.predictor
    handle = predictor.register_forward_pre_hook(keep)
    with torch.no_grad():
        logits = ExportableMaskFormer(model)(image[None].float())
        handle.remove()
        features, mask_features = captured["args"]
        predictions = predictor(features, mask_features, return_aux_outputs=True)["aux_outputs"]
    sizes = [feature.shape[-2:] for feature in features]
    margin = min(
        F.interpolate(p["pred_masks"], size=sizes[i % len(sizes)], mode="bilinear",
                      align_corners=False).abs().min().item()
        for i, p in enumerate(predictions)
    )
    return logits, margin


def _well_conditioned_image(model, size):
    """The first image (by seed) whose attention-mask logits keep ATTENTION_MARGIN, and
    PyTorch's logits of it."""
    for seed in range(sum(size), sum(size) + 20):
        image = _image(size, seed)
        logits, margin = _logits_and_attention_margin(model, image)
        if margin >= ATTENTION_MARGIN:
            return image, logits
    raise AssertionError("no well-conditioned image in 20 seeds")


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    """
    A published config's model with random weights, its ONNX and TorchScript exports, and for
    each test size a well-conditioned image with PyTorch's logits of it.
    """
    cfg = get_maskformer2_cfg(os.path.join(REPO_ROOT, CONFIGS[request.param]),
                              ["MODEL.DEVICE", "cpu"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _confident(build_model(cfg).eval())
    output = tmp_path_factory.mktemp(request.param)
    runners = {}
    for export_format in ("onnx", "torchscript"):
        info = build_deploy_info(cfg, model, export_format, EXPORT_SIZE)
        path = export_model(model, _image(EXPORT_SIZE, 0), export_format,
                            str(output / export_format), info)
        runners[export_format] = ExportedMask2Former(path, num_threads=torch.get_num_threads())
    images = {size: _well_conditioned_image(model, size) for size in [EXPORT_SIZE] + OTHER_SIZES}
    return model, runners, images


def _pytorch_inference(model, class_logits, mask_logits):
    """
    MaskFormer's inference of one image's logits (the exported outputs) at the image's size:
    given mask logits already at the (unpadded) image size, its resizes are identities.
    """
    height, width = mask_logits.shape[-2:]
    outputs = {"pred_logits": torch.from_numpy(class_logits)[None],
               "pred_masks": torch.from_numpy(mask_logits)[None]}
    image = {"image": torch.zeros(3, height, width)}
    images = ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    with torch.no_grad():
        return model.inference(outputs, [image], images)[0]


@pytest.mark.parametrize("size", [EXPORT_SIZE] + OTHER_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("export_format", ["onnx", "torchscript"])
def test_exported_model_equals_pytorch(exported, export_format, size):
    model, runners, images = exported
    runner = runners[export_format]
    image, expected_logits = images[size]
    actual_logits = runner.head_outputs(image.numpy())
    for name, e, a in zip(("class_logits", "mask_logits"), expected_logits, actual_logits):
        assert a.shape == tuple(e.shape), name
        difference = np.abs(a - e.numpy()).max()
        assert difference <= LOGITS_TOLERANCE, f"{name} differs by {difference:.2e}"

    class_logits, mask_logits = actual_logits[0][0], actual_logits[1][0]
    expected = _pytorch_inference(model, class_logits, mask_logits)
    assert_same_results(expected, inference_results(class_logits, mask_logits, *size,
                                                    runner.settings))


def test_exported_logits_are_the_models_own(exported):
    """The logits compared above are those MaskFormer.forward infers from (an image to pad)."""
    model, _, images = exported
    image, logits = images[OTHER_SIZES[1]]
    with torch.no_grad():
        expected = model([{"image": image}])[0]
    actual = _pytorch_inference(model, *(x[0].numpy() for x in logits))
    assert_same_results(expected, as_numpy(actual))


def test_graphs_are_made_of_standard_operators(exported):
    """No op of this package's native library: MSDeformAttn is GridSample, opset 18."""
    import onnx

    _, runners, _ = exported
    graph = onnx.load(runners["onnx"].path, load_external_data=False)
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 18)]
    op_types = {node.op_type for node in graph.graph.node}
    assert "GridSample" in op_types
    # Freshly loaded: the module the runner holds, once the tests above have run it, shows its
    # submodules as calls in inlined_graph, not their operators (seen, cause not pinned down).
    torchscript = str(torch.jit.load(runners["torchscript"].path).inlined_graph)
    assert "mask2former::" not in torchscript
    assert "aten::grid_sampler" in torchscript


def test_onnx_batch_equals_single_images(exported):
    _, runners, _ = exported
    images = np.stack([_image(EXPORT_SIZE, seed).numpy() for seed in (1, 2)])
    class_logits, mask_logits = runners["onnx"].head_outputs(images)
    for i, image in enumerate(images):
        single = runners["onnx"].head_outputs(image)
        assert np.abs(class_logits[i] - single[0][0]).max() <= LOGITS_TOLERANCE
        assert np.abs(mask_logits[i] - single[1][0]).max() <= LOGITS_TOLERANCE


def test_torch_export_based_onnx_exporter(tmp_path):
    """The other ONNX exporter (--onnx-exporter dynamo) gives a graph of the same size freedom."""
    from small_model import small_config

    cfg = small_config(test_dataset="")
    cfg.DATASETS.TEST = ()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg).eval()
    info = build_deploy_info(cfg, model, "onnx", EXPORT_SIZE)
    path = export_model(model, _image(EXPORT_SIZE, 0), "onnx", str(tmp_path), info,
                        onnx_exporter="dynamo")
    runner = ExportedMask2Former(path)
    for size, batch in ((EXPORT_SIZE, 1), (OTHER_SIZES[1], 2)):
        images = torch.stack([_well_conditioned_image(model, size)[0]] * batch)
        with torch.no_grad():
            expected = ExportableMaskFormer(model)(images.float())
        for e, a in zip(expected, runner.head_outputs(images.numpy())):
            assert a.shape == tuple(e.shape)
            assert np.abs(a - e.numpy()).max() <= LOGITS_TOLERANCE
