"""Bilinear point sampling with ``grid_sample``'s conventions."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def grid_sample_positions(loc: Tensor, size: Tensor) -> Tuple[Tensor, Tensor]:
    """Clamped pixel position and its floor along one axis.

    ``grid_sample``'s arithmetic (``align_corners=False``), including its
    fused multiply-add, so that points within rounding of a pixel centre
    fall into the same cell as with mmcv (the bilinear gradient jumps
    there): ``((2 loc - 1) + 1) * size / 2 - 0.5``. Beyond [-1, size] all
    corners are outside the map, so clamping there changes nothing.

    Args:
        loc (Tensor): (..., L * P) normalised coordinates.
        size (Tensor): Map size along the axis, broadcastable to ``loc``
            (e.g. (L * P, ) per-level sizes, or a 0-dim tensor).

    Returns:
        tuple: the fractional part (..., L * P) and the floor (float).
    """
    grid = 2 * loc - 1
    # Constants filled on the device: ``new_tensor`` would copy them from
    # the host, a stream sync on CUDA. One clamp with tensor bounds, not
    # ``minimum``, whose gradient is halved at ``pos == size``.
    pos = torch.addcmul(loc.new_full((), -0.5), grid + 1, size / 2)
    pos = torch.clamp(pos, min=loc.new_full((), -1.0), max=size)
    corner = pos.floor()
    return pos - corner, corner


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
    # A zero border (1 before, 2 after: the clamped floor lies in
    # [-1, size], its far corner at size + 1) makes every corner a valid
    # index that reads 0 outside the map, as grid_sample's zero padding,
    # without per-corner bounds masks.
    padded = F.pad(masks, (1, 2, 1, 2))
    stride = width + 3
    # sizes filled on the device: new_tensor would copy them from the host
    fx, x0 = grid_sample_positions(points[..., 0], points.new_full((), width))
    fy, y0 = grid_sample_positions(points[..., 1], points.new_full((), height))
    # flat index of the top-left corner of every point, (M, P)
    index = (y0.long() + 1) * stride + (x0.long() + 1) + (
        rows * padded[0].numel())[:, None]
    flat = padded.reshape(-1)
    wx0, wy0 = 1 - fx, 1 - fy
    # corners (x0, y0), (x0, y0 + 1), (x0 + 1, y0), (x0 + 1, y0 + 1)
    out = None
    for offset, weight in ((0, wx0 * wy0), (stride, wx0 * fy),
                           (1, fx * wy0), (stride + 1, fx * fy)):
        term = flat[index + offset if offset else index].to(
            points.dtype) * weight
        out = term if out is None else out + term
    return out
