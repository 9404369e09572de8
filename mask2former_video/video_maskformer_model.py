"""The video Mask2Former meta-architecture: frames -> backbone -> head over clips -> tracks."""
from typing import Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.structures import BitMasks, ImageList
from torch import nn

from mask2former.maskformer_model import MaskFormer

__all__ = ["VideoMaskFormer"]


@META_ARCH_REGISTRY.register()
class VideoMaskFormer(nn.Module):
    """
    Mask2Former for video instance segmentation (Cheng et al., "Mask2Former for Video Instance
    Segmentation", 2021): the frames of a clip go through the image backbone and pixel decoder
    as a batch of images; each query of the video decoder predicts a class and a mask in every
    frame, i.e. one track. Training matches the queries to the ground-truth tracks of each
    clip; inference returns the top-scoring (query, class) pairs of a whole video as tracks.

    Input, ``batched_inputs``: a list of dicts, one per clip (training) or video (inference),
    all with the same number of frames T, with
        * "image": list of T (C, H, W) uint8 or float tensors, channels in ``cfg.INPUT.FORMAT``
          order, after the mapper's resize (frames may differ in size; they are padded).
        * "height", "width" (optional): the size of the output masks, usually the video's
          original size; defaults to the first frame's (H, W).
        * "instances" (training only): list of T :class:`Instances`, one per frame, holding the
          same N tracks in the same order: "gt_ids" (N,) int64 track id, -1 where the track is
          not in the frame; "gt_classes" (N,) int64 contiguous class; "gt_masks" (N, H, W)
          :class:`BitMasks` or bool tensor, empty where the track is not in the frame. Tracks
          absent from all T frames are dropped.

    Output (inference): a list with a dict per video:
        * "image_size": (height, width);
        * "pred_scores": list of K floats, "pred_labels": list of K contiguous class ids;
        * "pred_masks": list of K bool tensors (T, height, width), one track each.

    Output (training): a dict of weighted scalar losses ("loss_ce", "loss_mask", "loss_dice",
    and those of the auxiliary predictions, suffixed "_0", "_1", ...).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        num_queries: int,
        metadata,
        size_divisibility: int,
        pixel_mean: Tuple[float],
        pixel_std: Tuple[float],
        num_frames: int,
        test_topk_per_video: int = 10,
    ):
        """
        Args:
            backbone: returns the multi-scale features of each frame.
            sem_seg_head: MaskFormerHead with a video decoder, called as
                ``sem_seg_head(features, num_frames=T)``.
            criterion: SetCriterion; its ``weight_dict`` weights the returned losses.
            num_queries: Q.
            metadata: dataset metadata (class names of the outputs).
            size_divisibility: pad the frames to a multiple of this; < 0: the backbone's.
            pixel_mean, pixel_std: per-channel normalization of the frames.
            num_frames: frames per training clip (INPUT.SAMPLING_FRAME_NUM).
            test_topk_per_video: tracks returned per video.
        """
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_queries = num_queries
        self.metadata = metadata
        self.size_divisibility = (
            size_divisibility if size_divisibility >= 0 else backbone.size_divisibility
        )
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.num_frames = num_frames
        self.test_topk_per_video = test_topk_per_video

    @classmethod
    def from_config(cls, cfg):
        # The image model's backbone, head (with the decoder the config names), matcher and
        # criterion: both accept clips.
        image_model = MaskFormer.from_config(cfg)
        shared = ("backbone", "sem_seg_head", "criterion", "num_queries", "metadata",
                  "size_divisibility", "pixel_mean", "pixel_std")
        return dict({k: image_model[k] for k in shared},
                    num_frames=cfg.INPUT.SAMPLING_FRAME_NUM)

    @property
    def device(self):
        return self.pixel_mean.device

    def forward(self, batched_inputs):
        """See the class docstring for the input and output formats."""
        num_frames = len(batched_inputs[0]["image"])
        if num_frames == 0 or any(len(x["image"]) != num_frames for x in batched_inputs):
            raise ValueError(
                "VideoMaskFormer: every clip of a batch needs the same number of frames (>= 1), "
                f"got {[len(x['image']) for x in batched_inputs]}"
            )
        frames = [frame.to(self.device) for x in batched_inputs for frame in x["image"]]
        frames = [(x - self.pixel_mean) / self.pixel_std for x in frames]
        images = ImageList.from_tensors(frames, self.size_divisibility)
        # Inference reads only the last prediction.
        outputs = self.sem_seg_head(
            self.backbone(images.tensor), num_frames=num_frames, return_aux_outputs=self.training
        )

        if self.training:
            targets = self.prepare_targets(batched_inputs, images.tensor.shape[-2:])
            losses = self.criterion(outputs, targets)
            weights = self.criterion.weight_dict
            return {k: v * weights[k] for k, v in losses.items() if k in weights}
        return [
            self.inference_video(
                outputs["pred_logits"][b], outputs["pred_masks"][b], images.tensor.shape[-2:],
                images.image_sizes[b * num_frames], x,
            )
            for b, x in enumerate(batched_inputs)
        ]

    def prepare_targets(self, batched_inputs, padded_size):
        """
        Returns:
            list[dict]: per clip, "labels": (N,) int64 and "masks": (N, T, Hp, Wp) bool, the
            tracks present in at least one frame, masks zero-padded to ``padded_size``.
        """
        targets = []
        for i, x in enumerate(batched_inputs):
            if "instances" not in x:
                raise ValueError(
                    f"VideoMaskFormer: training clip {i} has no 'instances'; use the video "
                    "dataset mapper (mask2former_video.data_video.YTVISDatasetMapper)"
                )
            frames = [f.to(self.device) for f in x["instances"]]
            num_tracks = len(frames[0])
            if any(len(f) != num_tracks for f in frames):
                raise ValueError(
                    f"VideoMaskFormer: the frames of training clip {i} hold different numbers of "
                    f"tracks {[len(f) for f in frames]}; every frame must list all tracks"
                )
            masks = torch.zeros(
                (num_tracks, len(frames)) + tuple(padded_size), dtype=torch.bool,
                device=self.device,
            )
            for t, frame in enumerate(frames):
                frame_masks = frame.gt_masks
                if isinstance(frame_masks, BitMasks):
                    frame_masks = frame_masks.tensor
                masks[:, t, : frame_masks.shape[1], : frame_masks.shape[2]] = frame_masks
            present = torch.stack([f.gt_ids != -1 for f in frames], dim=1).any(dim=1)
            targets.append({"labels": frames[0].gt_classes[present], "masks": masks[present]})
        return targets

    def inference_video(self, pred_logits, pred_masks, padded_size, image_size, video_input):
        """
        The top-scoring (query, class) pairs of one video as tracks.

        Args:
            pred_logits: (Q, K + 1) class logits.
            pred_masks: (Q, T, H/4, W/4) mask logits.
            padded_size: (Hp, Wp) of the padded frames.
            image_size: (H, W) of the frames before padding.
            video_input: the video's input dict ("height", "width" of the output).

        Returns:
            dict: "image_size", "pred_scores", "pred_labels", "pred_masks" (see the class
            docstring).
        """
        height = video_input.get("height", image_size[0])
        width = video_input.get("width", image_size[1])
        num_classes = pred_logits.shape[-1] - 1
        scores = F.softmax(pred_logits.float(), dim=-1)[:, :-1]  # (Q, K)
        k = min(self.test_topk_per_video, scores.numel())
        top_scores, top_index = scores.flatten().topk(k, sorted=True)
        labels = top_index % num_classes
        queries = torch.div(top_index, num_classes, rounding_mode="floor")
        masks = []
        for query in queries.tolist():  # one track at a time: bounded memory at full size
            track = F.interpolate(
                pred_masks[query][None].float(), size=tuple(padded_size), mode="bilinear",
                align_corners=False,
            )[:, :, : image_size[0], : image_size[1]]
            track = F.interpolate(track, size=(height, width), mode="bilinear",
                                  align_corners=False)
            masks.append(track[0] > 0)
        return {
            "image_size": (height, width),
            "pred_scores": top_scores.tolist(),
            "pred_labels": labels.tolist(),
            "pred_masks": masks,
        }
