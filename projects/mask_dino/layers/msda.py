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
exactly that without any intermediate. Its backward is explicit
(:class:`_CornerBagSum`): autograd of ``embedding_bag`` sorts and
accumulates every corner entry one by one, slower than ``grid_sample``'s
backward; grouping the points by their top-left corner and taking the dot
products with ``torch.sparse.sampled_addmm`` makes it several times
faster (measured with :mod:`projects.mask_dino.analysis.msda_benchmark`).
Further:

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
float rounding (see ``tests/test_layers/test_msda.py`` and
``tests/test_models/test_fast_paths.py``).
"""
import warnings
from collections import OrderedDict
from functools import partial
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.utils import IS_CUDA_AVAILABLE, IS_MLU_AVAILABLE
from mmdet.registry import MODELS
from torch import Tensor

from ..utils.point_ops import grid_sample_positions

# Value maps get 1 zero row/column before and 2 after: sampling positions
# are clamped to [-1, size] (beyond that all four corners are outside the
# map and contribute zero), so corner ``floor(pos) + 1`` is at most size + 1.
_PAD_BEFORE, _PAD_AFTER = 1, 2
# Bag entries (4 per sampling point) handled at once: bounds the index and
# weight temporaries (~2 x 16 MB) so that they are reused, not page-faulted.
_BLOCK_ENTRIES = 2**22
# Level constants by (level sizes, points, device, dtype, inference mode):
# every attention call of an iteration (15 in R50) has the same ones.
_LEVEL_CONSTANTS: 'OrderedDict[tuple, Tuple[Tensor, ...]]' = OrderedDict()
_LEVEL_CONSTANTS_KEPT = 8


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


def _level_constants(spatial_shapes: Tensor, shapes: List[List[int]],
                     num_points: int,
                     like: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The per-point level constants of :func:`corner_entries` for the
    padded table of :func:`_pad_value_maps`.

    Computed once for the level sizes ``shapes`` (about 17 operators) and
    kept for the later attention calls with the same sizes, device and
    dtype; inference-mode tensors are kept apart (autograd refuses them).

    Args:
        spatial_shapes (Tensor): (L, 2) integer (h, w) of every level.
        shapes (list[list[int]]): The same sizes as Python ints.
        num_points (int): Sampling points per level, P.
        like (Tensor): Tensor whose device and float dtype the sizes take.

    Returns:
        tuple[Tensor]: ``size_x``, ``size_y`` (L * P, ) in the dtype of
        ``like``, ``row_width`` and ``level_start`` (L * P, ) int64.
    """
    key = (tuple(map(tuple, shapes)), num_points, like.device, like.dtype,
           torch.is_inference_mode_enabled())
    constants = _LEVEL_CONSTANTS.get(key)
    if constants is None:
        constants = _compute_level_constants(spatial_shapes, num_points, like)
        _LEVEL_CONSTANTS[key] = constants
        if len(_LEVEL_CONSTANTS) > _LEVEL_CONSTANTS_KEPT:
            _LEVEL_CONSTANTS.popitem(last=False)
    return constants


def _compute_level_constants(spatial_shapes: Tensor, num_points: int,
                             like: Tensor) -> Tuple[Tensor, ...]:
    """:func:`_level_constants` computed from the level sizes on the
    device (copying Python lists there would wait for the GPU)."""
    shapes = spatial_shapes.to(like.device, torch.long)
    padded = shapes + (_PAD_BEFORE + _PAD_AFTER)
    level_rows = padded.prod(1)
    starts = level_rows.cumsum(0) - level_rows
    per_point = torch.stack([shapes[:, 1], shapes[:, 0], padded[:, 1],
                             starts]).repeat_interleave(num_points, 1)
    size_x, size_y = per_point[:2].to(like.dtype).unbind(0)
    return size_x, size_y, per_point[2], per_point[3]


def sample_value_maps(value: Tensor,
                      spatial_shapes: Tensor,
                      loc_x: Tensor,
                      loc_y: Tensor,
                      attention_weights: Tensor,
                      level_shapes: Optional[Sequence[Sequence[int]]] = None
                      ) -> Tensor:
    """Deformable attention from planar locations (the sampler of
    :meth:`FastMultiScaleDeformableAttention.forward`).

    All point tensors are (B, Q, heads, L * P) with the per-level constants
    broadcast along the contiguous last dim (broadcasting over a short
    inner dim such as xy is several times slower on CPU). Without autograd,
    queries are processed in blocks of about ``_BLOCK_ENTRIES`` bag
    entries, so that the index and weight temporaries stay small and are
    reused; with autograd, :class:`_CornerBagSum` runs once over all
    queries (its explicit backward needs them together).

    Args:
        value (Tensor): (B, num_keys, heads, C), or (B, num_keys, 1, C) for
            one value map shared by all heads.
        spatial_shapes (Tensor): (L, 2) (h, w) of every level.
        loc_x, loc_y (Tensor): Normalised sampling coordinates.
        attention_weights (Tensor): Softmaxed weights.
        level_shapes (Sequence, optional): The same sizes as Python ints,
            (h, w) per level; read from ``spatial_shapes`` (a host sync)
            when None.

    Returns:
        Tensor: (B, Q, heads, C).
    """
    shapes = _python_shapes(spatial_shapes, level_shapes)
    num_keys = value.shape[1]
    if sum(h * w for h, w in shapes) != num_keys:
        raise ValueError(f'value has {num_keys} keys but '
                         f'value_spatial_shapes {shapes} cover '
                         f'{sum(h * w for h, w in shapes)}')
    table, starts = _pad_value_maps(value, shapes)
    num_points = loc_x.shape[-1] // len(shapes)
    constants = _level_constants(spatial_shapes, shapes, num_points, loc_x)
    if torch.is_grad_enabled() and any(
            t.requires_grad for t in (table, loc_x, loc_y,
                                      attention_weights)):
        top_left, step, frac_x, frac_y = corner_entries(
            loc_x, loc_y, *constants, table.shape[:3])
        return _CornerBagSum.apply(table, frac_x, frac_y, attention_weights,
                                   top_left, step,
                                   _level_rows(table, starts, shapes))
    bs, num_queries, num_heads, num_samples = loc_x.shape
    block = max(_BLOCK_ENTRIES // (bs * num_heads * num_samples * 4), 1)
    if block >= num_queries:
        return _sample_block(table, constants, loc_x, loc_y,
                             attention_weights)
    return torch.cat([
        _sample_block(table, constants, loc_x[:, i:i + block],
                      loc_y[:, i:i + block],
                      attention_weights[:, i:i + block])
        for i in range(0, num_queries, block)
    ], 1)


def _python_shapes(spatial_shapes: Tensor,
                   level_shapes: Optional[Sequence[Sequence[int]]]
                   ) -> List[List[int]]:
    """The level sizes as Python ints: ``level_shapes`` when the caller
    has them (no host sync), else read from ``spatial_shapes``."""
    if level_shapes is None:
        return spatial_shapes.tolist()
    shapes = [[int(h), int(w)] for h, w in level_shapes]
    if len(shapes) != spatial_shapes.shape[0]:
        raise ValueError(f'level_shapes has {len(shapes)} levels but '
                         f'spatial_shapes {spatial_shapes.shape[0]}')
    return shapes


def _sample_block(table: Tensor, constants: Tuple[Tensor, ...],
                  loc_x: Tensor, loc_y: Tensor,
                  attention_weights: Tensor) -> Tensor:
    """:func:`sample_value_maps` of a block of queries, on the padded value
    table of :func:`_pad_value_maps` with its :func:`_level_constants`."""
    top_left, step, frac_x, frac_y = corner_entries(loc_x, loc_y, *constants,
                                                    table.shape[:3])
    return _bag_sum(table, top_left, step,
                    corner_weights(frac_x, frac_y, attention_weights))


def corner_entries(loc_x: Tensor, loc_y: Tensor, size_x: Tensor,
                   size_y: Tensor, row_width: Tensor, level_start: Tensor,
                   table_shape: Sequence[int]
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Table rows and bilinear fractions of the 4 corners of every point.

    The deformable sampling arithmetic, shared by this module's
    ``embedding_bag`` path and the ONNX export
    (:func:`projects.mask_dino.deploy.export_ops.deformable_sample`). The
    table holds every level map padded with ``_PAD_BEFORE`` /
    ``_PAD_AFTER`` zero rows and columns, row-major, one table row per
    padded pixel (or per block of pixels, see the export), ``table_heads``
    rows per position.

    Args:
        loc_x, loc_y (Tensor): (B, Q, heads, L * P) normalised coordinates.
        size_x, size_y (Tensor): (L * P, ) float width / height of the
            level of every point.
        row_width (Tensor): (L * P, ) int64 table positions from one map
            row to the next (the padded width) of every point's level.
        level_start (Tensor): (L * P, ) int64 first table position of
            every point's level.
        table_shape (Sequence[int]): (B, num_rows, table_heads) of the
            table; ``table_heads`` is ``heads``, or 1 for one table shared
            by all heads.

    Returns:
        tuple:
            - top_left (Tensor): (B, Q, heads, L * P) row of the top-left
              corner in ``table.view(-1, C)`` (int32 when it fits). The
              other corners are ``+ table_heads`` (right), ``+ step``
              (below) and ``+ step + table_heads``.
            - step (Tensor): (L * P, ) rows from one map row to the next.
            - frac_x, frac_y (Tensor): (B, Q, heads, L * P) position of
              the point from the top-left corner, in pixels (0 to 1).
    """
    bs, num_rows, table_heads = table_shape
    num_heads = loc_x.shape[2]
    frac_x, corner_x = grid_sample_positions(loc_x, size_x)
    frac_y, corner_y = grid_sample_positions(loc_y, size_y)

    # Table position of the top-left corner, on exact float integers.
    row_dtype = torch.float32 if num_rows < 2**24 else torch.float64
    width = row_width.to(row_dtype)
    first = (level_start + _PAD_BEFORE * (row_width + 1)).to(row_dtype)
    row = torch.addcmul(corner_x.detach().to(row_dtype) + first,
                        corner_y.detach().to(row_dtype), width)
    # Row of (batch, position, head) in table.view(-1, C); int32 when it
    # fits.
    index_dtype = torch.int32 if bs * num_rows * table_heads < 2**31 \
        else torch.int64
    arange = partial(torch.arange, dtype=index_dtype, device=loc_x.device)
    offset = (arange(bs) * (num_rows * table_heads)).view(bs, 1, 1, 1)
    if table_heads > 1:
        offset = offset + arange(num_heads).view(1, 1, num_heads, 1)
    top_left = row.to(index_dtype) * table_heads + offset
    step = width.to(index_dtype) * table_heads
    return top_left, step, frac_x, frac_y


def corner_weights(frac_x: Tensor,
                   frac_y: Tensor,
                   attention_weights: Tensor,
                   dim: int = -2) -> Tensor:
    """Attention weight times bilinear weight of the 4 corners, in the
    order of :func:`corner_entries`, stacked along ``dim``: (B, Q, heads,
    4, L * P) by default, (B, Q, heads, L * P, 4) with ``dim=-1``."""
    weight_y0 = (1 - frac_y) * attention_weights
    weight_y1 = frac_y * attention_weights
    weight_x0 = 1 - frac_x
    return torch.stack([
        weight_y0 * weight_x0, weight_y0 * frac_x, weight_y1 * weight_x0,
        weight_y1 * frac_x
    ], dim)


def corner_index(top_left: Tensor, step: Tensor,
                  table_heads: int) -> Tensor:
    """(..., 4, L * P) rows of the 4 corners, in the order of
    :func:`corner_weights`."""
    return torch.stack([
        top_left, top_left + table_heads, top_left + step,
        top_left + step + table_heads
    ], -2)


def _bag_sum(table: Tensor, top_left: Tensor, step: Tensor,
             weight: Tensor) -> Tensor:
    """Weighted sum of the corner rows of every (query, head): one
    ``embedding_bag`` without intermediates.

    Args:
        table (Tensor): (B, num_rows, table_heads, C).
        top_left, step (Tensor): See :func:`corner_entries`.
        weight (Tensor): See :func:`corner_weights`.

    Returns:
        Tensor: (B, Q, heads, C).
    """
    dims = table.shape[-1]
    index = corner_index(top_left, step, table.shape[2])
    bag = index.shape[-2] * index.shape[-1]
    output = F.embedding_bag(
        index.view(-1, bag),
        table.reshape(-1, dims),
        per_sample_weights=weight.reshape(-1, bag),
        mode='sum')
    return output.view(*top_left.shape[:3], dims)


def _level_rows(table: Tensor, starts: List[int],
                shapes: List[List[int]]) -> List[Tuple[int, int, int]]:
    """(first, end, step) of every padded level in the rows of one batch
    element of ``table.view(B, -1, C)``; step = rows from one map row to
    the next."""
    table_heads = table.shape[2]
    rows = []
    for start, (h, w) in zip(starts, shapes):
        width = w + _PAD_BEFORE + _PAD_AFTER
        end = start + (h + _PAD_BEFORE + _PAD_AFTER) * width
        rows.append((start * table_heads, end * table_heads,
                     width * table_heads))
    return rows


class _CornerBagSum(torch.autograd.Function):
    """:func:`_bag_sum` with an explicit backward.

    Autograd of ``embedding_bag`` sorts all ``4 * L * P`` entries of every
    bag by table row and accumulates them one by one. Here the entries are
    sorted by their top-left corner only (a quarter of the keys): the 4
    corners of a point are fixed row offsets from it, so the value
    gradient is one ``embedding_bag`` of the output gradient with one
    output row per (corner, top-left row), each corner's rows added to the
    table gradient shifted by its corner offset. The weight gradient is
    the dot product of the output gradient of every bag with each of its
    corner rows (:func:`_weight_grad`), from which the gradients of the
    bilinear fractions and attention weights follow in closed form
    (:func:`_fraction_grads`; fewer, larger operations than autograd of
    :func:`corner_weights`).
    """

    @staticmethod
    def forward(ctx, table: Tensor, frac_x: Tensor, frac_y: Tensor,
                attention_weights: Tensor, top_left: Tensor, step: Tensor,
                level_rows: List[Tuple[int, int, int]]) -> Tensor:
        """:func:`_bag_sum` of :func:`corner_weights`; ``table``, the
        fractions and the attention weights are differentiable.
        ``level_rows``: :func:`_level_rows` of ``table``."""
        weight = corner_weights(frac_x, frac_y, attention_weights)
        ctx.save_for_backward(table, frac_x, frac_y, attention_weights,
                              weight, top_left, step)
        ctx.level_rows = level_rows
        return _bag_sum(table, top_left, step, weight)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple:
        (table, frac_x, frac_y, attention_weights, weight, top_left,
         step) = ctx.saved_tensors
        grad_output = grad_output.contiguous()
        grads = [None] * 7
        if ctx.needs_input_grad[0]:
            grads[0] = _table_grad(table, weight, top_left, ctx.level_rows,
                                   grad_output)
        if any(ctx.needs_input_grad[1:4]):
            grads[1:4] = _fraction_grads(
                _weight_grad(table, top_left, step, grad_output), frac_x,
                frac_y, attention_weights)
        return tuple(grads)


def _fraction_grads(corner_grad: Tensor, frac_x: Tensor, frac_y: Tensor,
                    attention_weights: Tensor) -> Tuple[Tensor, Tensor,
                                                        Tensor]:
    """Gradients of ``frac_x``, ``frac_y`` and ``attention_weights`` from
    those of the :func:`corner_weights`, (B, Q, heads, 4, L * P).

    With corner gradients d00, d01 (top row), d10, d11 and the bilinear
    interpolations r0 / r1 of each row along x, the attention weight gets
    the interpolation of r0 and r1 along y, y gets ``a * (r1 - r0)`` and x
    ``a`` times the interpolation of the rows' x differences along y.
    """
    d00, d01, d10, d11 = corner_grad.unbind(-2)
    diff_top, diff_bottom = d01 - d00, d11 - d10
    top = torch.addcmul(d00, frac_x, diff_top)
    diff_y = torch.addcmul(d10, frac_x, diff_bottom) - top
    grad_x = attention_weights * torch.lerp(diff_top, diff_bottom, frac_y)
    return (grad_x, attention_weights * diff_y,
            torch.addcmul(top, frac_y, diff_y))


def _table_grad(table: Tensor, weight: Tensor, top_left: Tensor,
                level_rows: List[Tuple[int, int, int]],
                grad_output: Tensor) -> Tensor:
    """Gradient of :func:`_bag_sum` with respect to ``table`` (see
    :class:`_CornerBagSum`)."""
    bs, _, table_heads, dims = table.shape
    num_samples = top_left.shape[-1]
    num_table_rows = table.numel() // dims
    keys = top_left.reshape(-1)
    keys_sorted, order = torch.sort(keys, stable=True)
    # embedding_bag offsets: first sorted entry of every table row
    offsets = torch.searchsorted(
        keys_sorted,
        torch.arange(num_table_rows, dtype=keys.dtype, device=keys.device))
    num_points = keys.numel()
    # One embedding_bag for the 4 corners: output rows (corner, table row),
    # entries (corner, sorted point).
    bags = (order // num_samples).repeat(4)  # (query, head) of every entry
    offsets = (offsets + torch.arange(
        0, 4 * num_points, num_points, device=offsets.device)[:, None])
    weight = weight.view(-1, 4, num_samples).transpose(0, 1).reshape(4, -1)
    sums = F.embedding_bag(
        bags,
        grad_output.view(-1, dims),
        offsets.view(-1),
        per_sample_weights=weight[:, order].view(-1),
        mode='sum').view(4, bs, -1, dims)
    # corners (x0, y0), (x1, y0), (x0, y1), (x1, y1); a top-left corner
    # is at most the second-to-last padded row / column of its level, so
    # every shifted sum stays inside its level.
    grad = sums[0]
    grad[:, table_heads:].add_(sums[1, :, :-table_heads])
    for first, end, step in level_rows:
        for corner, shift in ((2, step), (3, step + table_heads)):
            grad[:, first + shift:end].add_(
                sums[corner, :, first:end - shift])
    return grad.view_as(table)


def _weight_grad(table: Tensor, top_left: Tensor, step: Tensor,
                 grad_output: Tensor) -> Tensor:
    """Gradient of :func:`_bag_sum` with respect to ``weight``: the dot
    product of every bag's output gradient with each of its corner rows,
    (B, Q, heads, 4, L * P).

    That is ``grad_output @ table.T`` sampled at the (bag, corner row)
    entries, which ``torch.sparse.sampled_addmm`` computes with vectorised
    dot products (several times faster than ``embedding_bag``'s own
    per-sample-weight backward, which loops over the channels).
    """
    dims = table.shape[-1]
    index = corner_index(top_left, step, table.shape[2]).reshape(-1)
    num_bags = grad_output.numel() // dims
    bag = index.numel() // num_bags
    bag_starts = torch.arange(
        0, index.numel() + 1, bag, dtype=index.dtype, device=index.device)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', 'Sparse CSR tensor support')
        # values are ignored with beta=0, except that NaN would propagate
        pattern = torch.sparse_csr_tensor(
            bag_starts,
            index,
            grad_output.new_zeros(index.numel()),
            size=(num_bags, table.numel() // dims),
            check_invariants=False)
        dots = torch.sparse.sampled_addmm(
            pattern, grad_output.view(num_bags, dims),
            table.view(-1, dims).t(), beta=0.0)
    return dots.values().view(*top_left.shape[:3], 4, -1)


#: ``sampler(value, spatial_shapes, loc_x, loc_y, attention_weights)`` of
#: :meth:`FastMultiScaleDeformableAttention.attend`.
Sampler = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def multi_scale_deformable_attn_fast(
        value: Tensor,
        value_spatial_shapes: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        level_shapes: Optional[Sequence[Sequence[int]]] = None) -> Tensor:
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
        level_shapes (Sequence, optional): ``value_spatial_shapes`` as
            Python ints, if the caller has them: saves reading them back
            (a host sync). Defaults to None.

    Returns:
        Tensor: (B, Q, heads * C).
    """
    bs, num_queries, num_heads = sampling_locations.shape[:3]
    loc_x, loc_y = sampling_locations.flatten(3, 4).unbind(-1)
    output = sample_value_maps(
        value, value_spatial_shapes, loc_x, loc_y,
        attention_weights.reshape(bs, num_queries, num_heads, -1),
        level_shapes)
    return output.flatten(2)


@MODELS.register_module()
class FastMultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's ``MultiScaleDeformableAttention`` with
    :func:`multi_scale_deformable_attn_fast` where mmcv has no kernel.

    Constructor, parameters, initialisation and state-dict keys are mmcv's
    (the encoder and decoder layers of :mod:`.transformer_layers` build it
    in place of mmcv's module).
    """

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
                level_shapes: Optional[Sequence[Sequence[int]]] = None,
                **kwargs) -> Tensor:
        """Same arguments and result as
        ``MultiScaleDeformableAttention.forward``, plus ``level_shapes``:
        ``spatial_shapes`` as Python ints (h, w) per level, which callers
        that build them pass to save reading them back from the tensor (a
        host sync per call on the fallback path; mmcv's kernel ignores
        it)."""
        if value is None:
            value = query
        if self._has_mmcv_kernel(value):
            return super().forward(query, key, value, identity, query_pos,
                                   key_padding_mask, reference_points,
                                   spatial_shapes, level_start_index,
                                   **kwargs)
        return self.attend(
            query, value, identity, query_pos, key_padding_mask,
            reference_points, spatial_shapes,
            partial(sample_value_maps, level_shapes=level_shapes))

    def attend(self, query: Tensor, value: Tensor,
               identity: Optional[Tensor], query_pos: Optional[Tensor],
               key_padding_mask: Optional[Tensor],
               reference_points: Tensor, spatial_shapes: Tensor,
               sampler: Sampler) -> Tensor:
        """The attention around the sampling step, which ``sampler`` does.

        :meth:`forward` passes :func:`sample_value_maps`; the ONNX export
        passes its ``Gather`` formulation (same result), with the same
        projections, locations and weights.

        Args:
            query, value (Tensor): (B, Q, D) / (B, num_keys, D), or
                sequence-first unless ``batch_first``.
            identity, query_pos, key_padding_mask, reference_points,
                spatial_shapes: As in :meth:`forward`.
            sampler (Callable): ``sampler(value, spatial_shapes, loc_x,
                loc_y, attention_weights)`` -> (B, Q, heads, C), with
                value (B, num_keys, heads or 1, C) and the others as in
                :func:`corner_entries`.

        Returns:
            Tensor: As :meth:`forward`.
        """
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
            sampled = sampler(value[:, :, None], spatial_shapes, loc_x,
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
            output = sampler(value, spatial_shapes, loc_x, loc_y,
                             attention_weights)
        output = output.flatten(2)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity
