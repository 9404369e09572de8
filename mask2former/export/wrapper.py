"""The part of a MaskFormer's inference that is exported: one traceable module."""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ExportableMaskFormer", "INPUT_NAMES", "OUTPUT_NAMES"]

INPUT_NAMES = ("image",)
OUTPUT_NAMES = ("class_logits", "mask_logits")


class ExportableMaskFormer(nn.Module):
    """
    A :class:`MaskFormer` (eval mode) from image pixels to the head outputs that its semantic,
    panoptic and instance inferences read, as one function of tensors that traces into a graph of
    standard operators (``torch.onnx.export``, ``torch.jit.trace``) which serves any image size.

    It computes what ``MaskFormer.forward`` computes before its post-processing: normalize with
    the model's pixel mean and std, zero-pad to a multiple of ``size_divisibility``, run backbone
    and head, upsample the mask logits to the padded size and crop them to the image.

    Input: ``image`` (B, 3, H, W), uint8 or float with 0-255 values, channels in the model's
    ``INPUT.FORMAT`` order; the B images of a batch share one size.

    Output: a tuple
        * ``class_logits`` (B, Q, K + 1): class logits of each query, the last one "no object";
        * ``mask_logits`` (B, Q, H, W): mask logits of each query at the image's resolution.
    """

    def __init__(self, model):
        """
        Args:
            model: a :class:`mask2former.MaskFormer`; its modules are shared, not copied.
        """
        super().__init__()
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head
        self.size_divisibility = model.size_divisibility
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), False)

    def forward(self, image):
        """See the class docstring."""
        height, width = image.shape[-2:]
        x = (image.float() - self.pixel_mean) / self.pixel_std
        divisor = max(self.size_divisibility, 1)
        x = F.pad(x, (0, (divisor - width % divisor) % divisor,
                      0, (divisor - height % divisor) % divisor))
        outputs = self.sem_seg_head(self.backbone(x), return_aux_outputs=False)
        mask_logits = F.interpolate(
            outputs["pred_masks"], size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        # Cropped by gathering rows and columns, not by slicing: torch.export checks whether a
        # slice is contiguous, which would tie the graph to whether the example needed padding.
        rows = torch.arange(height, device=mask_logits.device)
        columns = torch.arange(width, device=mask_logits.device)
        return outputs["pred_logits"], mask_logits.index_select(2, rows).index_select(3, columns)
