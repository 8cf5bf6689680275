"""The criterion's GIoU loss without a host copy equals mmdet's GIoULoss."""
import pytest
import torch
from conftest import tiny_cfg
from mmdet.models.losses import GIoULoss
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

from projects.mask_dino.analysis.benchmark import DispatchCounter


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


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('avg_factor', [7.0, 'tensor'])
def test_equals_mmdet_giou_loss(dtype, avg_factor):
    criterion = _criterion()
    assert type(criterion.loss_iou) is GIoULoss
    if avg_factor == 'tensor':
        avg_factor = torch.tensor(5.0)
    pred = _boxes(16, dtype, 0).requires_grad_()
    target = _boxes(16, dtype, 1)
    target[1] = pred[1].detach()
    ours = criterion._loss_iou(pred, target, avg_factor)
    (grad, ) = torch.autograd.grad(ours, pred)
    pred_ref = pred.detach().clone().requires_grad_()
    ref = criterion.loss_iou(pred_ref, target, avg_factor=avg_factor)
    (grad_ref, ) = torch.autograd.grad(ref, pred_ref)
    assert torch.equal(ours, ref)
    assert torch.equal(grad, grad_ref)


def test_no_host_sync_and_other_losses_called_as_configured():
    criterion = _criterion()
    pred, target = _boxes(8, torch.float32, 0), _boxes(8, torch.float32, 1)
    counter = DispatchCounter()
    with counter.count('loss'):
        criterion._loss_iou(pred, target, 4.0)
    assert counter.results()['loss']['syncs'] == 0
    with counter.count('mmdet'):
        criterion.loss_iou(pred, target, avg_factor=4.0)
    assert counter.results()['mmdet']['syncs'] > 0
    calls = []

    class Spy(GIoULoss):
        def forward(self, *args, **kwargs):
            calls.append(kwargs['avg_factor'])
            return super().forward(*args, **kwargs)

    criterion.loss_iou = Spy(loss_weight=2.0)
    criterion._loss_iou(pred, target, 4.0)
    assert calls == [4.0]
