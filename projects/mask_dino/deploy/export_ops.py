"""Trace-friendly versions of the inference pieces that do not export.

Three things on Mask DINO's inference path keep ``torch.onnx.export`` from
producing a correct, shape-generic graph:

1. Deformable attention. The project's CPU path
   (:mod:`..layers.msda`) is one ``F.embedding_bag`` call, which ONNX has
   no operator for (the exporter emits a slow ``Loop``), and mmcv's op has
   no symbolic at all. :class:`ExportMultiScaleDeformableAttention` runs
   the module's own attention with the weighted sum written as ONNX
   ``Gather`` + ``MatMul`` (:func:`deformable_sample`); the sampling
   arithmetic (corner rows, bilinear weights) is the PyTorch path's.
2. Level sizes that pass through Python lists (``spatial_shapes.tolist()``,
   ``torch.as_tensor(shapes)``, ``new_tensor([w, h, w, h])``): a tracer
   freezes them, so a dynamic-shape export would keep the sizes of the
   example input. The functions here take the sizes from a ``(L, 2)``
   tensor built from the feature maps' shapes, which the tracer records as
   ``Shape`` ops.
3. Nothing else: the rest of the head (query selection, decoder, shared
   heads) is called unchanged through the export wrapper.

Every function computes the same values as the module it replaces (same
formulas, same order of floating-point operations where it matters); the
tests compare them in eager mode and after export.
"""
from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor, nn

from ..layers.msda import (_PAD_AFTER, _PAD_BEFORE,
                           FastMultiScaleDeformableAttention, corner_entries,
                           corner_index, corner_weights)
from ..layers.pixel_decoder import level_start_index
from ..utils.box_ops import masks_to_boxes

#: ``table_mode`` of :class:`ExportMultiScaleDeformableAttention`.
TABLE_MODES = ('corners', 'blocks')


def level_shapes(sizes: Sequence[Tuple]) -> Tensor:
    """(h, w) of every level as a (L, 2) int64 tensor.

    Under tracing ``x.shape[i]`` is a 0-dim tensor recorded as a ``Shape``
    op, so the result follows the input size of the exported graph; in
    eager mode the sizes are ints.

    Args:
        sizes (Sequence[tuple]): L pairs (h_l, w_l), e.g. ``x.shape[-2:]``
            of every level's map.

    Returns:
        Tensor: (L, 2) int64.
    """
    return torch.stack([
        torch.stack([torch.as_tensor(h), torch.as_tensor(w)])
        for h, w in sizes
    ]).long()


def _repeat_per_point(per_level: Tensor, num_points: int) -> Tensor:
    """(L, ) per-level values -> (L * P, ), each repeated P times."""
    return per_level.view(-1, 1).expand(-1, num_points).reshape(-1)


def encoder_reference_points(spatial_shapes: Tensor,
                             batch_size: int) -> Tensor:
    """Pixel-centre reference points of the deformable encoder.

    Same values as mmdet's
    ``DeformableDetrTransformerEncoder.get_encoder_reference_points`` with
    all valid ratios 1 (Mask DINO uses no padding masks):
    ``linspace(0.5, h - 0.5, h) / h`` is exactly ``(arange(h) + 0.5) / h``.

    Args:
        spatial_shapes (Tensor): (L, 2) int64 (h, w) of every level.
        batch_size (int): B.

    Returns:
        Tensor: (B, sum h*w, L, 2) normalised (x, y).
    """
    refs = []
    for lvl in range(spatial_shapes.shape[0]):
        h, w = spatial_shapes[lvl, 0], spatial_shapes[lvl, 1]
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing='ij')
        refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), -1))
    refs = torch.cat(refs, 0)
    num_levels = spatial_shapes.shape[0]
    return refs[None, :, None].expand(batch_size, -1, num_levels, -1)


def gen_proposals(memory: Tensor, level_shapes: Sequence[Tuple[Tensor, Tensor]]
                  ) -> Tuple[Tensor, Tensor]:
    """:meth:`MaskDINOHead.gen_proposals` with traced level sizes.

    Args:
        memory (Tensor): (B, sum HW, D) in decoder level order.
        level_shapes (Sequence[tuple]): (h, w) of every level; under
            tracing, ``x.shape[i]`` values, which are 0-dim tensors
            recorded as ``Shape`` ops, so the grid follows the input size.

    Returns:
        tuple: masked memory (B, sum HW, D), proposal logits (B, sum HW, 4).
    """
    proposals = []
    for lvl, (h, w) in enumerate(level_shapes):
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
        wh = torch.full_like(grid_x, 0.05 * (2.0**lvl))
        proposals.append(
            torch.stack([grid_x, grid_y, wh, wh], -1).view(-1, 4))
    proposals = torch.cat(proposals, 0)[None]
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals))
    proposals = proposals.masked_fill(~valid, float('inf'))
    proposals = proposals.expand(memory.shape[0], -1, -1)
    memory = memory.masked_fill(~valid, 0.0)
    return memory, proposals


def mask_enhanced_anchors(mask_preds: Tensor, box_type: str) -> Tensor:
    """:meth:`MaskDINOHead.mask_enhanced_anchors` with the normalising
    factor built from the traced mask size instead of a Python list.

    Args:
        mask_preds (Tensor): Interm mask logits (B, K, h, w).
        box_type (str): ``'mask2box'`` or ``'bitmask'``.

    Returns:
        Tensor: Anchor logits (B, K, 4).
    """
    boxes = masks_to_boxes(mask_preds > 0, mode=box_type)
    h = torch.as_tensor(mask_preds.shape[-2]).float()
    w = torch.as_tensor(mask_preds.shape[-1]).float()
    factor = torch.stack([w, h, w, h])
    return inverse_sigmoid(bbox_xyxy_to_cxcywh(boxes) / factor, eps=1e-5)


def _value_table(value: Tensor, spatial_shapes: Tensor,
                 blocks: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """Zero-padded value maps of all levels as one row table.

    The padding is the one of :mod:`..layers.msda` (``_PAD_BEFORE`` /
    ``_PAD_AFTER`` zero rows and columns around every map).

    Args:
        value (Tensor): (B, sum HW, table_heads, C).
        spatial_shapes (Tensor): (L, 2) int64.
        blocks (bool): One row per 2x2 pixel block (4C channels: the
            corners (y0, x0), (y0, x1), (y1, x0), (y1, x1)) instead of one
            per pixel (C channels). Gathering one block row per sampling
            point instead of four pixel rows is faster in ONNX Runtime for
            the encoder (as many queries as keys), at the cost of building
            a 4x larger table (not worth it for 300 queries).

    Returns:
        tuple: table (B, positions, table_heads, C or 4C), the first
        position (L, ) and the padded row width (L, ) of every level, in
        units of table positions (blocks or pixels).
    """
    bs, _, table_heads, dims = value.shape
    tables, widths, counts = [], [], []
    starts = level_start_index(spatial_shapes)
    pad = _PAD_BEFORE + _PAD_AFTER
    for lvl in range(spatial_shapes.shape[0]):
        h, w = spatial_shapes[lvl, 0], spatial_shapes[lvl, 1]
        level = value[:, starts[lvl]:starts[lvl] + h * w]
        level = F.pad(
            level.reshape(bs, h, w, table_heads * dims),
            (0, 0, _PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER))
        if blocks:
            # block (i, j) holds padded pixels (i..i+1, j..j+1)
            level = level.view(bs, h + pad, w + pad, table_heads, dims)
            pairs = torch.cat([level[:, :, :-1], level[:, :, 1:]], -1)
            level = torch.cat([pairs[:, :-1], pairs[:, 1:]], -1)
            widths.append(w + pad - 1)
            counts.append((h + pad - 1) * (w + pad - 1))
        else:
            widths.append(w + pad)
            counts.append((h + pad) * (w + pad))
        channels = 4 * dims if blocks else dims
        tables.append(level.reshape(bs, -1, table_heads, channels))
    counts = torch.stack(counts)
    first = torch.cat((counts.new_zeros((1, )), counts.cumsum(0)[:-1]))
    return torch.cat(tables, 1), first, torch.stack(widths)


def deformable_sample(value: Tensor, spatial_shapes: Tensor, loc_x: Tensor,
                      loc_y: Tensor, attention_weights: Tensor,
                      blocks: bool) -> Tensor:
    """Multi-scale deformable attention as ``Gather`` + ``MatMul``.

    The sampler of :meth:`FastMultiScaleDeformableAttention.attend` for
    export: the corner rows, bilinear fractions and weights are those of
    the PyTorch path (:func:`..layers.msda.corner_entries` and
    :func:`..layers.msda.corner_weights`); only the weighted sum differs:
    the ``4 * L * P`` corner rows of every (query, head) are gathered from
    the padded value table and summed by one batched (1 x 4LP) @ (4LP x C)
    product, where PyTorch uses ``embedding_bag``. Same result within
    float rounding (ONNX has no fused multiply-add).

    Args:
        value (Tensor): (B, sum HW, table_heads, C) values; table_heads is
            heads, or 1 for raw values shared by all heads.
        spatial_shapes (Tensor): (L, 2) int64.
        loc_x, loc_y (Tensor): (B, Q, heads, L * P) normalised coordinates.
        attention_weights (Tensor): (B, Q, heads, L * P) softmaxed.
        blocks (bool): Gather 2x2 blocks (see :func:`_value_table`).

    Returns:
        Tensor: (B, Q, heads, C).
    """
    bs, num_queries, num_heads, num_samples = loc_x.shape
    dims = value.shape[-1]
    num_points = num_samples // spatial_shapes.shape[0]
    table, first, widths = _value_table(value, spatial_shapes, blocks)
    sizes = spatial_shapes.float()
    top_left, step, frac_x, frac_y = corner_entries(
        loc_x, loc_y, _repeat_per_point(sizes[:, 1], num_points),
        _repeat_per_point(sizes[:, 0], num_points),
        _repeat_per_point(widths, num_points),
        _repeat_per_point(first, num_points), table.shape[:3])
    if blocks:
        # a block row holds the 4 corners of one point side by side
        index = top_left
        weight = corner_weights(frac_x, frac_y, attention_weights, dim=-1)
    else:
        index = corner_index(top_left, step, table.shape[2])
        weight = corner_weights(frac_x, frac_y, attention_weights)
    rows = table.reshape(-1, table.shape[-1])
    corners = rows[index.reshape(-1)].view(-1, 4 * num_samples, dims)
    output = torch.matmul(weight.reshape(-1, 1, 4 * num_samples), corners)
    return output.view(bs, num_queries, num_heads, dims)


class ExportMultiScaleDeformableAttention(nn.Module):
    """Deformable attention for ONNX export (inference only).

    Wraps a :class:`FastMultiScaleDeformableAttention` (its parameters, not
    copies) and runs its :meth:`~FastMultiScaleDeformableAttention.attend`
    with :func:`deformable_sample` as the sampler, so the projections,
    locations and weights are the module's own. ``spatial_shapes`` must be
    a (L, 2) tensor, ideally from :func:`level_shapes` so that the graph
    follows the input size.

    Args:
        attn (FastMultiScaleDeformableAttention): The module to export.
        table_mode (str): One of :data:`TABLE_MODES`: ``'blocks'`` for the
            encoder (as many queries as keys), ``'corners'`` for the
            decoder's cross-attention.
    """

    def __init__(self, attn: FastMultiScaleDeformableAttention,
                 table_mode: str) -> None:
        super().__init__()
        if table_mode not in TABLE_MODES:
            raise ValueError(f'table_mode must be one of {TABLE_MODES}, '
                             f'got {table_mode!r}')
        self.attn = attn
        self.table_mode = table_mode

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Arguments and result of ``MultiScaleDeformableAttention``."""
        sampler = partial(
            deformable_sample, blocks=self.table_mode == 'blocks')
        return self.attn.attend(query, query if value is None else value,
                                identity, query_pos, key_padding_mask,
                                reference_points, spatial_shapes, sampler)
