"""End to end: a small Mask2Former overfits two synthetic images, then segments them."""
import logging
import time

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from small_model import small_config

logger = logging.getLogger(__name__)

SIZE = 64
RED, BLUE, GRAY = (220.0, 40.0, 40.0), (40.0, 40.0, 220.0), (90.0, 90.0, 90.0)
BOX, DISK, BACKGROUND = 0, 1, 2  # contiguous classes: red boxes and blue disks are things
DATASET = "mask2former_test_overfit"
ITERATIONS = 80


def synthetic_image(shapes):
    """
    A gray image with shapes painted in order (later ones occlude earlier ones).

    Args:
        shapes: list of (class, center x, center y, radius) in pixels; boxes are red squares,
            disks blue.

    Returns:
        dict: a training input for MaskFormer, one segment per shape plus the background.
    """
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    image = torch.tensor(GRAY)[:, None, None].repeat(1, SIZE, SIZE)
    masks, classes = [], []
    for cls, cx, cy, r in shapes:
        if cls == BOX:
            mask = ((xx - cx).abs() <= r) & ((yy - cy).abs() <= r)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        image[:, mask] = torch.tensor(RED if cls == BOX else BLUE)[:, None]
        masks = [m & ~mask for m in masks] + [mask]
        classes.append(cls)
    masks.append(~torch.stack(masks).any(0))
    classes.append(BACKGROUND)
    instances = Instances((SIZE, SIZE))
    instances.gt_classes = torch.tensor(classes)
    instances.gt_masks = BitMasks(torch.stack(masks))
    return {"image": image, "instances": instances}


@pytest.fixture
def one_thread():
    """Tensors this small gain nothing from intra-op threads, which only spin on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_small_model_overfits_two_images(one_thread):
    MetadataCatalog.get(DATASET).set(thing_dataset_id_to_contiguous_id={10: BOX, 20: DISK})
    cfg = small_config(num_classes=3, num_queries=8, dec_layers=4, test_dataset=DATASET)
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.8
    cfg.MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD = 0.8
    data = [
        synthetic_image([(BOX, 19, 19, 10), (DISK, 42, 38, 13)]),
        synthetic_image([(DISK, 19, 45, 11), (BOX, 45, 19, 8), (BOX, 48, 48, 6)]),
    ]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, fused=True)

    start = time.perf_counter()
    history = []
    for _ in range(ITERATIONS):
        losses = model(data)
        assert len(losses) == 3 * 4  # (ce, mask, dice) x DEC_LAYERS predictions
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append(loss.item())
    fall = 1 - sum(history[-10:]) / 10 / history[0]
    logger.info("loss %.2f -> %.2f (fall %.1f%%) in %d iterations, %.1f s", history[0],
                sum(history[-10:]) / 10, 100 * fall, ITERATIONS, time.perf_counter() - start)
    assert fall > 0.8, history

    model.eval()
    with torch.no_grad():
        results = model([{"image": d["image"]} for d in data])
    for example, result in zip(data, results):
        gt_masks = example["instances"].gt_masks.tensor
        gt_classes = example["instances"].gt_classes.tolist()
        panoptic_seg, segments_info = result["panoptic_seg"]
        assert sorted(s["category_id"] for s in segments_info) == sorted(gt_classes)
        for gt_mask, gt_class in zip(gt_masks, gt_classes):
            segments = [panoptic_seg == s["id"] for s in segments_info
                        if s["category_id"] == gt_class]
            ious = [(seg & gt_mask).sum() / (seg | gt_mask).sum() for seg in segments]
            assert max(ious) > 0.9

        semantic_gt = sum(c * m.long() for c, m in zip(gt_classes, gt_masks))
        accuracy = (result["sem_seg"].argmax(0) == semantic_gt).float().mean()
        assert accuracy > 0.95

        instances = result["instances"]
        top = instances.scores.argsort(descending=True)[: len(gt_classes) - 1]
        assert sorted(instances.pred_classes[top].tolist()) == sorted(gt_classes[:-1])
