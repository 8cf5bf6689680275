"""The criterion's GIoU loss without a host copy equals the configured
GIoULoss (mmdet's, or DETRGIoULoss with the official eps), per pair and
reduced per set; DETRGIoULoss is the official formula."""
import pytest
import torch
from conftest import tiny_cfg
from mmdet.models.losses import GIoULoss
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

from projects.mask_dino.analysis.benchmark import DispatchCounter
from projects.mask_dino.losses import DETRGIoULoss
from projects.mask_dino.losses.prediction_set import SetGroup


def _boxes(n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype)
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 0.5
    boxes = torch.cat([xy, xy + wh], -1)
    boxes[0] = boxes[1]  # identical pair below
    boxes[2, 2:] = boxes[2, :2]  # empty box
    return boxes


def _criterion():
    init_default_scope('mmdet')
    return MODELS.build(tiny_cfg('instance').panoptic_head).criterion


@pytest.mark.parametrize('loss_type', [GIoULoss, DETRGIoULoss])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_terms_equal_unreduced_giou_loss(dtype, loss_type):
    criterion = _criterion()
    assert type(criterion.loss_iou) is DETRGIoULoss  # the configs' loss
    criterion.loss_iou = loss_type(loss_weight=2.0)
    pred = _boxes(16, dtype, 0).requires_grad_()
    target = _boxes(16, dtype, 1)
    target[1] = pred[1].detach()
    ours = criterion._giou_terms(pred, target)
    weights = torch.rand(16, dtype=dtype)
    (grad, ) = torch.autograd.grad((ours * weights).sum(), pred)
    pred_ref = pred.detach().clone().requires_grad_()
    ref = criterion.loss_iou(pred_ref, target, reduction_override='none')
    (grad_ref, ) = torch.autograd.grad((ref * weights).sum(), pred_ref)
    assert ours.shape == (16, )
    assert torch.equal(ours, ref)
    assert torch.equal(grad, grad_ref)


def _group(box_counts, avg_factor):
    """A SetGroup of len(box_counts) sets for the per-set reductions."""
    sets = torch.repeat_interleave(
        torch.arange(len(box_counts)), torch.tensor(box_counts))
    return SetGroup(
        set_ids=list(range(len(box_counts))),
        avg_factor=avg_factor,
        cls_rows=None,
        cls_gts=None,
        box_rows=None,
        box_gts=None,
        box_sets=sets,
        box_counts=box_counts)


def test_set_means_equal_mmdet_loss_per_set():
    criterion = _criterion()
    pred, target = _boxes(9, torch.float32, 0), _boxes(9, torch.float32, 1)
    group = _group([4, 0, 5], 7.0)
    ours = criterion._set_means(criterion._giou_terms(pred, target), group)
    ref = torch.stack([
        criterion.loss_iou(pred[:4], target[:4], avg_factor=7.0),
        pred.sum() * 0,
        criterion.loss_iou(pred[4:], target[4:], avg_factor=7.0)
    ])
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    assert ours[1] == 0


def test_no_host_sync_and_other_losses_called_as_configured():
    criterion = _criterion()
    pred, target = _boxes(8, torch.float32, 0), _boxes(8, torch.float32, 1)
    group = _group([3, 5], 4.0)
    counter = DispatchCounter()
    with counter.count('loss'):
        criterion._set_means(criterion._giou_terms(pred, target), group)
    assert counter.results()['loss']['syncs'] == 0
    with counter.count('mmdet'):
        GIoULoss(loss_weight=2.0)(pred, target, avg_factor=4.0)
    assert counter.results()['mmdet']['syncs'] > 0
    calls = []

    class Spy(GIoULoss):
        def forward(self, *args, **kwargs):
            calls.append((len(args[0]), kwargs['avg_factor']))
            return super().forward(*args, **kwargs)

    assert criterion._is_mean(criterion.loss_iou, DETRGIoULoss)
    criterion.loss_iou = Spy(loss_weight=2.0)
    assert not criterion._is_mean(criterion.loss_iou, GIoULoss)
    losses = criterion._set_by_set(criterion.loss_iou, pred, target, group)
    assert calls == [(3, 4.0), (5, 4.0)]
    assert losses.shape == (2, )


def test_detr_giou_loss_is_the_official_formula():
    """1 - GIoU with eps added to the union and the enclosing area (DETR's
    ``generalized_box_iou``), weighted and reduced as mmdet's losses."""
    pred, target = _boxes(12, torch.float64, 0), _boxes(12, torch.float64, 1)
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    union = area(pred) + area(target) - inter
    enclose = (torch.max(pred[:, 2:], target[:, 2:]) -
               torch.min(pred[:, :2], target[:, :2])).clamp(min=0).prod(-1)
    giou = inter / (union + 1e-6) - (enclose - union) / (enclose + 1e-6)
    loss = DETRGIoULoss(loss_weight=2.0)
    torch.testing.assert_close(
        loss(pred, target, reduction_override='none'), 2 * (1 - giou))
    torch.testing.assert_close(
        loss(pred, target, avg_factor=5.0), 2 * (1 - giou).sum() / 5.0)
    weight = torch.rand(12, 4, dtype=torch.float64)
    torch.testing.assert_close(
        loss(pred, target, weight=weight, reduction_override='sum'),
        2 * ((1 - giou) * weight.mean(-1)).sum())
    # the mmdet loss differs by about eps / area
    mmdet = GIoULoss(loss_weight=2.0)(pred, target, reduction_override='none')
    assert not torch.equal(mmdet, 2 * (1 - giou))
    with pytest.raises(ValueError, match='reduction_override'):
        loss(pred, target, reduction_override='max')
