"""The CPU deformable attention path without host syncs (#15): per-level
constants built from ``spatial_shapes`` on the device (int64 or int32),
giving mmcv's results, kept for later calls with the same sizes, and no
``tolist`` when the caller passes the level sizes as Python ints."""
from functools import partial

import pytest
import torch
from conftest import tiny_cfg
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch
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


def _inputs(dtype, queries=9, heads=2, points=3, dims=4, shapes=SHAPES):
    gen = torch.Generator().manual_seed(0)
    keys = sum(h * w for h, w in shapes)
    value = torch.randn(2, keys, heads, dims, generator=gen, dtype=dtype)
    loc = torch.rand(2, queries, heads, len(shapes), points, 2,
                     generator=gen, dtype=dtype) * 1.6 - 0.3
    attn = torch.rand(2, queries, heads, len(shapes), points, generator=gen,
                      dtype=dtype).softmax(-1)
    return value, loc, attn


def _output_and_grads(func, value, shapes, loc, attn):
    inputs = [t.clone().requires_grad_() for t in (value, loc, attn)]
    out = func(inputs[0], shapes, *inputs[1:])
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
    (out * weights.view_as(out)).sum().backward()
    return [out] + [t.grad for t in inputs]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape_dtype', [torch.long, torch.int32])
def test_new_level_sizes_build_constants_on_device(dtype, shape_dtype):
    """The first call with new level sizes, which builds the per-level
    constants (later calls reuse them), reads nothing back from the device
    when the sizes come as Python ints, forward and backward, for int64
    and int32 ``spatial_shapes``; its output and gradients are mmcv's and
    those of the later calls."""
    # sizes of this case alone: its first call must build the constants
    shapes = [[11, 19 + DTYPES.index(dtype)],
              [6, 10 + (shape_dtype == torch.int32)], [3, 5], [2, 3]]
    value, loc, attn = _inputs(dtype, shapes=shapes)
    spatial_shapes = torch.tensor(shapes, dtype=shape_dtype)
    with_list = partial(multi_scale_deformable_attn_fast, level_shapes=shapes)
    counter = DispatchCounter()
    with counter.count('first'):
        first = _output_and_grads(with_list, value, spatial_shapes, loc,
                                  attn)
    with counter.count('later'):
        later = _output_and_grads(with_list, value, spatial_shapes, loc,
                                  attn)
    results = counter.results()
    assert results['first']['syncs'] == results['later']['syncs'] == 0
    # the first call did the constants' work, the later one reused it
    assert results['first']['ops'] > results['later']['ops']
    reference = _output_and_grads(multi_scale_deformable_attn_pytorch,
                                  value, torch.tensor(shapes), loc, attn)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for a, b, ref in zip(first, later, reference):
        assert torch.equal(a, b)
        # location gradients scale with the map size
        torch.testing.assert_close(
            a, ref, rtol=0, atol=tol * max(ref.abs().max().item(), 1.0))


def test_training_call_after_inference_mode_call_with_same_sizes():
    """Constants built under ``torch.inference_mode`` are not handed to a
    later autograd call with the same sizes (autograd refuses inference
    tensors): its output equals the inference output, its backward runs."""
    shapes = [[9, 14], [5, 7], [3, 4], [2, 2]]  # this test's sizes alone
    value, loc, attn = _inputs(torch.float32, shapes=shapes)
    spatial_shapes = torch.tensor(shapes)
    with_list = partial(multi_scale_deformable_attn_fast, level_shapes=shapes)
    with torch.inference_mode():
        inference = with_list(value, spatial_shapes, loc, attn)
    out, *grads = _output_and_grads(with_list, value, spatial_shapes, loc,
                                    attn)
    assert torch.equal(out, inference)
    assert all(g.abs().max() > 0 for g in grads)


def test_level_constants_cache_hit_per_key_and_bounded():
    """Guards the constants' cache, which the attention's outputs do not
    show: a call with the same level sizes, point count, dtype and
    inference mode gets the kept constants (built once per iteration, not
    per attention call), any other key its own, and at most
    ``_LEVEL_CONSTANTS_KEPT`` are kept. Reads the private cache: no public
    entry point tells a hit from a miss by the identity of the result."""
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
