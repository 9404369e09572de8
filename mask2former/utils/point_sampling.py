"""
Point sampling of PointRend (Kirillov et al., "PointRend: Image Segmentation as Rendering"):
read feature maps at continuous point coordinates, and choose points where a prediction is
uncertain. The matcher and the mask losses of Mask2Former compare masks on such points
instead of on every pixel.

Coordinates are normalized to [0, 1] x [0, 1] over the whole map, (x, y) order, so the same
points read a low-resolution prediction and a full-resolution target at the same place.
"""
import torch
import torch.nn.functional as F

__all__ = ["point_sample", "get_uncertain_point_coords_with_randomness"]


def point_sample(input, point_coords):
    """
    Bilinearly interpolate ``input`` at ``point_coords`` (``grid_sample``, align_corners=False,
    zero padding outside the map).

    Args:
        input (Tensor): (N, C, H, W) maps.
        point_coords (Tensor): (N, P, 2) point coordinates (x, y) in [0, 1] x [0, 1].

    Returns:
        Tensor: (N, C, P) values of the maps at the points.
    """
    if point_coords.dim() != 3 or point_coords.shape[-1] != 2:
        raise ValueError(
            f"point_sample expects point_coords of shape (N, P, 2), got {tuple(point_coords.shape)}"
        )
    grid = 2.0 * point_coords.to(input.dtype) - 1.0
    output = F.grid_sample(input, grid.unsqueeze(2), mode="bilinear", align_corners=False)
    return output.squeeze(3)


def get_uncertain_point_coords_with_randomness(
    coarse_logits, uncertainty_func, num_points, oversample_ratio, importance_sample_ratio
):
    """
    Choose points of each map where the prediction is most uncertain, plus random points.

    Draws ``k * num_points`` uniform random points (k = ``oversample_ratio``), keeps the
    ``beta * num_points`` with the highest uncertainty (beta = ``importance_sample_ratio``) and
    adds ``num_points - beta * num_points`` new uniform random points.

    Args:
        coarse_logits (Tensor): (N, C, H, W) predictions (C = 1 for class-agnostic masks).
        uncertainty_func (callable): maps point values (N, C, P) to uncertainties (N, 1, P),
            higher meaning more uncertain.
        num_points (int): P, the number of points returned per map.
        oversample_ratio (float): k >= 1.
        importance_sample_ratio (float): beta in [0, 1].

    Returns:
        Tensor: (N, P, 2) point coordinates (x, y) in [0, 1] x [0, 1].
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}"
        )
    num_maps = coarse_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    factory = dict(device=coarse_logits.device, dtype=coarse_logits.dtype)

    candidates = torch.rand(num_maps, num_sampled, 2, **factory)
    uncertainties = uncertainty_func(point_sample(coarse_logits, candidates))  # (N, 1, kP)
    idx = torch.topk(uncertainties[:, 0, :], k=num_uncertain, dim=1).indices  # (N, betaP)
    point_coords = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        random_coords = torch.rand(num_maps, num_random, 2, **factory)
        point_coords = torch.cat([point_coords, random_coords], dim=1)
    return point_coords
