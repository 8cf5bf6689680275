"""Constants filled on the device instead of copied from the host (#15):
no host sync in utils/point_ops.py, utils/box_ops.py and the denoising
targets, and bit for bit the values (and gradients) of the earlier
formulation with ``new_tensor``, at pixel centres, edges and out of
range."""
import pytest
import torch
from mmcv.ops import point_sample
from mmengine.structures import InstanceData

from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from projects.mask_dino.analysis.benchmark import DispatchCounter
from projects.mask_dino.layers import MaskDINODenoisingGenerator
from projects.mask_dino.utils import (mask_boxes_to_anchor_logits,
                                      point_sample_rows)
from projects.mask_dino.utils.box_ops import box_scale
from projects.mask_dino.utils.point_ops import grid_sample_positions

DTYPES = [torch.float32, torch.float64]


def host_constant_positions(loc, size):
    """The formulation before #15: constants copied from the host."""
    grid = 2 * loc - 1
    pos = torch.addcmul(loc.new_tensor(-0.5), grid + 1, size / 2)
    pos = torch.clamp(pos, min=loc.new_tensor(-1.0), max=size)
    corner = pos.floor()
    return pos - corner, corner


def boundary_locations(size, dtype):
    """Normalised coordinates: every pixel edge and centre of a map of
    ``size`` pixels, from 2 pixels before it to 2 after, plus 0 and 1,
    their nearest neighbours and far out of range."""
    k = torch.arange(-2, size + 3, dtype=torch.float64)
    loc = torch.cat([k / size, (k + 0.5) / size]).to(dtype)
    ends = torch.tensor([0.0, 1.0, -5.0, 7.0], dtype=dtype)
    near = torch.cat([
        torch.nextafter(ends[:2], ends[:2] + 1),
        torch.nextafter(ends[:2], ends[:2] - 1)
    ])
    return torch.cat([loc, ends, near])


def count_syncs(func, *args):
    counter = DispatchCounter()
    with counter.count('run'):
        func(*args)
    return counter.results()['run']['syncs']


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('sizes', [(21, 13, 7), (64, 32, 16)])
def test_positions_equal_host_constant_formulation(dtype, sizes):
    # (N, L): the edges and centres of every size, at every level
    loc = torch.cat([boundary_locations(s, dtype) for s in sizes])
    loc = loc[:, None].repeat(1, len(sizes))
    size = torch.tensor(sizes, dtype=dtype)
    grads = torch.rand(2, *loc.shape, dtype=dtype)

    outputs = []
    for func in (grid_sample_positions, host_constant_positions):
        x = loc.clone().requires_grad_()
        frac, corner = func(x, size)
        (frac * grads[0] + corner * grads[1]).sum().backward()
        outputs.append((frac, corner, x.grad))
    for new, old in zip(*outputs):
        assert new.dtype == dtype and torch.equal(new, old)
    # 0-dim size, as point_sample_rows passes it
    for new, old in zip(
            grid_sample_positions(loc[:, 0], size.new_full((), sizes[0])),
            host_constant_positions(loc[:, 0], size.new_tensor(sizes[0]))):
        assert torch.equal(new, old)


@pytest.mark.parametrize('dtype', DTYPES)
def test_point_sample_rows_exact_at_centres_and_edges(dtype):
    """On a 16 x 8 map, centres, edges and half-pixel outside are dyadic:
    every bilinear weight is 0, 1/2 or 1 and both samplers are exact."""
    torch.manual_seed(0)
    masks = torch.rand(3, 8, 16) > 0.5
    xs = boundary_locations(16, dtype)
    ys = boundary_locations(8, dtype)
    points = torch.stack(torch.meshgrid(xs, ys, indexing='ij'), -1)
    points = points.reshape(1, -1, 2).repeat(4, 1, 1)
    rows = torch.tensor([2, 0, 2, 1])
    out = point_sample_rows(masks, rows, points)
    assert out.dtype == dtype
    dyadic = (points * 32 == (points * 32).round()).all(-1)
    expected = point_sample(masks[rows].to(dtype)[:, None], points)[:, 0]
    assert torch.equal(out[dyadic], expected[dyadic])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize('dtype', DTYPES)
def test_point_ops_no_host_sync(dtype):
    loc = torch.rand(2, 5, 12, dtype=dtype, requires_grad=True)
    size = torch.tensor([21.0, 13.0, 7.0], dtype=dtype).repeat_interleave(4)

    def positions_and_backward():
        frac, corner = grid_sample_positions(loc, size)
        (frac + corner).sum().backward()

    assert count_syncs(positions_and_backward) == 0
    masks = torch.rand(3, 8, 16) > 0.5
    assert count_syncs(point_sample_rows, masks, torch.tensor([2, 0]),
                       torch.rand(2, 6, 2, dtype=dtype)) == 0
    # the counter sees the host copies of the earlier formulation
    assert count_syncs(host_constant_positions, loc, size) == 2


@pytest.mark.parametrize('dtype', DTYPES + [torch.float16])
def test_box_scale(dtype):
    like = torch.zeros(3, dtype=dtype)
    scale = box_scale(like, 1333, 800)
    assert scale.dtype == dtype
    assert torch.equal(scale, like.new_tensor([1333, 800, 1333, 800]))
    assert count_syncs(box_scale, like, 1333, 800) == 0


@pytest.mark.parametrize('dtype', DTYPES)
def test_anchor_logits_and_dn_targets_without_host_copy(dtype):
    torch.manual_seed(0)
    boxes = torch.rand(2, 5, 4, dtype=dtype) * 40
    boxes[..., 2:] += boxes[..., :2]
    out = mask_boxes_to_anchor_logits(boxes, 37, 53)
    expected = inverse_sigmoid(
        bbox_xyxy_to_cxcywh(boxes) / boxes.new_tensor([53, 37, 53, 37]),
        eps=1e-5)
    assert out.dtype == dtype and torch.equal(out, expected)
    assert count_syncs(mask_boxes_to_anchor_logits, boxes, 37, 53) == 0

    gen = MaskDINODenoisingGenerator(num_classes=5, embed_dims=4)
    gts = [
        InstanceData(labels=torch.tensor([1, 3]), bboxes=boxes[0, :2]),
        InstanceData(labels=torch.tensor([0]), bboxes=boxes[1, :1])
    ]
    metas = [dict(img_shape=(37, 53)), dict(img_shape=(61, 29))]
    labels, bboxes, num_gts = gen.collect_targets(gts, metas)
    expected = torch.cat([
        bbox_xyxy_to_cxcywh(gt.bboxes.float()) /
        gt.bboxes.new_tensor([w, h, w, h])
        for gt, (h, w) in zip(gts, (m['img_shape'] for m in metas))
    ])
    assert num_gts == [2, 1] and labels.tolist() == [1, 3, 0]
    assert bboxes.dtype == expected.dtype and torch.equal(bboxes, expected)
    assert count_syncs(gen.collect_targets, gts, metas) == 0
