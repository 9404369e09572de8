"""
Video Mask2Former's model: the 3-D position embedding against its formula, masked attention over
space and time, the matcher on clips against brute force, and a small model that overfits two
clips and then returns their tracks.
"""
import itertools
import logging
import math
import time

import pytest
import torch
import torch.nn.functional as F
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances
from test_overfit import one_thread  # noqa: F401  (fixture)
from video_helpers import small_video_config

from mask2former.modeling.criterion import SetCriterion
from mask2former_video.modeling import (
    PositionEmbeddingSine3D,
    VideoHungarianMatcher,
    VideoMultiScaleMaskedTransformerDecoder,
)

logger = logging.getLogger(__name__)


def test_3d_position_embedding_matches_its_formula():
    npf, frames, height, width = 6, 3, 4, 5
    pos = PositionEmbeddingSine3D(npf, normalize=True)(torch.zeros(2, frames, 7, height, width))
    assert pos.shape == (2, frames, 2 * npf, height, width)
    eps, scale = 1e-6, 2 * math.pi

    def sine(value, i, dims):
        angle = value / 10000 ** (2 * (i // 2) / dims)
        return math.sin(angle) if i % 2 == 0 else math.cos(angle)

    for t in range(frames):
        for y in range(height):
            for x in range(width):
                ty = (y + 1) / (height + eps) * scale
                tx = (x + 1) / (width + eps) * scale
                tt = (t + 1) / (frames + eps) * scale
                expected = [sine(ty, i, npf) for i in range(npf)]
                expected += [sine(tx, i, npf) for i in range(npf)]
                expected = [e + sine(tt, i, 2 * npf) for i, e in enumerate(expected)]
                torch.testing.assert_close(pos[1, t, :, y, x], torch.tensor(expected),
                                           atol=1e-5, rtol=0)


HIDDEN, HEADS, QUERIES, FRAMES = 32, 4, 4, 3
LEVEL_SIZES = [(4, 4), (8, 8), (16, 16)]
MASK_SIZE = (32, 32)


def small_video_decoder():
    torch.manual_seed(0)
    return VideoMultiScaleMaskedTransformerDecoder(
        in_channels=HIDDEN, num_classes=5, hidden_dim=HIDDEN, num_queries=QUERIES, nheads=HEADS,
        dim_feedforward=64, dec_layers=3, pre_norm=False, mask_dim=HIDDEN,
        enforce_input_project=False,
    ).eval()


def designed_mask_features(decoder, targets):
    """(T, C, H, W) mask features whose first prediction is ``targets`` (Q, T, H, W) logits."""
    with torch.no_grad():
        embed = decoder.mask_embed(decoder.decoder_norm(decoder.query_feat.weight))  # (Q, C)
    features = torch.einsum("cq,qthw->tchw", torch.linalg.pinv(embed), targets)
    with torch.no_grad():
        first = decoder.forward_prediction_heads(decoder.query_feat.weight[None], features[None])
    torch.testing.assert_close(first["pred_masks"][0], targets, atol=1e-3, rtol=0)
    return features.contiguous()


def first_layer_output(decoder, features, mask_features):
    """Queries after the first cross-attention layer (which reads level 0, 1/32)."""
    captured = {}
    layer = decoder.transformer_cross_attention_layers[0]
    handle = layer.register_forward_hook(lambda m, a, o: captured.setdefault("out", o))
    with torch.no_grad():
        decoder(features, mask_features, num_frames=FRAMES)
    handle.remove()
    return captured["out"][0]  # (Q, C)


def test_masked_attention_over_space_and_time():
    """
    A query attends to the features of its predicted mask in every frame, and to nothing in
    the frames where its mask is empty; only a query empty in all frames attends everywhere.
    """
    decoder = small_video_decoder()
    height, width = MASK_SIZE
    targets = torch.full((QUERIES, FRAMES, height, width), -4.0)
    targets[0, 1, :, : width // 2] = 4.0  # query 0: left half of frame 1 only
    targets[2, 0] = 4.0  # query 2: all of frame 0 only
    targets[3, :, : height // 2] = 4.0  # query 3: top half of every frame; query 1: empty
    mask_features = designed_mask_features(decoder, targets)
    generator = torch.Generator().manual_seed(1)
    features = [torch.randn(FRAMES, HIDDEN, h, w, generator=generator) for h, w in LEVEL_SIZES]
    base = first_layer_output(decoder, features, mask_features)

    def change(frames, rows=slice(None), columns=slice(None)):
        changed = [f.clone() for f in features]
        for t in frames:
            changed[0][t, :, rows, columns] += 3 * torch.randn(HIDDEN, 4, 4)[:, rows, columns]
        return (first_layer_output(decoder, changed, mask_features) - base).abs().amax(-1)

    # Frames 0 and 2 and the right half of frame 1 lie outside query 0's mask.
    outside_query_0 = change([0, 2]) + change([1], columns=slice(2, 4))
    assert outside_query_0[0] < 1e-5
    assert outside_query_0[1] > 1e-3  # empty everywhere: attends everywhere
    assert change([1], columns=slice(0, 2))[0] > 1e-3  # inside its mask
    # Query 2 sees frame 0 only; query 3 sees the top half of every frame.
    assert change([1, 2])[2] < 1e-5 and change([0])[2] > 1e-3
    assert change([0, 1, 2], rows=slice(2, 4))[3] < 1e-5
    assert change([2], rows=slice(0, 2))[3] > 1e-3


def reference_clip_cost(logits, masks, labels, gt_masks, coords, weights):
    """(Q, N) cost of clips written out: per frame point values, concatenated over frames."""
    w_class, w_mask, w_dice = weights
    grid = (2 * coords - 1).view(1, 1, -1, 2)

    def read(maps):  # (T, H, W) -> (T * P,)
        return torch.cat([F.grid_sample(m[None, None].float(), grid, align_corners=False)
                          .flatten() for m in maps])

    cost = torch.zeros(len(logits), len(labels))
    for i in range(len(logits)):
        for j in range(len(labels)):
            out, tgt = read(masks[i]), read(gt_masks[j])
            p = out.sigmoid()
            dice = 1 - (2 * (p * tgt).sum() + 1) / (p.sum() + tgt.sum() + 1)
            bce = F.binary_cross_entropy_with_logits(out, tgt)
            cost[i, j] = (-w_class * logits[i].softmax(-1)[labels[j]] + w_mask * bce
                          + w_dice * dice)
    return cost


@pytest.mark.parametrize("num_targets", [0, 1, 3, 4])
def test_video_matcher_equals_brute_force(num_targets):
    weights, points, queries, frames = (2.0, 5.0, 5.0), 30, 4, 3
    matcher = VideoHungarianMatcher(*weights, num_points=points)
    generator = torch.Generator().manual_seed(num_targets)
    for trial in range(4):
        logits = torch.randn(queries, 6, generator=generator) * 2
        masks = torch.randn(queries, frames, 8, 12, generator=generator) * 3
        labels = torch.randint(0, 5, (num_targets,), generator=generator)
        gt_masks = torch.rand(num_targets, frames, 16, 24, generator=generator) > 0.5
        gt_masks[:, 1] = False  # a frame where every track is absent
        torch.manual_seed(trial)
        (pred_idx, tgt_idx), = matcher({"pred_logits": logits[None], "pred_masks": masks[None]},
                                       [{"labels": labels, "masks": gt_masks}])
        torch.manual_seed(trial)
        cost = reference_clip_cost(logits, masks, labels, gt_masks, torch.rand(points, 2),
                                   weights)
        best = min(
            (sum(cost[q, n] for n, q in enumerate(perm))
             for perm in itertools.permutations(range(queries), num_targets)),
            default=0.0,
        )
        assert len(pred_idx) == num_targets
        total = sum(cost[q, n] for q, n in zip(pred_idx.tolist(), tgt_idx.tolist()))
        assert abs(float(total) - float(best)) < 1e-4


def test_clip_of_one_frame_has_the_image_losses():
    """The criterion on clips of one frame equals the image criterion (same random points)."""
    matcher = VideoHungarianMatcher(2.0, 5.0, 5.0, num_points=64)
    criterion = SetCriterion(3, matcher, {}, 0.1, ["labels", "masks"], 64, 3.0, 0.75)
    generator = torch.Generator().manual_seed(0)
    logits, masks = torch.randn(2, 5, 4, generator=generator), torch.randn(2, 5, 16, 16)
    targets = [{"labels": torch.tensor([0, 2]), "masks": torch.rand(2, 32, 32) > 0.5},
               {"labels": torch.tensor([1]), "masks": torch.rand(1, 32, 32) > 0.5}]
    torch.manual_seed(0)
    image = criterion({"pred_logits": logits, "pred_masks": masks}, targets)
    torch.manual_seed(0)
    clips = criterion({"pred_logits": logits, "pred_masks": masks[:, :, None]},
                      [{"labels": t["labels"], "masks": t["masks"][:, None]} for t in targets])
    assert image.keys() == clips.keys()
    for key in image:
        torch.testing.assert_close(clips[key], image[key])


SIZE, FRAMES_OVERFIT = 64, 3
BOX, DISK = 0, 1
DATASET = "mask2former_test_video_overfit"


def synthetic_clip(tracks):
    """
    A gray clip with red boxes / blue disks, later tracks drawn on top.

    Args:
        tracks: list of (class, radius, [(x, y) or None per frame]).

    Returns:
        a training input of VideoMaskFormer.
    """
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    images, frames = [], []
    for t in range(FRAMES_OVERFIT):
        image = torch.full((3, SIZE, SIZE), 90.0)
        masks = []
        for cls, radius, path in tracks:
            if path[t] is None:
                mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            else:
                x, y = path[t]
                mask = (((xx - x).abs() <= radius) & ((yy - y).abs() <= radius) if cls == BOX
                        else (xx - x) ** 2 + (yy - y) ** 2 <= radius**2)
            color = (220.0, 40.0, 40.0) if cls == BOX else (40.0, 40.0, 220.0)
            image[:, mask] = torch.tensor(color)[:, None]
            masks = [m & ~mask for m in masks] + [mask]
        instances = Instances((SIZE, SIZE))
        masks = torch.stack(masks)
        instances.gt_ids = torch.where(masks.flatten(1).any(1), torch.arange(len(tracks)), -1)
        instances.gt_classes = torch.tensor([cls for cls, _, _ in tracks])
        instances.gt_masks = BitMasks(masks)
        images.append(image)
        frames.append(instances)
    return {"image": images, "instances": frames, "height": SIZE, "width": SIZE}


def test_small_video_model_overfits_two_clips(one_thread):
    MetadataCatalog.get(DATASET).set(thing_classes=["box", "disk"])
    cfg = small_video_config(num_classes=2, num_queries=6, dec_layers=4,
                             num_frames=FRAMES_OVERFIT, test_dataset=DATASET)
    data = [
        synthetic_clip([(BOX, 9, [(18, 18), (24, 20), (30, 22)]),
                        (DISK, 11, [None, (50, 46), (44, 44)])]),  # the disk enters
        synthetic_clip([(DISK, 12, [(20, 44), (22, 42), (24, 40)]),
                        (BOX, 7, [(46, 18), (40, 24), (34, 30)])]),
    ]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    start, history = time.perf_counter(), []
    for _ in range(80):
        losses = model(data)
        assert len(losses) == 3 * 4
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history.append(loss.item())
    fall = 1 - sum(history[-10:]) / 10 / history[0]
    logger.info("video loss %.2f -> %.2f (fall %.1f%%), %.1f s", history[0],
                sum(history[-10:]) / 10, 100 * fall, time.perf_counter() - start)
    assert fall > 0.8, history

    model.eval()
    with torch.no_grad():
        results = model([{"image": d["image"], "height": 32, "width": 32} for d in data[:1]] +
                        [{"image": d["image"]} for d in data[1:]])
    for clip, result, size in zip(data, results, (32, SIZE)):
        assert result["image_size"] == (size, size)
        assert len(result["pred_masks"]) == 10  # the top 10 (query, class) pairs of 6 x 2
        gt = torch.stack([f.gt_masks.tensor for f in clip["instances"]], dim=1)  # (N, T, H, W)
        gt = F.interpolate(gt.float(), size=(size, size), mode="nearest") > 0.5
        classes = clip["instances"][0].gt_classes.tolist()
        top = len(classes)
        assert sorted(result["pred_labels"][:top]) == sorted(classes)
        for track, cls in zip(gt, classes):
            ious = [(m & track).sum() / (m | track).sum()
                    for m, label in zip(result["pred_masks"][:top], result["pred_labels"][:top])
                    if label == cls]
            assert max(ious) > 0.8


def test_image_checkpoint_loads_into_the_video_model_but_the_class_head(tmp_path):
    """As the published video models start from COCO (and the video main job from the image
    main job), an image model's checkpoint fills every video parameter but the class head."""
    from small_model import small_config

    from mask2former.checkpoint import MaskFormerCheckpointer

    image_cfg = small_config(num_classes=6, num_queries=6, dec_layers=2)
    torch.manual_seed(1)
    image_state = build_model(image_cfg).state_dict()
    torch.save({"model": image_state}, tmp_path / "image.pth")
    torch.manual_seed(2)
    video = build_model(small_video_config(num_classes=3, num_queries=6, dec_layers=2))
    MaskFormerCheckpointer(video).load(str(tmp_path / "image.pth"))
    skipped = {k for k, v in video.state_dict().items() if not torch.equal(v, image_state[k])}
    assert skipped == {"sem_seg_head.predictor.class_embed.weight",
                       "sem_seg_head.predictor.class_embed.bias", "criterion.empty_weight"}
