"""Trace-friendly versions of the inference pieces that do not export.

Three things on Mask DINO's inference path keep ``torch.onnx.export`` from
producing a correct, shape-generic graph:

1. Deformable attention. The project's CPU path
   (:mod:`..layers.msda`) is one ``F.embedding_bag`` call, which ONNX has
   no operator for (the exporter emits a slow ``Loop``), and mmcv's op has
   no symbolic at all. :class:`ExportMultiScaleDeformableAttention` writes
   the same bilinear sampling as ONNX ``Gather`` + ``MatMul`` (see
   :func:`deformable_sample`).
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
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from ..layers.msda import FastMultiScaleDeformableAttention
from ..utils.box_ops import masks_to_boxes

# The value maps get 1 zero row/column before and 2 after, as in
# layers/msda.py: positions are clamped to [-1, size], so the top-left
# corner is in [-1, size] and its right/bottom neighbour at most size + 1.
_PAD_BEFORE, _PAD_AFTER = 1, 2

#: ``table_mode`` of :class:`ExportMultiScaleDeformableAttention`.
TABLE_MODES = ('corners', 'blocks')


def level_shapes(maps: List[Tensor]) -> Tensor:
    """(h, w) of every map as a (L, 2) int64 tensor.

    Under tracing ``x.shape[i]`` is a 0-dim tensor recorded as a ``Shape``
    op, so the result follows the input size of the exported graph; in
    eager mode it is an ordinary tensor.

    Args:
        maps (list[Tensor]): L maps of shape (B, C, h_l, w_l).

    Returns:
        Tensor: (L, 2) int64.
    """
    return torch.stack([
        torch.stack([torch.as_tensor(m.shape[-2]),
                     torch.as_tensor(m.shape[-1])]) for m in maps
    ]).long()


def level_start_index(spatial_shapes: Tensor) -> Tensor:
    """First token of every level, (L, ) int64, from (L, 2) sizes."""
    return torch.cat((spatial_shapes.new_zeros(
        (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))


def _per_point(per_level: Tensor, num_points: int) -> Tensor:
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


def gen_proposals(memory: Tensor,
                  spatial_shapes: Tensor) -> Tuple[Tensor, Tensor]:
    """:meth:`MaskDINOHead.gen_proposals` with tensor level sizes.

    Args:
        memory (Tensor): (B, sum HW, D) in decoder level order.
        spatial_shapes (Tensor): (L, 2) int64.

    Returns:
        tuple: masked memory (B, sum HW, D), proposal logits (B, sum HW, 4).
    """
    proposals = []
    for lvl in range(spatial_shapes.shape[0]):
        h, w = spatial_shapes[lvl, 0], spatial_shapes[lvl, 1]
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


def _corner_positions(loc: Tensor,
                      size: Tensor) -> Tuple[Tensor, Tensor]:
    """Fractional part and floor of the clamped pixel position.

    ``grid_sample``'s arithmetic (``align_corners=False``) as in
    :func:`..utils.point_ops.grid_sample_positions`; ONNX has no fused
    multiply-add, so the last rounding can differ by one ulp.

    Args:
        loc (Tensor): (..., L * P) normalised coordinates.
        size (Tensor): (L * P, ) float map size along the axis.

    Returns:
        tuple: fraction and floor, both (..., L * P) float.
    """
    pos = (2 * loc - 1 + 1) * (size / 2) - 0.5
    pos = torch.minimum(torch.clamp(pos, min=-1.0), size)
    corner = pos.floor()
    return pos - corner, corner


def _value_table(value: Tensor, spatial_shapes: Tensor,
                 blocks: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """Zero-padded value maps of all levels as one row table.

    Args:
        value (Tensor): (B, sum HW, heads, C).
        spatial_shapes (Tensor): (L, 2) int64.
        blocks (bool): One row per 2x2 pixel block (4C channels: the
            corners (y0, x0), (y0, x1), (y1, x0), (y1, x1)) instead of one
            per pixel (C channels). Gathering one block row per sampling
            point instead of four pixel rows is ~1.7x faster in ONNX
            Runtime for the encoder (as many queries as keys), at the cost
            of building a 4x larger table (not worth it for 300 queries).

    Returns:
        tuple: table (B * rows * heads, C or 4C), the first row of every
        level (L, ) and the padded row width of every level (L, ), per
        batch image and in units of table rows / heads.
    """
    bs, _, num_heads, dims = value.shape
    tables, widths, counts = [], [], []
    starts = level_start_index(spatial_shapes)
    for lvl in range(spatial_shapes.shape[0]):
        h, w = spatial_shapes[lvl, 0], spatial_shapes[lvl, 1]
        level = value[:, starts[lvl]:starts[lvl] + h * w]
        level = F.pad(
            level.reshape(bs, h, w, num_heads * dims),
            (0, 0, _PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER))
        if blocks:
            level = level.view(bs, h + 3, w + 3, num_heads, dims)
            pairs = torch.cat([level[:, :, :-1], level[:, :, 1:]], -1)
            level = torch.cat([pairs[:, :-1], pairs[:, 1:]], -1)
            widths.append(w + 2)
            counts.append((h + 2) * (w + 2))
        else:
            widths.append(w + 3)
            counts.append((h + 3) * (w + 3))
        channels = 4 * dims if blocks else dims
        tables.append(level.reshape(bs, -1, num_heads, channels))
    table = torch.cat(tables, 1)
    counts = torch.stack(counts)
    first = torch.cat((counts.new_zeros((1, )), counts.cumsum(0)[:-1]))
    return table.reshape(-1, table.shape[-1]), first, torch.stack(widths)


def deformable_sample(value: Tensor, spatial_shapes: Tensor, loc_x: Tensor,
                      loc_y: Tensor, attention_weights: Tensor,
                      blocks: bool) -> Tensor:
    """Multi-scale deformable attention as ``Gather`` + ``MatMul``.

    Same result as :func:`..layers.msda._deformable_sum` (bilinear,
    ``align_corners=False``, zeros outside the maps) within float rounding:
    every (query, head) output row is the sum of the ``4 * L * P`` corner
    rows of the padded value table weighted by ``attention weight *
    bilinear weight``, here one batched (1 x 4LP) @ (4LP x C) product.

    Args:
        value (Tensor): (B, sum HW, heads, C) projected values.
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
    frac_x, x0 = _corner_positions(loc_x, _per_point(sizes[:, 1], num_points))
    frac_y, y0 = _corner_positions(loc_y, _per_point(sizes[:, 0], num_points))
    width = _per_point(widths, num_points)
    # Table row of the top-left corner (padded coordinates), per image.
    row = (y0.long() + _PAD_BEFORE) * width + (x0.long() + _PAD_BEFORE) + \
        _per_point(first, num_points)
    rows_per_image = table.shape[0] // (bs * num_heads)
    image = torch.arange(bs).view(bs, 1, 1, 1) * rows_per_image
    head = torch.arange(num_heads).view(1, 1, num_heads, 1)
    index = (row + image) * num_heads + head  # (B, Q, heads, LP)

    weight_y0 = (1 - frac_y) * attention_weights
    weight_y1 = frac_y * attention_weights
    weight_x0 = 1 - frac_x
    weight = torch.stack([
        weight_y0 * weight_x0, weight_y0 * frac_x, weight_y1 * weight_x0,
        weight_y1 * frac_x
    ], -1)  # (B, Q, heads, LP, 4), the corner order of the block rows
    if not blocks:
        step = width.view(1, 1, 1, -1) * num_heads
        index = torch.stack(
            [index, index + num_heads, index + step, index + step +
             num_heads], -1)
    corners = table[index.reshape(-1)].view(-1, 4 * num_samples, dims)
    output = torch.matmul(weight.view(-1, 1, 4 * num_samples), corners)
    return output.view(bs, num_queries, num_heads, dims)


class ExportMultiScaleDeformableAttention(FastMultiScaleDeformableAttention):
    """Deformable attention for ONNX export (inference only).

    Same parameters and result as :class:`FastMultiScaleDeformableAttention`
    (values projected first, then :func:`deformable_sample`);
    ``spatial_shapes`` must be a (L, 2) tensor, ideally from
    :func:`level_shapes` so that the graph follows the input size.
    ``table_mode`` is ``'blocks'`` for the encoder (as many queries as
    keys) and ``'corners'`` for the decoder's cross-attention; the export
    context sets it, per module, by where the module sits.
    """

    table_mode = 'corners'

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
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        bs, num_query, _ = query.shape
        offsets = self.sampling_offsets(query).view(bs, num_query,
                                                    self.num_heads,
                                                    self.num_levels,
                                                    self.num_points, 2)
        attention_weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads,
            self.num_levels * self.num_points).softmax(-1)
        loc_x, loc_y = self._sampling_locations(reference_points, offsets,
                                                spatial_shapes)
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, value.shape[1], self.num_heads, -1)
        output = deformable_sample(value, spatial_shapes, loc_x, loc_y,
                                   attention_weights,
                                   self.table_mode == 'blocks')
        output = self.output_proj(output.flatten(2))
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity
