"""Bilinear point sampling with ``grid_sample``'s conventions."""
from typing import Sequence, Tuple

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


def border_masks(masks: Tensor) -> Tensor:
    """A zero border around every mask for :func:`sample_bordered_rows`.

    1 before and 2 after each axis: the clamped floor of a point lies in
    [-1, size] and its far corner at size + 1, so every bilinear corner is
    a valid index that reads 0 outside the map, as ``grid_sample``'s zero
    padding, without per-corner bounds masks.

    Args:
        masks (Tensor): (G, H, W) of any dtype.

    Returns:
        Tensor: (G, H + 3, W + 3).
    """
    return F.pad(masks, (1, 2, 1, 2))


def sample_bordered_rows(bordered: Tensor, rows: Tensor,
                         points: Tensor) -> Tensor:
    """Bilinear values of rows of a :func:`border_masks` stack.

    Args:
        bordered (Tensor): (G, H + 3, W + 3) bordered masks.
        rows (Tensor): Row of ``bordered`` of every output row, (M, ).
        points (Tensor): Normalised (x, y) points in [0, 1] of the
            unbordered (H, W) maps, (M, P, 2).

    Returns:
        Tensor: (M, P) values, dtype of ``points``.
    """
    if len(rows) != points.shape[0]:
        raise ValueError(f'{len(rows)} rows for {points.shape[0]} point sets')
    height, width = bordered.shape[1] - 3, bordered.shape[2] - 3
    stride = width + 3
    # sizes filled on the device: new_tensor would copy them from the host
    fx, x0 = grid_sample_positions(points[..., 0], points.new_full((), width))
    fy, y0 = grid_sample_positions(points[..., 1], points.new_full((), height))
    # flat index of the top-left corner of every point, (M, P)
    index = (y0.long() + 1) * stride + (x0.long() + 1) + (
        rows * bordered[0].numel())[:, None]
    flat = bordered.reshape(-1)
    wx0, wy0 = 1 - fx, 1 - fy
    # corners (x0, y0), (x0, y0 + 1), (x0 + 1, y0), (x0 + 1, y0 + 1)
    out = None
    for offset, weight in ((0, wx0 * wy0), (stride, wx0 * fy),
                           (1, fx * wy0), (stride + 1, fx * fy)):
        term = flat[index + offset if offset else index].to(
            points.dtype) * weight
        out = term if out is None else out + term
    return out


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
    return sample_bordered_rows(border_masks(masks), rows, points)


class BatchMasks:
    """The ground-truth masks of a batch, bordered once for point sampling.

    The criterion samples them for the matching of every image and for
    every chunk of mask losses. Bordered once per iteration, and as one
    stack when all images share the mask size (the padded batch size of
    mmdet's data preprocessor), so that a chunk with pairs of several
    images is one gather.

    Args:
        masks (Sequence[Tensor]): Per image (G_b, H_b, W_b) masks.
    """

    def __init__(self, masks: Sequence[Tensor]) -> None:
        if len({tuple(m.shape[1:]) for m in masks}) == 1:
            self.stacks = [border_masks(torch.cat(list(masks)))]
            starts = [0]
            for m in masks[:-1]:
                starts.append(starts[-1] + len(m))
            self.places = [(0, start) for start in starts]
        else:
            self.stacks = [border_masks(m) for m in masks]
            self.places = [(b, 0) for b in range(len(masks))]
        self.num_gts = [len(m) for m in masks]

    def sample_image(self, img_id: int, points: Tensor) -> Tensor:
        """All GT masks of one image at the same points.

        Args:
            img_id (int): Image index.
            points (Tensor): (P, 2) normalised (x, y) points.

        Returns:
            Tensor: (G_b, P) values, dtype of ``points``.
        """
        stack, start = self.places[img_id]
        num_gts = self.num_gts[img_id]
        rows = torch.arange(start, start + num_gts, device=points.device)
        return sample_bordered_rows(self.stacks[stack], rows,
                                    points[None].expand(num_gts, -1, -1))

    def sample(self, blocks: Sequence[Tuple[int, Tensor]],
               points: Tensor) -> Tensor:
        """GT mask values at the points of consecutive row blocks.

        Args:
            blocks (Sequence[tuple[int, Tensor]]): (image index, GT indices
                (M_i, )) of each block of rows.
            points (Tensor): (M, P, 2) normalised (x, y) points, M the sum
                of the M_i.

        Returns:
            Tensor: (M, P) values, dtype of ``points``.
        """
        rows = [gt_inds + self.places[b][1] if self.places[b][1] else gt_inds
                for b, gt_inds in blocks]
        if len(self.stacks) == 1:
            return sample_bordered_rows(self.stacks[0], torch.cat(rows),
                                        points)
        coords = points.split([len(r) for r in rows])
        values = [
            sample_bordered_rows(self.stacks[self.places[b][0]], r, c)
            for (b, _), r, c in zip(blocks, rows, coords)
        ]
        return torch.cat(values)
