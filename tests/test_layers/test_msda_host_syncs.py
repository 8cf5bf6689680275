"""The CPU deformable attention path without host syncs (#15): per-level
constants built from ``spatial_shapes`` on the device, bit for bit the
values of the earlier host lists, and no ``tolist`` when the caller passes
the level sizes as Python ints."""
from functools import partial

import pytest
import torch
from conftest import tiny_cfg
from mmdet.registry import MODELS

from projects.mask_dino.analysis.benchmark import DispatchCounter
from projects.mask_dino.layers import msda
from projects.mask_dino.layers.msda import (FastMultiScaleDeformableAttention,
                                            multi_scale_deformable_attn_fast)

SHAPES = [[13, 17], [7, 9], [4, 5], [2, 3]]
DTYPES = [torch.float32, torch.float64]


def count_syncs(func, *args, **kwargs):
    counter = DispatchCounter()
    with counter.count('run'):
        func(*args, **kwargs)
    return counter.results()['run']['syncs']


def host_list_constants(shapes, num_points, like):
    """The formulation before #15: Python lists copied to the device."""
    pad = msda._PAD_BEFORE + msda._PAD_AFTER
    starts, start = [], 0
    for h, w in shapes:
        starts.append(start)
        start += (h + pad) * (w + pad)

    def per_point(values, dtype=None):
        return like.new_tensor(
            values, dtype=dtype).repeat_interleave(num_points)

    return (per_point([w for _, w in shapes]),
            per_point([h for h, _ in shapes]),
            per_point([w + pad for _, w in shapes], torch.long),
            per_point(starts, torch.long))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape_dtype', [torch.long, torch.int32])
def test_level_constants_equal_host_lists(dtype, shape_dtype):
    like = torch.zeros(3, dtype=dtype)
    spatial_shapes = torch.tensor(SHAPES, dtype=shape_dtype)
    new = msda._compute_level_constants(spatial_shapes, 3, like)
    old = host_list_constants(SHAPES, 3, like)
    for a, b in zip(new, old):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert count_syncs(msda._compute_level_constants, spatial_shapes, 3,
                       like) == 0


def test_level_constants_are_kept_per_sizes_and_dtype():
    """Later calls with the same sizes reuse the constants; other sizes,
    dtypes, point counts and inference mode get their own."""
    msda._LEVEL_CONSTANTS.clear()
    like = torch.zeros(3)
    spatial_shapes = torch.tensor(SHAPES)
    shapes = [list(s) for s in SHAPES]
    first = msda._level_constants(spatial_shapes, shapes, 3, like)
    assert msda._level_constants(spatial_shapes.clone(), shapes, 3,
                                 like) is first
    assert msda._level_constants(spatial_shapes, shapes, 2, like) is not first
    assert msda._level_constants(spatial_shapes, shapes, 3,
                                 like.double()) is not first
    with torch.inference_mode():
        inference = msda._level_constants(spatial_shapes, shapes, 3, like)
    assert inference is not first and inference[0].is_inference()
    assert not first[0].is_inference()
    for i in range(msda._LEVEL_CONSTANTS_KEPT + 1):
        msda._level_constants(spatial_shapes, shapes, 10 + i, like)
    assert len(msda._LEVEL_CONSTANTS) == msda._LEVEL_CONSTANTS_KEPT


def _inputs(dtype, queries=9, heads=2, points=3, dims=4):
    gen = torch.Generator().manual_seed(0)
    keys = sum(h * w for h, w in SHAPES)
    value = torch.randn(2, keys, heads, dims, generator=gen, dtype=dtype)
    loc = torch.rand(2, queries, heads, len(SHAPES), points, 2,
                     generator=gen, dtype=dtype) * 1.6 - 0.3
    attn = torch.rand(2, queries, heads, len(SHAPES), points, generator=gen,
                      dtype=dtype).softmax(-1)
    return value, loc, attn


def _output_and_grads(func, value, shapes, loc, attn):
    inputs = [t.clone().requires_grad_() for t in (value, loc, attn)]
    out = func(inputs[0], shapes, *inputs[1:])
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
    (out * weights.view_as(out)).sum().backward()
    return [out] + [t.grad for t in inputs]


@pytest.mark.parametrize('dtype', DTYPES)
def test_level_shapes_same_result_no_sync(dtype, monkeypatch):
    value, loc, attn = _inputs(dtype)
    shapes = torch.tensor(SHAPES)
    with_list = partial(multi_scale_deformable_attn_fast, level_shapes=SHAPES)
    for a, b in zip(
            _output_and_grads(with_list, value, shapes, loc, attn),
            _output_and_grads(multi_scale_deformable_attn_fast, value, shapes,
                              loc, attn)):
        assert torch.equal(a, b)
    # forward and explicit backward: no sync with the Python sizes, one
    # tolist without
    assert count_syncs(_output_and_grads, with_list, value, shapes, loc,
                       attn) == 0
    assert count_syncs(multi_scale_deformable_attn_fast, value, shapes, loc,
                       attn) == 1
    # the inference path in blocks of queries
    monkeypatch.setattr(msda, '_BLOCK_ENTRIES', 2 * 2 * 12 * 4 * 2)
    with torch.no_grad():
        blocks = with_list(value, shapes, loc, attn)
        assert count_syncs(with_list, value, shapes, loc, attn) == 0
    monkeypatch.undo()
    with torch.no_grad():
        assert torch.equal(blocks, with_list(value, shapes, loc, attn))
    with pytest.raises(ValueError, match='level_shapes'):
        multi_scale_deformable_attn_fast(
            value, shapes, loc, attn, level_shapes=SHAPES[:2])


@pytest.mark.parametrize('num_query', [9, 400])  # value_proj before/after
def test_module_forward_with_level_shapes(num_query):
    torch.manual_seed(0)
    attn = FastMultiScaleDeformableAttention(
        embed_dims=16, num_heads=2, num_levels=4, num_points=3,
        batch_first=True).eval()
    keys = sum(h * w for h, w in SHAPES)
    query = torch.randn(2, num_query, 16)
    value = torch.randn(2, keys, 16)
    refs = torch.rand(2, num_query, 4, 2)
    kwargs = dict(
        query=query,
        value=value,
        reference_points=refs,
        spatial_shapes=torch.tensor(SHAPES))
    with torch.no_grad():
        expected = attn(**kwargs)
        assert torch.equal(attn(**kwargs, level_shapes=SHAPES), expected)
        assert count_syncs(attn, **kwargs, level_shapes=SHAPES) == 0


@pytest.mark.parametrize('with_cp', [False, True])
def test_pixel_decoder_encoder_reads_no_level_sizes_back(with_cp):
    """The pixel decoder hands its Python level sizes to the attention."""
    cfg = tiny_cfg().panoptic_head.pixel_decoder
    cfg.with_cp = with_cp
    pixel_decoder = MODELS.build(cfg).train()
    gen = torch.Generator().manual_seed(0)
    feats = [
        torch.randn(1, c, size, size, generator=gen).requires_grad_()
        for c, size in zip((8, 16, 32, 64), (16, 8, 4, 2))
    ]
    counter = DispatchCounter()
    with counter.count('run'):
        pixel_decoder(feats)
    kinds = counter.results()['run']['sync_kinds']
    assert 'Tensor.tolist' not in kinds, kinds


def test_head_decoder_reads_no_level_sizes_back():
    """The pixel decoder's ``EncoderMemory`` carries the Python level
    sizes to query selection's proposals and to the decoder's
    cross-attention: no ``tolist`` in the head's forward."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = tiny_cfg()
    model = MODELS.build(cfg).eval()
    head = model.panoptic_head
    gen = torch.Generator().manual_seed(0)
    feats = [
        torch.randn(1, c, size, size, generator=gen)
        for c, size in zip((8, 16, 32, 64), (32, 16, 8, 4))
    ]
    from conftest import make_sample
    samples = [make_sample(128, 128, [], [])]
    counter = DispatchCounter()
    with counter.count('run'), torch.no_grad():
        head(feats, samples)
    kinds = counter.results()['run']['sync_kinds']
    print(kinds)
    assert 'Tensor.tolist' not in kinds, kinds
