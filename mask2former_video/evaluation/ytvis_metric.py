"""
The YouTube-VIS metric: video AP and AR over spatio-temporal mask IoU, computed as the official
evaluation does (the COCO protocol with tracks in place of masks).

* IoU of a predicted track d and a ground-truth track g of one video: the intersections summed
  over the frames divided by the unions summed over the frames (a frame where only one of the two
  has a mask adds that mask's area to the union). Crowd ground truths are ignored regions, with
  the same IoU (unlike COCO, which divides by d's area alone for them).
* Per video and category, predictions are matched greedily by descending score to the unmatched
  ground truth of highest IoU >= the threshold, at IoU 0.50:0.05:0.95; precision is interpolated
  at 101 recall points; AP is the mean over thresholds, recall points and categories.
* Area ranges use a track's mean area over the frames where it has a mask: small < 128^2,
  medium 128^2..256^2, large > 256^2 (in pixels of the original video). Detections per video:
  1, 10, 100.

Tracks are dicts with "video_id", "category_id", "segmentations" (one compressed RLE or None per
frame), and "score" (predictions) or "iscrowd" (ground truth, optional).
"""
from collections import OrderedDict, defaultdict

import numpy as np
from pycocotools import mask as mask_util

__all__ = ["track_iou", "evaluate_tracks", "SUMMARY_KEYS"]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = (1, 10, 100)
AREA_RANGES = OrderedDict(
    all=(0, 1e5**2), small=(0, 128**2), medium=(128**2, 256**2), large=(256**2, 1e5**2)
)
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


def _areas(track):
    """(T,) float64 mask area of each frame (0 where None)."""
    return np.array([mask_util.area(s) if s else 0 for s in track["segmentations"]], np.float64)


def mean_area(track):
    """Mean area over the frames where the track has a non-empty mask (0 if none)."""
    areas = _areas(track)
    present = areas[areas > 0]
    return float(present.mean()) if len(present) else 0.0


def track_iou(detections, ground_truths):
    """
    Spatio-temporal IoU of every detection with every ground-truth track of one video.

    Returns:
        (D, G) float64 array.
    """
    num_dt, num_gt = len(detections), len(ground_truths)
    if num_dt == 0 or num_gt == 0:
        return np.zeros((num_dt, num_gt))
    length = len(ground_truths[0]["segmentations"])
    for track in list(detections) + list(ground_truths):
        if len(track["segmentations"]) != length:
            raise ValueError(
                f"Video {track['video_id']}: a track has {len(track['segmentations'])} frames, "
                f"the ground truth {length}; predictions need a segmentation (or None) per frame"
            )
    dt_area = np.stack([_areas(d) for d in detections])  # (D, T)
    gt_area = np.stack([_areas(g) for g in ground_truths])  # (G, T)
    intersection = np.zeros((num_dt, num_gt))
    for t in range(length):
        dt_idx = np.nonzero(dt_area[:, t])[0]
        gt_idx = np.nonzero(gt_area[:, t])[0]
        if len(dt_idx) == 0 or len(gt_idx) == 0:
            continue
        iou = mask_util.iou([detections[i]["segmentations"][t] for i in dt_idx],
                            [ground_truths[j]["segmentations"][t] for j in gt_idx],
                            [0] * len(gt_idx))
        iou = np.asarray(iou, np.float64).reshape(len(dt_idx), len(gt_idx))
        # I = IoU * (a + b) / (1 + IoU), exact once rounded (areas are integers).
        pair_area = dt_area[dt_idx, t][:, None] + gt_area[gt_idx, t][None, :]
        intersection[np.ix_(dt_idx, gt_idx)] += np.round(iou * pair_area / (1 + iou))
    union = dt_area.sum(1)[:, None] + gt_area.sum(1)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(union), where=union > 0)


def _match(ious, gt_ignore, gt_crowd, dt_area_out, threshold):
    """
    COCO greedy matching of detections (sorted by score) to ground truths (sorted with the
    ignored ones last) at one IoU threshold.

    Returns:
        dt_matched (D,) bool, dt_ignored (D,) bool, gt_matched (G,) bool.
    """
    num_dt, num_gt = ious.shape
    gt_matched = np.zeros(num_gt, bool)
    dt_matched = np.zeros(num_dt, bool)
    dt_ignored = np.zeros(num_dt, bool)
    for d in range(num_dt):
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for g in range(num_gt):
            if gt_matched[g] and not gt_crowd[g]:
                continue
            if best > -1 and not gt_ignore[best] and gt_ignore[g]:
                break  # ignored ground truths come last: a real match is kept
            if ious[d, g] < best_iou:
                continue
            best, best_iou = g, ious[d, g]
        if best == -1:
            dt_ignored[d] = dt_area_out[d]
            continue
        dt_matched[d] = True
        dt_ignored[d] = gt_ignore[best]
        gt_matched[best] = True
    return dt_matched, dt_ignored, gt_matched


def _match_video(g_tracks, d_tracks, ious, low, high):
    """
    Matches of the (score-sorted) detections of one video and category at every IoU threshold,
    with the ground truths whose mean area is outside [low, high] (and crowds) ignored.

    Returns:
        (number of non-ignored ground truths, (D,) scores, (thresholds, D) matched,
        (thresholds, D) ignored).
    """
    g_area = np.array([mean_area(g) for g in g_tracks])
    g_crowd = np.array([bool(g.get("iscrowd", 0)) for g in g_tracks], dtype=bool)
    g_ignore = g_crowd | (g_area < low) | (g_area > high)
    order = np.argsort(g_ignore, kind="mergesort")
    d_area = np.array([mean_area(d) for d in d_tracks])
    d_out = (d_area < low) | (d_area > high)
    ious = ious[:, order]
    per_threshold = [_match(ious, g_ignore[order], g_crowd[order], d_out, thr)[:2]
                     for thr in IOU_THRESHOLDS]
    matched = np.array([p[0] for p in per_threshold], dtype=bool).reshape(len(IOU_THRESHOLDS), -1)
    ignored = np.array([p[1] for p in per_threshold], dtype=bool).reshape(len(IOU_THRESHOLDS), -1)
    scores = np.array([d["score"] for d in d_tracks], dtype=np.float64)
    return int((~g_ignore).sum()), scores, matched, ignored


def evaluate_tracks(ground_truths, predictions, category_ids, video_ids):
    """
    Args:
        ground_truths (list[dict]): ground-truth tracks of all evaluated videos.
        predictions (list[dict]): predicted tracks; those of other videos are not counted.
        category_ids (list[int]): the categories to evaluate (AP is their mean).
        video_ids (list[int]): the evaluated videos (all of the dataset, also those without
            ground-truth tracks, where every prediction is a false positive).

    Returns:
        OrderedDict: ``SUMMARY_KEYS`` in percent (NaN where no ground truth qualifies).
    """
    gts, dts = defaultdict(list), defaultdict(list)
    for g in ground_truths:
        gts[g["video_id"], g["category_id"]].append(g)
    known = set(video_ids)
    for d in predictions:
        if d["video_id"] in known:
            dts[d["video_id"], d["category_id"]].append(d)

    num_t, num_r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    shape = (num_t, num_r, len(category_ids), len(AREA_RANGES), len(MAX_DETECTIONS))
    precision = -np.ones(shape)
    recall = -np.ones((num_t,) + shape[2:])
    for k, category in enumerate(category_ids):
        per_video = []
        for video in video_ids:
            g_tracks = gts.get((video, category), [])
            d_tracks = sorted(dts.get((video, category), []), key=lambda d: -d["score"])
            d_tracks = d_tracks[: MAX_DETECTIONS[-1]]
            if g_tracks or d_tracks:
                per_video.append((g_tracks, d_tracks, track_iou(d_tracks, g_tracks)))
        for a, (low, high) in enumerate(AREA_RANGES.values()):
            videos = [_match_video(g, d, ious, low, high) for g, d, ious in per_video]
            num_positive = sum(v[0] for v in videos)
            if num_positive == 0:
                continue
            for m, max_dets in enumerate(MAX_DETECTIONS):
                scores = np.concatenate([v[1][:max_dets] for v in videos])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([v[2][:, :max_dets] for v in videos], axis=1)[:, order]
                ignored = np.concatenate([v[3][:, :max_dets] for v in videos], axis=1)[:, order]
                tps = np.cumsum(matched & ~ignored, axis=1).astype(float)
                fps = np.cumsum(~matched & ~ignored, axis=1).astype(float)
                for t in range(num_t):
                    tp, fp = tps[t], fps[t]
                    rc = tp / num_positive
                    pr = tp / (fp + tp + np.spacing(1))
                    recall[t, k, a, m] = rc[-1] if len(tp) else 0
                    pr = np.maximum.accumulate(pr[::-1])[::-1]
                    inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
                    values = np.zeros(num_r)
                    valid = inds < len(pr)
                    values[valid] = pr[inds[valid]]
                    precision[t, :, k, a, m] = values
    return _summarize(precision, recall)


def _mean(values):
    values = values[values > -1]
    return float(values.mean() * 100) if values.size else float("nan")


def _summarize(precision, recall):
    """The COCO summary numbers from (T, R, K, A, M) precision and (T, K, A, M) recall."""
    last = len(MAX_DETECTIONS) - 1
    areas = list(AREA_RANGES)
    thr = {0.5: 0, 0.75: 5}
    return OrderedDict(
        AP=_mean(precision[:, :, :, 0, last]),
        AP50=_mean(precision[thr[0.5], :, :, 0, last]),
        AP75=_mean(precision[thr[0.75], :, :, 0, last]),
        APs=_mean(precision[:, :, :, areas.index("small"), last]),
        APm=_mean(precision[:, :, :, areas.index("medium"), last]),
        APl=_mean(precision[:, :, :, areas.index("large"), last]),
        AR1=_mean(recall[:, :, 0, 0]),
        AR10=_mean(recall[:, :, 0, 1]),
        AR100=_mean(recall[:, :, 0, last]),
    )
