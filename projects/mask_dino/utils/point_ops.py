"""Point sampling of selected rows of a mask stack."""
import torch
from torch import Tensor


def point_sample_rows(masks: Tensor, rows: Tensor, points: Tensor) -> Tensor:
    """``point_sample(masks[rows].float()[:, None], points)[:, 0]`` without
    building ``masks[rows]``.

    The criterion samples the full-resolution ground-truth mask of every
    matched pair for every prediction set (21 sets, with denoising pairs
    repeating the same ground truths); indexing and casting the rows first
    copies ``len(rows) * H * W`` values each time. Here only the 4 bilinear
    corners of every point are read, with ``grid_sample``'s conventions
    (``align_corners=False``, zeros outside the map).

    Args:
        masks (Tensor): Mask stack of any dtype, shape (G, H, W).
        rows (Tensor): Row of ``masks`` of every output row, shape (M, ).
        points (Tensor): Normalised (x, y) points in [0, 1], shape (M, P, 2).

    Returns:
        Tensor: Bilinearly sampled values, shape (M, P), dtype of
        ``points``.
    """
    num_masks, height, width = masks.shape
    if len(rows) != points.shape[0]:
        raise ValueError(f'{len(rows)} rows for {points.shape[0]} point sets')
    flat = masks.reshape(num_masks, height * width)
    x = points[..., 0] * width - 0.5
    y = points[..., 1] * height - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    rows = rows[:, None]
    out = points.new_zeros(points.shape[:2])
    for dx, wx in ((0, 1 - fx), (1, fx)):
        xi = x0 + dx
        x_ok = (xi >= 0) & (xi < width)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            yi = y0 + dy
            ok = x_ok & (yi >= 0) & (yi < height)
            index = yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)
            values = flat[rows, index].to(points.dtype)
            out += values * (wx * wy * ok)
    return out
