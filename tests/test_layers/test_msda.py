"""multi_scale_deformable_attn_fast against mmcv's grid_sample formulation
(multi_scale_deformable_attn_pytorch): values and the gradients of the
values, sampling locations and attention weights, through the explicit
backward (``_CornerBagSum``) and the inference path."""
import pytest
import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch

from projects.mask_dino.layers import msda
from projects.mask_dino.layers.msda import multi_scale_deformable_attn_fast

NAMES = ('output', 'value', 'loc', 'attn')


def _msda_inputs(shapes, batch=2, heads=2, dims=4, points=3, queries=7,
                 dtype=torch.float64, seed=0, spread=(-0.3, 1.3)):
    """Random inputs; locations spread over ``spread`` so that points fall
    outside the maps, on their borders and inside."""
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(shapes)
    keys = int(shapes.prod(1).sum())
    levels = len(shapes)
    value = torch.randn(batch, keys, heads, dims, generator=g, dtype=dtype)
    low, high = spread
    loc = torch.rand(batch, queries, heads, levels, points, 2, generator=g,
                     dtype=dtype) * (high - low) + low
    attn = torch.rand(batch, queries, heads, levels, points, generator=g,
                      dtype=dtype).softmax(-1)
    return value, shapes, loc, attn


def _run_with_grads(fn, value, shapes, loc, attn, grads=NAMES[1:]):
    """Output and the gradients of the inputs named in ``grads`` (None for
    the others) of a weighted sum of the output."""
    inputs = {'value': value, 'loc': loc, 'attn': attn}
    inputs = {k: v.clone().requires_grad_(k in grads)
              for k, v in inputs.items()}
    out = fn(inputs['value'], shapes, inputs['loc'], inputs['attn'])
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
    (out * weights.view_as(out)).sum().backward()
    return (out.detach(), ) + tuple(inputs[k].grad for k in NAMES[1:])


def _assert_close(fast, ref, atol, scaled=False):
    for name, a, b in zip(NAMES, fast, ref):
        if b is None:
            assert a is None, name
            continue
        assert b.abs().max() > 0, name
        # location gradients scale with the map size
        scale = max(b.abs().max().item(), 1.0) if scaled else 1.0
        torch.testing.assert_close(
            a, b, rtol=0, atol=atol * scale, msg=name)


def test_hand_computed_bilinear_sample():
    # one 2x3 map, one head, one channel, one point
    value = torch.tensor([[1., 2., 3.], [4., 5., 6.]]).view(1, 6, 1, 1)
    shapes = torch.tensor([[2, 3]])
    # pixel position (x, y) = (loc * size - 0.5): (0.75, 0.25)
    loc = torch.tensor([(0.75 + 0.5) / 3, (0.25 + 0.5) / 2]).view(
        1, 1, 1, 1, 1, 2)
    attn = torch.full((1, 1, 1, 1, 1), 0.5)
    out = multi_scale_deformable_attn_fast(value, shapes, loc, attn)
    top = 0.25 * 1 + 0.75 * 2
    bottom = 0.25 * 4 + 0.75 * 5
    expected = 0.5 * (0.75 * top + 0.25 * bottom)
    torch.testing.assert_close(out, torch.tensor([[[expected]]]))
    # half a pixel outside the top-left corner: only pixel (0, 0),
    # weighted 0.5 * 0.5, the rest reads zero padding
    out = multi_scale_deformable_attn_fast(
        value, shapes, torch.zeros(1, 1, 1, 1, 1, 2), attn)
    torch.testing.assert_close(out, torch.tensor([[[0.5 * 0.25 * 1.0]]]))
    # fully outside: zero
    out = multi_scale_deformable_attn_fast(
        value, shapes, torch.full((1, 1, 1, 1, 1, 2), 1.5), attn)
    assert out.item() == 0


def test_hand_computed_gradients():
    """One point at pixel (0.75, 0.25) of a 2x3 map, attention 0.5, output
    gradient 1: value rows get attention x bilinear weight, the attention
    weight gets the sample, the location gets attention x the bilinear
    slope x the map size."""
    value = torch.tensor([[1., 2., 3.], [4., 5., 6.]],
                         dtype=torch.float64).view(1, 6, 1, 1)
    loc = torch.tensor([(0.75 + 0.5) / 3, (0.25 + 0.5) / 2],
                       dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    attn = torch.full((1, 1, 1, 1, 1), 0.5, dtype=torch.float64)
    value, loc, attn = (t.requires_grad_() for t in (value, loc, attn))
    multi_scale_deformable_attn_fast(value, torch.tensor([[2, 3]]), loc,
                                     attn).sum().backward()
    expected_value = 0.5 * torch.tensor(
        [0.75 * 0.25, 0.75 * 0.75, 0, 0.25 * 0.25, 0.25 * 0.75, 0],
        dtype=torch.float64)
    torch.testing.assert_close(value.grad.view(-1), expected_value)
    sample = 0.75 * (0.25 * 1 + 0.75 * 2) + 0.25 * (0.25 * 4 + 0.75 * 5)
    torch.testing.assert_close(attn.grad.item(), sample)
    # d/dx = (1 - fy)(v01 - v00) + fy (v11 - v10) = 1, d/dy = 3, per pixel
    torch.testing.assert_close(loc.grad.view(-1).tolist(),
                               [0.5 * 1 * 3, 0.5 * 3 * 2])


@pytest.mark.parametrize('shapes,heads,points', [
    ([[5, 7]], 2, 3),
    ([[6, 9], [3, 5], [2, 2], [1, 1]], 2, 3),
    ([[7, 3], [1, 4], [3, 1]], 3, 1),  # odd, one-pixel-wide maps
    ([[11, 13], [6, 7]], 1, 4),
])
def test_equals_mmcv_fallback_float64(shapes, heads, points):
    inputs = _msda_inputs(shapes, heads=heads, points=points)
    fast = _run_with_grads(multi_scale_deformable_attn_fast, *inputs)
    ref = _run_with_grads(multi_scale_deformable_attn_pytorch, *inputs)
    _assert_close(fast, ref, atol=1e-10)


def test_points_far_outside_get_zero_and_no_gradient():
    value, shapes, loc, attn = _msda_inputs([[5, 6], [2, 3]], queries=3)
    loc[:, 1] = -2.0  # query 1: every point far outside every map
    loc[:, 2, ..., 0] = 3.5  # query 2: right of every map
    fast = _run_with_grads(multi_scale_deformable_attn_fast, value, shapes,
                           loc, attn)
    ref = _run_with_grads(multi_scale_deformable_attn_pytorch, value, shapes,
                          loc, attn)
    _assert_close(fast, ref, atol=1e-10)
    out, _, loc_grad, attn_grad = fast
    assert (out[:, 1:] == 0).all()
    assert (loc_grad[:, 1:] == 0).all() and (attn_grad[:, 1:] == 0).all()
    assert (loc_grad[:, 0] != 0).any()


@pytest.mark.parametrize('grads', [('value', ), ('loc', ), ('attn', ),
                                   ('loc', 'attn')])
def test_gradients_of_some_inputs_only(grads):
    inputs = _msda_inputs([[6, 9], [3, 5]])
    fast = _run_with_grads(multi_scale_deformable_attn_fast, *inputs,
                           grads=grads)
    ref = _run_with_grads(multi_scale_deformable_attn_pytorch, *inputs,
                          grads=grads)
    _assert_close(fast, ref, atol=1e-10)


def test_training_forward_equals_inference_forward_exactly():
    """The explicit-backward path runs the same embedding_bag as the
    inference path, in one block instead of query blocks."""
    value, shapes, loc, attn = _msda_inputs(
        [[24, 40], [12, 20], [6, 10], [3, 5]], heads=8, dims=32, points=4,
        queries=50, dtype=torch.float32)
    with torch.no_grad():
        inference = multi_scale_deformable_attn_fast(value, shapes, loc,
                                                     attn)
    training = multi_scale_deformable_attn_fast(
        value.requires_grad_(), shapes, loc, attn)
    assert training.requires_grad
    assert torch.equal(training.detach(), inference)


def test_query_blocks_give_the_same_result(monkeypatch):
    """Without autograd queries are processed in blocks of bounded size;
    7 queries x 2 heads x 4 levels x 3 points x 4 corners = 672 entries,
    blocks of 2 queries."""
    inputs = _msda_inputs([[6, 9], [3, 5], [2, 2], [1, 1]])
    with torch.no_grad():
        whole = multi_scale_deformable_attn_fast(*inputs)
        monkeypatch.setattr(msda, '_BLOCK_ENTRIES', 2 * 2 * 2 * 4 * 3 * 4)
        blocks = multi_scale_deformable_attn_fast(*inputs)
    torch.testing.assert_close(whole, blocks, rtol=1e-12, atol=1e-12)


def test_equals_mmcv_fallback_float32():
    # encoder-like sizes: 4 levels, 8 heads of 32 channels, 4 points
    shapes = [[24, 40], [12, 20], [6, 10], [3, 5]]
    inputs = _msda_inputs(
        shapes, batch=2, heads=8, dims=32, points=4, queries=300,
        dtype=torch.float32)
    fast = _run_with_grads(multi_scale_deformable_attn_fast, *inputs)
    ref = _run_with_grads(multi_scale_deformable_attn_pytorch, *inputs)
    _assert_close(fast, ref, atol=1e-5, scaled=True)


def test_rejects_inconsistent_shapes():
    value, shapes, loc, attn = _msda_inputs([[4, 4]])
    with pytest.raises(ValueError, match='value_spatial_shapes'):
        multi_scale_deformable_attn_fast(value, torch.tensor([[4, 5]]), loc,
                                         attn)
