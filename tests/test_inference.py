"""MaskFormer inference of a small random-weight model: all three tasks, at the output size."""
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes

from PIL import Image

from mask2former.evaluation import SemSegEvaluator
from small_model import small_config

NUM_CLASSES = 4
THING_IDS = {7: 0, 9: 1}  # dataset id -> contiguous id; contiguous 2, 3 are stuff
DATASET = "mask2former_test_inference"


@pytest.fixture(scope="module")
def model():
    MetadataCatalog.get(DATASET).set(thing_dataset_id_to_contiguous_id=THING_IDS)
    cfg = small_config(num_classes=NUM_CLASSES, num_queries=8, test_dataset=DATASET)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.0
    cfg.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 10
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_buffers_and_state_dict(model):
    keys = list(model.state_dict())
    assert keys[-1] == "criterion.empty_weight"
    assert model.criterion.empty_weight.shape == (NUM_CLASSES + 1,)
    assert not any(k.startswith("pixel_") for k in keys)
    assert model.thing_classes == {0, 1}


def test_all_tasks_at_the_output_size(model):
    generator = torch.Generator().manual_seed(0)
    inputs = [
        # not a multiple of 32, output size = input size
        {"image": torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=generator)},
        # resized by the mapper: output at the original (different) size
        {"image": torch.randint(0, 256, (3, 64, 45), generator=generator).float(),
         "height": 91, "width": 60},
    ]
    with torch.no_grad():
        results = model(inputs)
    assert len(results) == 2
    for result, (height, width) in zip(results, [(50, 70), (91, 60)]):
        sem_seg = result["sem_seg"]
        assert sem_seg.shape == (NUM_CLASSES, height, width)
        assert torch.isfinite(sem_seg).all() and (sem_seg >= 0).all()

        panoptic_seg, segments_info = result["panoptic_seg"]
        assert panoptic_seg.shape == (height, width) and panoptic_seg.dtype == torch.int32
        # (an untrained model may find no segment; test_overfit checks a trained one's)
        ids = [s["id"] for s in segments_info]
        assert ids == list(range(1, len(ids) + 1))
        assert set(panoptic_seg.unique().tolist()) - {0} == set(ids)
        for s in segments_info:
            assert 0 <= s["category_id"] < NUM_CLASSES
            assert s["isthing"] == (s["category_id"] in THING_IDS.values())

        instances = result["instances"]
        assert instances.image_size == (height, width)
        n = len(instances)
        assert 0 < n <= 10
        assert instances.pred_masks.shape == (n, height, width)
        assert instances.pred_masks.dtype == torch.bool
        assert isinstance(instances.pred_boxes, Boxes)
        assert instances.pred_boxes.tensor.shape == (n, 4)
        assert instances.scores.shape == (n,)
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
        assert set(instances.pred_classes.tolist()) <= set(THING_IDS.values())
        boxes = instances.pred_boxes.tensor
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()


def test_semantic_only_model_postprocesses_after_inference(model):
    """Semantic inference at the padded size then resized equals the per-task function."""
    generator = torch.Generator().manual_seed(1)
    inputs = [{"image": torch.randint(0, 256, (3, 40, 52), dtype=torch.uint8, generator=generator),
               "height": 30, "width": 39}]
    semantic_only = build_model_like(model, panoptic_on=False, instance_on=False)
    with torch.no_grad():
        result = semantic_only(inputs)[0]
        both = model(inputs)[0]
    assert set(result) == {"sem_seg"}
    assert result["sem_seg"].shape == (NUM_CLASSES, 30, 39)
    # Resizing before or after the (pixel-wise) inference gives close results.
    torch.testing.assert_close(result["sem_seg"], both["sem_seg"], atol=0.05, rtol=0)


def test_label_map_and_fast_mode_outputs(model, tmp_path):
    generator = torch.Generator().manual_seed(2)
    inputs = [{"image": torch.randint(0, 256, (3, 64, 45), dtype=torch.uint8, generator=generator),
               "height": 91, "width": 60, "file_name": str(tmp_path / "image.png")}]
    with torch.no_grad():
        scores = model(inputs)[0]
        labels = build_model_like(model, semantic_output="labels")(inputs)[0]
        fast = build_model_like(model, postprocess_at_network_resolution=True)(inputs)[0]
    assert "sem_seg" not in labels and labels["sem_seg_labels"].shape == (91, 60)
    assert (labels["sem_seg_labels"] == scores["sem_seg"].argmax(0)).float().mean() > 0.999
    assert fast["sem_seg"].shape == (NUM_CLASSES, 91, 60)
    assert fast["panoptic_seg"][0].shape == (91, 60)
    assert fast["instances"].pred_masks.shape[1:] == (91, 60)

    # The semantic evaluator reads the label map: the same confusion matrix as from the scores.
    gt = torch.randint(0, NUM_CLASSES, (91, 60), generator=generator).numpy().astype("uint8")
    Image.fromarray(gt).save(tmp_path / "gt.png")
    name = "mask2former_test_label_map"
    DatasetCatalog.register(name, lambda: [{"file_name": inputs[0]["file_name"],
                                            "sem_seg_file_name": str(tmp_path / "gt.png")}])
    MetadataCatalog.get(name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=255)
    matrices = []
    for output in (scores, {"sem_seg_labels": scores["sem_seg"].argmax(0)}):
        evaluator = SemSegEvaluator(name, distributed=False)
        evaluator.reset()
        evaluator.process(inputs, [output])
        matrices.append(evaluator._conf_matrix)
    assert matrices[0].sum() == 91 * 60 and (matrices[0] == matrices[1]).all()


def build_model_like(model, **changes):
    args = dict(
        backbone=model.backbone, sem_seg_head=model.sem_seg_head, criterion=model.criterion,
        num_queries=model.num_queries, object_mask_threshold=model.object_mask_threshold,
        overlap_threshold=model.overlap_threshold, metadata=model.metadata,
        size_divisibility=model.size_divisibility,
        sem_seg_postprocess_before_inference=False,
        pixel_mean=model.pixel_mean.flatten().tolist(),
        pixel_std=model.pixel_std.flatten().tolist(),
        semantic_on=True, panoptic_on=True, instance_on=True,
        test_topk_per_image=model.test_topk_per_image,
    )
    args.update(changes)
    return type(model)(**args).eval()


def test_instances_alone_are_things_only(model):
    """
    Instance inference without panoptic inference (the demo's ``--task instance`` turns the
    others off) keeps only thing classes, as with it; on a dataset without thing metadata it
    keeps every class (for this input and these random weights, stuff classes among them).
    """
    generator = torch.Generator().manual_seed(4)
    inputs = [{"image": torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8, generator=generator)}]
    instance_only = build_model_like(model, semantic_on=False, panoptic_on=False)
    any_class = build_model_like(model, semantic_on=False, panoptic_on=False,
                                 metadata=MetadataCatalog.get("mask2former_test_no_things"))
    with torch.no_grad():
        classes = instance_only(inputs)[0]["instances"].pred_classes.tolist()
        any_classes = any_class(inputs)[0]["instances"].pred_classes.tolist()
    assert classes and set(classes) <= set(THING_IDS.values())
    assert set(any_classes) & {2, 3}


def test_panoptic_needs_thing_metadata(model):
    with pytest.raises(ValueError, match="thing_dataset_id_to_contiguous_id"):
        build_model_like(model, metadata=MetadataCatalog.get("mask2former_test_no_things"))


def test_training_needs_instances(model):
    model.train()
    try:
        with pytest.raises(ValueError, match="instances"):
            model([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8)}])
    finally:
        model.eval()
