"""Tight boxes of binary masks, for the mask-enhanced anchor init.

Mask DINO initialises the decoder anchors from the boxes of the binarised
intermediate masks with one of two conventions (``initialize_box_type``):

- ``'mask2box'``: x2/y2 are the last foreground column/row index
  (inclusive); an empty mask gives the inverted box (1e8, 1e8, 0, 0).
- ``'bitmask'``: x2/y2 are the last foreground column/row index + 1
  (exclusive, detectron2 ``BitMasks.get_bounding_boxes``); an empty mask
  gives (0, 0, 0, 0).

Both are reproduced exactly, corner cases included, because they decide
the initial anchors of a converted official checkpoint. ``'bitmask'`` equals
mmdet's ``mask2bbox``; that one loops over the masks in Python with a host
synchronisation per mask and takes (N, h, w) only, while these run as a few
batched reductions on any leading shape (the anchor init boxes B x 300
masks per step).
"""
from typing import Tuple

import torch
from torch import Tensor

from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmdet.structures.bbox.bbox_overlaps import fp16_clamp

#: Coordinate that ``mask2box`` puts in x1/y1 of an empty mask.
MASK2BOX_EMPTY_MIN = 1e8

MASK_TO_BOX_MODES = ('mask2box', 'bitmask')


def _foreground_extent(masks: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """First and last foreground index along x and y.

    Args:
        masks (Tensor): Binary masks, shape (..., h, w).

    Returns:
        tuple[Tensor]:

        - first (Tensor): (x_first, y_first), shape (..., 2), long.
        - last (Tensor): (x_last, y_last), shape (..., 2), long.
        - empty (Tensor): Whether a mask has no foreground, shape (...).
    """
    if masks.dim() < 2:
        raise ValueError('masks must have shape (..., h, w), but got '
                         f'{tuple(masks.shape)}')
    masks = masks != 0
    h, w = masks.shape[-2:]
    col_any = masks.any(dim=-2)  # (..., w)
    row_any = masks.any(dim=-1)  # (..., h)
    firsts, lasts = [], []
    for any_fg, size in ((col_any, w), (row_any, h)):
        index = torch.arange(size, device=masks.device)
        # Background positions get a value that never wins min/max.
        firsts.append(torch.where(any_fg, index, size).amin(dim=-1))
        lasts.append(torch.where(any_fg, index, -1).amax(dim=-1))
    empty = ~col_any.any(dim=-1)
    return torch.stack(firsts, -1), torch.stack(lasts, -1), empty


def masks_to_boxes_mask2box(masks: Tensor) -> Tensor:
    """Tight boxes with inclusive x2/y2 (the official ``mask2box``).

    Args:
        masks (Tensor): Binary masks (non-zero = foreground), shape
            (..., h, w), e.g. (N, h, w) or (B, Q, h, w).

    Returns:
        Tensor: Float32 (x1, y1, x2, y2) with x2/y2 the last foreground
        column/row index, shape (..., 4). Empty masks give
        (1e8, 1e8, 0, 0).
    """
    first, last, empty = _foreground_extent(masks)
    first = first.float().masked_fill(empty[..., None], MASK2BOX_EMPTY_MIN)
    last = last.float().masked_fill(empty[..., None], 0.)
    return torch.cat([first, last], dim=-1)


def masks_to_boxes_bitmask(masks: Tensor) -> Tensor:
    """Tight boxes with exclusive x2/y2 (the official ``bitmask``).

    Args:
        masks (Tensor): Binary masks (non-zero = foreground), shape
            (..., h, w), e.g. (N, h, w) or (B, Q, h, w).

    Returns:
        Tensor: Float32 (x1, y1, x2, y2) with x2/y2 the last foreground
        column/row index + 1, shape (..., 4). Empty masks give (0, 0, 0, 0).
    """
    first, last, empty = _foreground_extent(masks)
    boxes = torch.cat([first, last + 1], dim=-1).float()
    return boxes.masked_fill(empty[..., None], 0.)


def masks_to_boxes(masks: Tensor, mode: str = 'mask2box') -> Tensor:
    """Tight boxes of binary masks with the convention ``mode``.

    Args:
        masks (Tensor): Binary masks, shape (..., h, w).
        mode (str): ``'mask2box'`` (inclusive x2/y2) or ``'bitmask'``
            (exclusive x2/y2). Defaults to ``'mask2box'``.

    Returns:
        Tensor: Float32 (x1, y1, x2, y2), shape (..., 4).
    """
    if mode == 'mask2box':
        return masks_to_boxes_mask2box(masks)
    if mode == 'bitmask':
        return masks_to_boxes_bitmask(masks)
    raise ValueError(
        f'mode must be one of {MASK_TO_BOX_MODES}, but got {mode!r}')


def box_scale(like: Tensor, w: int, h: int) -> Tensor:
    """The factor (w, h, w, h) that normalises xyxy or cxcywh boxes.

    Filled on the device: ``like.new_tensor([w, h, w, h])`` would copy it
    from the host, which waits for the GPU (a stream sync) on every call.

    Args:
        like (Tensor): Tensor whose dtype and device the factor takes.
        w (int): Image (or mask) width.
        h (int): Image (or mask) height.

    Returns:
        Tensor: (w, h, w, h), shape (4, ).
    """
    scale = like.new_full((4, ), w)
    scale[1::2].fill_(h)
    return scale


def box_overlaps(bboxes1: Tensor,
                 bboxes2: Tensor,
                 mode: str = 'iou',
                 is_aligned: bool = False,
                 eps: float = 1e-6,
                 eps_mode: str = 'floor') -> Tensor:
    """IoU, IoF or GIoU of xyxy boxes without a host-to-device copy.

    The values of mmdet's ``bbox_overlaps`` (same arithmetic, same order),
    except that the ``eps`` floor is ``clamp(min=eps)`` instead of
    ``torch.max`` with ``new_tensor([eps])``, a host copy that waits for the
    GPU on every call. The gradients differ only where an area equals
    ``eps`` exactly (``max`` halves it there, ``clamp`` passes it).

    Args:
        bboxes1 (Tensor): (..., M, 4) xyxy boxes.
        bboxes2 (Tensor): (..., N, 4) xyxy boxes, the same leading shape
            (N == M if ``is_aligned``).
        mode (str): ``'iou'``, ``'iof'`` (over ``bboxes1``) or ``'giou'``.
            Defaults to ``'iou'``.
        is_aligned (bool): Compare row i with row i only. Defaults to False.
        eps (float): Floor of the union and enclosing areas. Defaults to
            1e-6.
        eps_mode (str): ``'floor'`` (mmdet: ``clamp(min=eps)`` of the
            divisors) or ``'add'`` (DETR's ``box_ops`` and the official
            Mask DINO: ``overlap / (union + eps)`` and ``(enclose - union)
            / (enclose + eps)`` with the raw areas). Defaults to 'floor'.

    Returns:
        Tensor: (..., M, N), or (..., M) if ``is_aligned``.
    """
    if mode not in ('iou', 'iof', 'giou'):
        raise ValueError(f'mode must be iou, iof or giou, got {mode!r}')
    if eps_mode not in ('floor', 'add'):
        raise ValueError(f'eps_mode must be floor or add, got {eps_mode!r}')
    for name, boxes in (('bboxes1', bboxes1), ('bboxes2', bboxes2)):
        if boxes.dim() < 2 or boxes.size(-1) != 4:
            raise ValueError(
                f'{name} must be (..., n, 4), got {tuple(boxes.shape)}')
    if bboxes1.shape[:-2] != bboxes2.shape[:-2] or (
            is_aligned and bboxes1.size(-2) != bboxes2.size(-2)):
        raise ValueError('bboxes1 and bboxes2 do not match: '
                         f'{tuple(bboxes1.shape)} and {tuple(bboxes2.shape)}')
    if not is_aligned:
        # pairs by broadcasting: (..., M, 1, 4) against (..., 1, N, 4)
        bboxes1, bboxes2 = bboxes1[..., :, None, :], bboxes2[..., None, :, :]
    area1 = (bboxes1[..., 2] - bboxes1[..., 0]) * (
        bboxes1[..., 3] - bboxes1[..., 1])
    area2 = (bboxes2[..., 2] - bboxes2[..., 0]) * (
        bboxes2[..., 3] - bboxes2[..., 1])
    lt = torch.max(bboxes1[..., :2], bboxes2[..., :2])
    rb = torch.min(bboxes1[..., 2:], bboxes2[..., 2:])
    wh = fp16_clamp(rb - lt, min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - overlap if mode != 'iof' else area1
    if eps_mode == 'floor':
        union = union.clamp(min=eps)
        ious = overlap / union
    else:
        ious = overlap / (union + eps)
    if mode != 'giou':
        return ious
    enclosed_lt = torch.min(bboxes1[..., :2], bboxes2[..., :2])
    enclosed_rb = torch.max(bboxes1[..., 2:], bboxes2[..., 2:])
    enclose_wh = fp16_clamp(enclosed_rb - enclosed_lt, min=0)
    enclose_area = enclose_wh[..., 0] * enclose_wh[..., 1]
    if eps_mode == 'floor':
        enclose_area = enclose_area.clamp(min=eps)
        return ious - (enclose_area - union) / enclose_area
    return ious - (enclose_area - union) / (enclose_area + eps)


def mask_boxes_to_anchor_logits(boxes_xyxy: Tensor, h: int, w: int) -> Tensor:
    """Convert mask boxes to unsigmoided normalised (cx, cy, w, h) anchors.

    The boxes are normalised by the mask size (w, h, w, h), clamped to
    [0, 1] and passed through ``inverse_sigmoid`` with eps 1e-5. An empty
    ``mask2box`` box (1e8, 1e8, 0, 0) thus gives centre logits
    log(1 / 1e-5) ~ +11.51 and size logits ~ -11.51.

    Args:
        boxes_xyxy (Tensor): Boxes (x1, y1, x2, y2) in mask pixels, shape
            (..., 4).
        h (int): Height of the masks the boxes come from.
        w (int): Width of the masks the boxes come from.

    Returns:
        Tensor: Anchor logits (cx, cy, w, h), shape (..., 4).
    """
    boxes = bbox_xyxy_to_cxcywh(boxes_xyxy) / box_scale(boxes_xyxy, w, h)
    # inverse_sigmoid clamps its input to [0, 1] first.
    return inverse_sigmoid(boxes, eps=1e-5)
