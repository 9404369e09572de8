"""
A binary mask as one polygon that pycocotools (Detectron2's polygon rasterizer) turns back into
the same mask, pixel for pixel.

The polygon runs along pixel edges: pixel (x, y) is the square [x, x+1] x [y, y+1], which
pycocotools fills exactly. Holes and separate parts are loops of the same polygon, joined by
bridges traversed once in each direction; pycocotools fills by crossing parity, so the bridges
cancel and the holes stay empty. (Tracing pixel centers, e.g. OpenCV's ``findContours``, loses
about half of each boundary pixel: 0.86 IoU on a 9-pixel-radius circle.)
"""
import numpy as np

__all__ = ["mask_to_polygon"]

# Directed pixel edges, clockwise around the pixel in image coordinates (y down): the edge on
# each side whose neighbour is background is part of the mask's boundary.
_SIDES = (  # (neighbour dy, dx), edge start (dx, dy), edge end (dx, dy)
    ((-1, 0), (0, 0), (1, 0)),  # top
    ((0, 1), (1, 0), (1, 1)),  # right
    ((1, 0), (1, 1), (0, 1)),  # bottom
    ((0, -1), (0, 1), (0, 0)),  # left
)


def _boundary_edges(mask):
    """{start vertex: [end vertices]} of the directed boundary edges of ``mask`` (H, W) bool."""
    padded = np.pad(mask, 1)
    edges = {}
    for (dy, dx), start, end in _SIDES:
        neighbour = padded[1 + dy: padded.shape[0] - 1 + dy, 1 + dx: padded.shape[1] - 1 + dx]
        ys, xs = np.nonzero(mask & ~neighbour)
        for x, y in zip(xs.tolist(), ys.tolist()):
            edges.setdefault((x + start[0], y + start[1]), []).append(
                (x + end[0], y + end[1]))
    return edges


def _loops(edges):
    """Closed vertex loops that use every directed edge once (corners only)."""
    loops = []
    while edges:
        first = next(iter(edges))
        loop, vertex = [first], first
        while True:
            ends = edges[vertex]
            nxt = ends.pop()
            if not ends:
                del edges[vertex]
            if nxt == first:
                break
            loop.append(nxt)
            vertex = nxt
        loops.append(_corners(loop))
    return loops


def _corners(loop):
    """The loop without its vertices that lie on a straight run."""
    kept = []
    for i, (x, y) in enumerate(loop):
        (px, py), (nx, ny) = loop[i - 1], loop[(i + 1) % len(loop)]
        if (x - px) * (ny - y) != (y - py) * (nx - x):
            kept.append((x, y))
    return kept


def mask_to_polygon(mask):
    """
    Args:
        mask: (H, W) bool or 0/1 array.

    Returns:
        list[float]: one polygon [x1, y1, x2, y2, ...] in pixel coordinates; empty for an
        empty mask. ``pycocotools.mask.frPyObjects([polygon], H, W)`` decodes to ``mask``.
    """
    loops = _loops(_boundary_edges(np.asarray(mask, dtype=bool)))
    if not loops:
        return []
    points = []
    for loop in loops:
        points += loop + [loop[0]]  # each loop closed at its first vertex, then a bridge on
    for loop in reversed(loops[:-1]):  # back along the bridges to the first loop's start
        points.append(loop[0])
    return [float(v) for point in points for v in point]
