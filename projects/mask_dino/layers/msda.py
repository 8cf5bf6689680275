"""A fast PyTorch fallback of multi-scale deformable attention.

mmcv has no CPU kernel for ``MultiScaleDeformableAttention``; its fallback
(``multi_scale_deformable_attn_pytorch``) calls ``grid_sample`` once per
level, stacks the sampled values into a (B * heads, C, Q, L * P) tensor and
weights it: per sample it writes and re-reads several times the size of the
output (profiled at 800x1333, 22k encoder tokens: ``grid_sample`` ~45 % of
the time, the stack and the weighted sum the rest).

Here the attention is written as what it is, a sparse weighted sum: every
(query, head) output row is the sum of ``L * P * 4`` value rows (4 bilinear
corners per sampling point), weighted by ``attention weight * bilinear
weight``. ``F.embedding_bag(mode='sum', per_sample_weights=...)`` computes
exactly that without any intermediate, and autograd differentiates it with
respect to the values and the weights (hence the locations and the
attention weights). Further:

- values are padded with a zero border, so corners outside a map read zeros
  (``grid_sample``'s ``padding_mode='zeros'``) without any masking;
- the point arithmetic is done on planar x / y tensors with per-level
  constants along the contiguous last dim (broadcasting over a 2-wide inner
  xy dim is several times slower on CPU), queries in blocks of bounded size;
- with few queries over many keys (decoder cross-attention: 300 queries,
  22k keys) the raw values are sampled and the samples projected, instead
  of projecting every key (``value_proj`` and sampling commute).

:class:`FastMultiScaleDeformableAttention` is mmcv's module with this path
on devices where mmcv has no kernel; with mmcv's CUDA/MLU kernel it runs
mmcv's own ``forward`` unchanged. Same results as mmcv's fallback within
float rounding (see ``tests/test_models/test_fast_paths.py``).
"""
from functools import partial
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.utils import IS_CUDA_AVAILABLE, IS_MLU_AVAILABLE
from torch import Tensor, nn

from ..utils.point_ops import grid_sample_positions

# Value maps get 1 zero row/column before and 2 after: sampling positions
# are clamped to [-1, size] (beyond that all four corners are outside the
# map and contribute zero), so corner ``floor(pos) + 1`` is at most size + 1.
_PAD_BEFORE, _PAD_AFTER = 1, 2
# Bag entries (4 per sampling point) handled at once: bounds the index and
# weight temporaries (~2 x 16 MB) so that they are reused, not page-faulted.
_BLOCK_ENTRIES = 2**22


def _pad_value_maps(value: Tensor,
                    shapes: List[List[int]]) -> Tuple[Tensor, List[int]]:
    """Zero-pad every level map and flatten them again.

    Args:
        value (Tensor): (B, sum HW, heads, C).
        shapes (list[list[int]]): (h, w) of every level.

    Returns:
        tuple: padded values (B, sum (h+3)(w+3), heads, C) and the start
        row of every padded level.
    """
    bs, _, num_heads, dims = value.shape
    pad = (0, 0, _PAD_BEFORE, _PAD_AFTER, _PAD_BEFORE, _PAD_AFTER)
    maps, starts, start = [], [], 0
    for level, (h, w) in zip(value.split([h * w for h, w in shapes], 1),
                             shapes):
        level = F.pad(level.reshape(bs, h, w, num_heads * dims), pad)
        maps.append(level.view(bs, -1, num_heads, dims))
        starts.append(start)
        start += level.shape[1] * level.shape[2]
    return torch.cat(maps, 1), starts


def _per_point(values: List[float], num_points: int,
               like: Tensor) -> Tensor:
    """A per-level constant repeated for every point: (L * P, )."""
    return like.new_tensor(values).repeat_interleave(num_points)


def _deformable_sum(value: Tensor, shapes: List[List[int]], loc_x: Tensor,
                    loc_y: Tensor, attention_weights: Tensor) -> Tensor:
    """Deformable attention from planar locations.

    All point tensors are (B, Q, heads, L * P) with the per-level constants
    broadcast along the contiguous last dim (broadcasting over a short
    inner dim such as xy is several times slower on CPU). Queries are
    processed in blocks of about ``_BLOCK_ENTRIES`` bag entries, so that
    the index and weight temporaries stay small and are reused.

    Args:
        value (Tensor): (B, num_keys, heads, C), or (B, num_keys, 1, C) for
            one value map shared by all heads.
        shapes (list[list[int]]): (h, w) of every level.
        loc_x, loc_y (Tensor): Normalised sampling coordinates.
        attention_weights (Tensor): Softmaxed weights.

    Returns:
        Tensor: (B, Q, heads, C).
    """
    num_keys = value.shape[1]
    if sum(h * w for h, w in shapes) != num_keys:
        raise ValueError(f'value has {num_keys} keys but '
                         f'value_spatial_shapes {shapes} cover '
                         f'{sum(h * w for h, w in shapes)}')
    table, starts = _pad_value_maps(value, shapes)
    bs, num_queries, num_heads, num_samples = loc_x.shape
    block = max(_BLOCK_ENTRIES // (bs * num_heads * num_samples * 4), 1)
    if block >= num_queries:
        return _sample_block(table, starts, shapes, loc_x, loc_y,
                             attention_weights)
    return torch.cat([
        _sample_block(table, starts, shapes, loc_x[:, i:i + block],
                      loc_y[:, i:i + block],
                      attention_weights[:, i:i + block])
        for i in range(0, num_queries, block)
    ], 1)


def _sample_block(table: Tensor, starts: List[int], shapes: List[List[int]],
                  loc_x: Tensor, loc_y: Tensor,
                  attention_weights: Tensor) -> Tensor:
    """:func:`_deformable_sum` of a block of queries, on the padded value
    table of :func:`_pad_value_maps`."""
    bs, num_rows, table_heads, dims = table.shape
    num_queries, num_heads, num_samples = loc_x.shape[1:]
    num_points = num_samples // len(shapes)

    frac_x, corner_x = grid_sample_positions(
        loc_x, _per_point([w for _, w in shapes], num_points, loc_x))
    frac_y, corner_y = grid_sample_positions(
        loc_y, _per_point([h for h, _ in shapes], num_points, loc_y))

    # Table row of the top-left corner, on exact float integers.
    widths = [w + _PAD_BEFORE + _PAD_AFTER for _, w in shapes]
    first = [s + _PAD_BEFORE * (wp + 1) for s, wp in zip(starts, widths)]
    row_dtype = torch.float32 if num_rows < 2**24 else torch.float64
    width = _per_point(widths, num_points, corner_x).to(row_dtype)
    row = torch.addcmul(
        corner_x.to(row_dtype) +
        _per_point(first, num_points, corner_x).to(row_dtype),
        corner_y.to(row_dtype), width)
    # Row of (batch, row, head) in table.view(-1, C); int32 when it fits.
    index_dtype = torch.int32 if bs * num_rows * table_heads < 2**31 \
        else torch.int64
    arange = partial(torch.arange, dtype=index_dtype, device=table.device)
    offset = (arange(bs) * (num_rows * table_heads)).view(bs, 1, 1, 1)
    if table_heads > 1:
        offset = offset + arange(num_heads).view(1, 1, num_heads, 1)
    top_left = row.to(index_dtype) * table_heads + offset
    step = width.to(index_dtype) * table_heads
    # Corners (x0, y0), (x1, y0), (x0, y1), (x1, y1): one block of
    # L * P entries each in every bag.
    index = torch.stack([
        top_left, top_left + table_heads, top_left + step,
        top_left + step + table_heads
    ], -2)
    weight_y0 = (1 - frac_y) * attention_weights
    weight_y1 = frac_y * attention_weights
    weight_x0 = 1 - frac_x
    weight = torch.stack([
        weight_y0 * weight_x0, weight_y0 * frac_x, weight_y1 * weight_x0,
        weight_y1 * frac_x
    ], -2)

    bag = 4 * num_samples
    output = F.embedding_bag(
        index.view(-1, bag),
        table.reshape(-1, dims),
        per_sample_weights=weight.reshape(-1, bag),
        mode='sum')
    return output.view(bs, num_queries, num_heads, dims)


def multi_scale_deformable_attn_fast(value: Tensor,
                                     value_spatial_shapes: Tensor,
                                     sampling_locations: Tensor,
                                     attention_weights: Tensor) -> Tensor:
    """Multi-scale deformable attention as one ``embedding_bag``.

    Same arguments, result and gradients as mmcv's
    ``multi_scale_deformable_attn_pytorch`` (bilinear sampling,
    ``align_corners=False``, zero padding), within float rounding.

    Args:
        value (Tensor): (B, num_keys, heads, C).
        value_spatial_shapes (Tensor): (L, 2) (h, w) of every level.
        sampling_locations (Tensor): (B, Q, heads, L, P, 2) normalised
            (x, y), (0, 0) top-left and (1, 1) bottom-right corner.
        attention_weights (Tensor): (B, Q, heads, L, P).

    Returns:
        Tensor: (B, Q, heads * C).
    """
    bs, num_queries, num_heads = sampling_locations.shape[:3]
    loc_x, loc_y = sampling_locations.flatten(3, 4).unbind(-1)
    output = _deformable_sum(
        value, value_spatial_shapes.tolist(), loc_x, loc_y,
        attention_weights.reshape(bs, num_queries, num_heads, -1))
    return output.flatten(2)


class FastMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` with
    :func:`multi_scale_deformable_attn_fast` where mmcv has no kernel.

    Parameters, initialisation and state-dict keys are mmcv's, so
    :meth:`convert` can switch modules built by mmdet's transformer layers
    in place.
    """

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Switch every plain ``MultiScaleDeformableAttention`` inside
        ``module`` to this class, in place (parameters, buffers and hooks
        are kept; the class adds no state). Like
        ``nn.SyncBatchNorm.convert_sync_batchnorm``, for modules whose
        builders hard-code the mmcv class.

        Returns:
            nn.Module: ``module`` itself.
        """
        for m in module.modules():
            if type(m) is MultiScaleDeformableAttention:
                m.__class__ = cls
        return module

    @staticmethod
    def _has_mmcv_kernel(value: Tensor) -> bool:
        return (IS_CUDA_AVAILABLE and value.is_cuda) or (IS_MLU_AVAILABLE
                                                         and value.is_mlu)

    def _sampling_locations(self, reference_points: Tensor,
                            offsets: Tensor, spatial_shapes: Tensor
                            ) -> Tuple[Tensor, Tensor]:
        """Normalised sampling locations, x and y apart, (B, Q, heads,
        L * P) each, with mmcv's arithmetic: 2-d reference points plus
        offsets in pixels of each level, or 4-d reference boxes plus
        offsets relative to half the box size over ``num_points``.

        Args:
            reference_points (Tensor): (B, Q, L, 2) or (B, Q, L, 4).
            offsets (Tensor): (B, Q, heads, L, P, 2).
            spatial_shapes (Tensor): (L, 2).
        """
        num_points = self.num_points
        off_x, off_y = offsets.flatten(3, 4).unbind(-1)
        # (B, Q, L, k) -> (B, Q, 1, L * P), one value per point
        refs = reference_points.repeat_interleave(num_points, 2)[:, :, None]
        if reference_points.shape[-1] == 2:
            shapes = spatial_shapes.repeat_interleave(num_points, 0)
            return (refs[..., 0] + off_x / shapes[:, 1],
                    refs[..., 1] + off_y / shapes[:, 0])
        if reference_points.shape[-1] == 4:
            return (refs[..., 0] + off_x / num_points * refs[..., 2] * 0.5,
                    refs[..., 1] + off_y / num_points * refs[..., 3] * 0.5)
        raise ValueError('Last dim of reference_points must be 2 or 4, got '
                         f'{reference_points.shape[-1]}')

    def _project_after_sampling(self, num_query: int,
                                num_value: int) -> bool:
        """Whether sampling the raw values and projecting the samples costs
        fewer multiply-adds than projecting every value first.

        Sampling and ``value_proj`` are both linear, so they commute (the
        bias is carried by a constant channel). Projecting first costs
        ``keys * D^2``; sampling first reads ``D + 1`` channels per corner
        for every head and projects ``queries * D^2``.
        """
        dims = self.embed_dims
        samples = self.num_heads * self.num_levels * self.num_points * 4
        return num_query * (samples * (dims + 1) + dims * dims) < \
            num_value * dims * dims

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
        """Same arguments and result as
        ``MultiScaleDeformableAttention.forward``."""
        if value is None:
            value = query
        if self._has_mmcv_kernel(value):
            return super().forward(query, key, value, identity, query_pos,
                                   key_padding_mask, reference_points,
                                   spatial_shapes, level_start_index,
                                   **kwargs)
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        bs, num_query, _ = query.shape
        num_value = value.shape[1]

        offsets = self.sampling_offsets(query).view(bs, num_query,
                                                    self.num_heads,
                                                    self.num_levels,
                                                    self.num_points, 2)
        attention_weights = self.attention_weights(query).view(
            bs, num_query, self.num_heads, self.num_levels * self.num_points)
        attention_weights = attention_weights.softmax(-1)
        loc_x, loc_y = self._sampling_locations(reference_points, offsets,
                                                spatial_shapes)
        shapes = spatial_shapes.tolist()
        if key_padding_mask is not None:
            # zero the values of padded keys (mmcv zeroes them after the
            # projection; for raw values the bias channel is zeroed too)
            keep = (~key_padding_mask)[..., None].to(value.dtype)
        if self._project_after_sampling(num_query, num_value):
            # Few queries over many keys (decoder cross-attention): sample
            # the raw values once for all heads, with a constant channel
            # for the bias, and project the samples instead of every key.
            value = torch.cat([value, value.new_ones(bs, num_value, 1)], -1)
            if key_padding_mask is not None:
                value = value * keep
            sampled = _deformable_sum(value[:, :, None], shapes, loc_x,
                                      loc_y, attention_weights)
            weight = self.value_proj.weight.view(self.num_heads, -1,
                                                 self.embed_dims)
            output = torch.einsum('bqhc,hdc->bqhd', sampled[..., :-1],
                                  weight) + sampled[..., -1:] * \
                self.value_proj.bias.view(self.num_heads, -1)
        else:
            value = self.value_proj(value)
            if key_padding_mask is not None:
                value = value * keep
            value = value.view(bs, num_value, self.num_heads, -1)
            output = _deformable_sum(value, shapes, loc_x, loc_y,
                                     attention_weights)
        output = output.flatten(2)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity
