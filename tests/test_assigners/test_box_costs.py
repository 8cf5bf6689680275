"""The box match costs without host constants (#15): bit for bit mmdet's
``BBoxL1Cost`` / ``IoUCost`` / ``bbox_overlaps`` (values and gradients,
identical and empty boxes included), and no host sync."""
import itertools

import pytest
import torch
from mmdet.models.task_modules.assigners import BBoxL1Cost, IoUCost
from mmdet.structures.bbox import bbox_overlaps
from mmengine.structures import InstanceData

from projects.mask_dino.analysis.benchmark import DispatchCounter
from projects.mask_dino.task_modules.assigners import (
    HybridHungarianAssigner, hybrid_hungarian_assigner)
from projects.mask_dino.task_modules.assigners.box_costs import row_match_cost
from projects.mask_dino.utils.box_ops import box_overlaps

DTYPES = [torch.float32, torch.float64]
IMG_META = dict(img_shape=(37, 53))


def count_syncs(func, *args):
    counter = DispatchCounter()
    with counter.count('run'):
        func(*args)
    return counter.results()['run']['syncs']


def random_boxes(num, dtype, seed=0):
    """Pixel xyxy boxes; rows 0-2 repeat rows 3-5, row 6 has no area and
    row 7 is all zeros."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=gen, dtype=torch.float64) * 40
    wh = torch.rand(num, 2, generator=gen, dtype=torch.float64) * 20
    boxes = torch.cat([xy, xy + wh], -1)
    boxes[:3] = boxes[3:6]
    boxes[6, 2:] = boxes[6, :2]
    boxes[7] = 0
    return boxes.to(dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('mode, is_aligned',
                         itertools.product(('iou', 'iof', 'giou'),
                                           (False, True)))
def test_box_overlaps_equal_mmdet(dtype, mode, is_aligned):
    boxes1 = random_boxes(12, dtype)
    boxes2 = random_boxes(12 if is_aligned else 9, dtype, seed=1)
    boxes2[:8] = boxes1[:8]  # identical pairs, empty against empty
    outputs = []
    for func in (box_overlaps, bbox_overlaps):
        b1, b2 = boxes1.clone().requires_grad_(), boxes2.clone(
        ).requires_grad_()
        out = func(b1, b2, mode=mode, is_aligned=is_aligned)
        weights = torch.linspace(0.5, 2, out.numel(), dtype=dtype)
        (out * weights.view_as(out)).sum().backward()
        outputs.append((out, b1.grad, b2.grad))
    for new, old in zip(*outputs):
        assert new.dtype == dtype and torch.equal(new, old)
    # batch dims and empty inputs give mmdet's shapes
    for shape1, shape2 in (((2, 5, 4), (2, 3, 4)), ((0, 4), (3, 4)),
                           ((3, 4), (0, 4))):
        if is_aligned and shape1 != shape2:
            continue
        b1, b2 = torch.rand(shape1, dtype=dtype), torch.rand(
            shape2, dtype=dtype)
        assert torch.equal(
            box_overlaps(b1, b2, mode, is_aligned),
            bbox_overlaps(b1, b2, mode, is_aligned))
    assert count_syncs(box_overlaps, boxes1, boxes2, mode, is_aligned) == 0


def test_box_overlaps_bad_input():
    with pytest.raises(ValueError, match='mode'):
        box_overlaps(torch.rand(2, 4), torch.rand(2, 4), mode='diou')
    with pytest.raises(ValueError, match='bboxes2'):
        box_overlaps(torch.rand(2, 4), torch.rand(2, 5))
    with pytest.raises(ValueError, match='do not match'):
        box_overlaps(torch.rand(2, 4), torch.rand(3, 4), is_aligned=True)


@pytest.mark.parametrize('dtype', DTYPES + [torch.float16])
@pytest.mark.parametrize('match_cost', [
    BBoxL1Cost(box_format='xyxy', weight=5.0),
    BBoxL1Cost(box_format='xywh', weight=5.0),
    IoUCost(iou_mode='giou', weight=2.0),
    IoUCost(iou_mode='iou', weight=1.5),
])
def test_row_match_cost_equals_mmdet(dtype, match_cost):
    if dtype == torch.float16 and isinstance(match_cost, BBoxL1Cost):
        pytest.skip('cdist has no CPU float16 kernel')
    preds = InstanceData(bboxes=random_boxes(10, dtype))
    gts = InstanceData(bboxes=random_boxes(10, dtype, seed=1)[:7])
    gts.bboxes[:2] = preds.bboxes[:2]
    cost = row_match_cost(match_cost, preds, gts, IMG_META)
    expected = match_cost(preds, gts, IMG_META)
    assert cost.dtype == expected.dtype and torch.equal(cost, expected)
    assert count_syncs(row_match_cost, match_cost, preds, gts, IMG_META) == 0


def test_row_match_cost_calls_other_costs_as_configured():
    """A subclass of a box cost may change the formula: it is called."""

    class ShiftedL1(BBoxL1Cost):

        def __call__(self, *args, **kwargs):
            return super().__call__(*args, **kwargs) + 1

    preds = InstanceData(bboxes=random_boxes(8, torch.float32))
    gts = InstanceData(bboxes=random_boxes(8, torch.float32, seed=1))
    cost = row_match_cost(ShiftedL1(), preds, gts, IMG_META)
    assert torch.equal(cost, BBoxL1Cost()(preds, gts, IMG_META) + 1)


def test_assigner_cost_matrices_unchanged(monkeypatch):
    """The assigner's batched cost matrices equal those with mmdet's cost
    classes called as before, and its box costs make no host sync."""
    assigner = HybridHungarianAssigner(
        match_costs=[dict(type='FocalLossCost', weight=4.0, eps=1e-8)],
        box_match_costs=[
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)
        ])
    torch.manual_seed(0)
    num_sets, num_preds = 3, 10
    scores = torch.randn(num_sets, num_preds, 5)
    bboxes = random_boxes(num_sets * num_preds, torch.float32).view(
        num_sets, num_preds, 4)
    gt_labels = torch.tensor([0, 3, 1, 4])
    gt_bboxes = random_boxes(8, torch.float32, seed=2)[4:]
    gt_bboxes[0] = bboxes[1, 3]
    args = (scores, bboxes, None, gt_labels, gt_bboxes, None, IMG_META)
    cost = assigner.get_cost_matrices(*args)

    def mmdet_call(match_cost, preds, gts, img_meta):
        return match_cost(preds, gts, img_meta)

    monkeypatch.setattr(hybrid_hungarian_assigner, 'row_match_cost',
                        mmdet_call)
    assert torch.equal(cost, assigner.get_cost_matrices(*args))
    # mmdet's box costs copy their constants from the host, 2 per call
    assert count_syncs(assigner.get_cost_matrices, *args) == 2
    monkeypatch.undo()
    assert count_syncs(assigner.get_cost_matrices, *args) == 0
