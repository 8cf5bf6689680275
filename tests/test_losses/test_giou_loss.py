"""The criterion's ``loss_iou`` equals the configured GIoU loss (mmdet's
GIoULoss, or DETRGIoULoss with the official eps) on the matched pairs of
every set, values and gradients, with no host copy of its own; other loss
types are called set by set; DETRGIoULoss is the official formula.

Everything is observed through the criterion's forward (its loss dict) and
its public ``get_matched_pairs``, against mmdet's losses called directly on
the pairs."""
import pytest
import torch
from conftest import tiny_cfg
from mmdet.models.losses import GIoULoss, L1Loss
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData

from projects.mask_dino.analysis.benchmark import DispatchCounter
from projects.mask_dino.losses import DETRGIoULoss, MaskDINOCriterion

IMG_SHAPES = [(20, 30), (16, 24)]  # (h, w), alternating over the images
W_IOU = 2.0
SET_PREFIXES = ('', 'd0.', 'd1.')  # final set and two aux sets


def _boxes(n, dtype, seed):
    """xyxy boxes in [0, 1.5], box 0 equal to box 1, box 2 empty."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype)
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 0.5
    boxes = torch.cat([xy, xy + wh], -1)
    boxes[0] = boxes[1]  # identical boxes
    boxes[2, 2:] = boxes[2, :2]  # empty box
    return boxes


class OwnGIoU(GIoULoss):
    """A GIoU loss of another type: the criterion calls it set by set;
    records (number of pairs, avg_factor) of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def forward(self, pred, target, **kwargs):
        self.calls.append((len(pred), kwargs['avg_factor']))
        return super().forward(pred, target, **kwargs)


def _criterion(loss_type, **kwargs):
    """A box-only criterion (classes 0: thing, 1: stuff) whose
    ``loss_iou`` is ``loss_type(loss_weight=2.0)``."""
    criterion = MaskDINOCriterion(
        num_classes=2,
        num_things_classes=1,
        assigner=dict(
            type='HybridHungarianAssigner',
            match_costs=[dict(type='FocalLossCost', weight=4.0)],
            box_match_costs=[
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ]),
        loss_mask=None,
        loss_dice=None,
        with_mask=False,
        **kwargs)
    # the configured module itself, not a config of it: also types that
    # are not registered (OwnGIoU)
    criterion.loss_iou = loss_type(loss_weight=W_IOU)
    return criterion


def _factor(img_id):
    h, w = IMG_SHAPES[img_id % 2]
    return torch.tensor([w, h, w, h], dtype=torch.float32)


def _one_pair_per_image(num_imgs):
    """One GT and one query per image (the matching can only pair them),
    for the final and two aux sets: (outputs, gts, metas, normalised xyxy
    GT boxes). The final set's box 1 equals its GT box, GT 2 is empty."""
    gt_norm = _boxes(num_imgs, torch.float32, 0)
    gts = [
        InstanceData(
            labels=torch.zeros(1, dtype=torch.long),
            bboxes=(gt_norm[b] * _factor(b))[None])
        for b in range(num_imgs)
    ]
    metas = [dict(img_shape=IMG_SHAPES[b % 2]) for b in range(num_imgs)]
    # the GT boxes as the criterion sees them: pixels / img_shape, cxcywh
    targets = bbox_xyxy_to_cxcywh(
        torch.cat([gt.bboxes / _factor(b) for b, gt in enumerate(gts)]))
    sets = []
    for seed in range(len(SET_PREFIXES)):
        pred = bbox_xyxy_to_cxcywh(_boxes(num_imgs, torch.float32, seed + 1))
        if seed == 0:
            pred[1] = targets[1]
        sets.append(
            dict(
                cls_scores=torch.zeros(num_imgs, 1, 2),
                bbox_preds=pred.view(num_imgs, 1, 4).requires_grad_()))
    outputs = dict(sets[0], aux_outputs=sets[1:])
    return outputs, gts, metas, bbox_cxcywh_to_xyxy(targets)


def test_configs_use_detr_giou_loss():
    """The losses below are checked for the loss the configs use."""
    for task in ('instance', 'panoptic', 'semantic'):
        loss_iou = tiny_cfg(task).panoptic_head.criterion.loss_iou
        assert loss_iou.type == 'DETRGIoULoss'


@pytest.mark.parametrize('loss_type', [GIoULoss, DETRGIoULoss, OwnGIoU])
def test_loss_iou_equals_configured_loss_on_matched_pairs(loss_type):
    """Per set, ``loss_iou`` and its gradients are those of the configured
    loss called on the set's pairs with the number of GT as avg_factor,
    also for identical and empty boxes."""
    num_imgs = 12
    criterion = _criterion(loss_type)
    outputs, gts, metas, targets = _one_pair_per_image(num_imgs)
    losses = criterion(outputs, gts, metas)
    reference = loss_type(loss_weight=W_IOU)
    for prefix, preds in zip(SET_PREFIXES,
                             [outputs] + outputs['aux_outputs']):
        leaf = preds['bbox_preds']
        value = losses[prefix + 'loss_iou']
        (grad, ) = torch.autograd.grad(value, leaf, retain_graph=True)
        pred = leaf.detach().clone().requires_grad_()
        expected = reference(
            bbox_cxcywh_to_xyxy(pred.view(-1, 4)),
            targets,
            avg_factor=float(num_imgs))
        (expected_grad, ) = torch.autograd.grad(expected, pred)
        assert expected > 0
        name = prefix + 'loss_iou'
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=0,
                                   msg=name)
        torch.testing.assert_close(
            grad, expected_grad, rtol=1e-6, atol=1e-9, msg=name)
        assert torch.isfinite(grad).all()
    # a loss type without a batched form: one call per set, on its pairs
    if loss_type is OwnGIoU:
        assert criterion.loss_iou.calls == [(num_imgs, float(num_imgs))] * 3


@pytest.mark.parametrize('loss_type', [GIoULoss, DETRGIoULoss, OwnGIoU])
def test_set_without_box_pairs_gets_zero_loss_iou(loss_type):
    """Decoupled stuff boxes: with one query and a thing and a stuff GT,
    the sets matched to the stuff GT have no box pair and a zero (but
    connected) loss_iou, the others the loss of their pair, normalised by
    the 2 GT, in the same computation."""
    criterion = _criterion(loss_type, decouple_stuff_boxes=True)
    gt_norm = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.3, 0.1, 0.9, 0.4]])
    gts = [
        InstanceData(
            labels=torch.tensor([0, 1]), bboxes=gt_norm * _factor(0))
    ]
    metas = [dict(img_shape=IMG_SHAPES[0])]
    # the class logits pick the GT: thing (label 0), stuff, thing
    wanted = [0, 1, 0]
    sets = []
    for k, label in enumerate(wanted):
        logits = torch.full((1, 1, 2), -10.0)
        logits[0, 0, label] = 10.0
        boxes = bbox_xyxy_to_cxcywh(_boxes(4, torch.float32, k + 1)[3:])
        sets.append(
            dict(
                cls_scores=logits,
                bbox_preds=boxes.view(1, 1, 4).requires_grad_()))
    outputs = dict(sets[0], aux_outputs=sets[1:])
    losses = criterion(outputs, gts, metas)
    target = bbox_cxcywh_to_xyxy(
        bbox_xyxy_to_cxcywh(gts[0].bboxes / _factor(0)))
    reference = loss_type(loss_weight=W_IOU)
    for prefix, preds, label in zip(SET_PREFIXES, sets, wanted):
        ((pred_inds, gt_inds), ) = criterion.get_matched_pairs(
            preds, gts, metas)
        assert pred_inds.tolist() == [0] and gt_inds.tolist() == [label]
        value = losses[prefix + 'loss_iou']
        (grad, ) = torch.autograd.grad(
            value, preds['bbox_preds'], retain_graph=True)
        if label == 1:
            assert value == 0 and (grad == 0).all()
            continue
        expected = reference(
            bbox_cxcywh_to_xyxy(preds['bbox_preds'].detach().view(-1, 4)),
            target[:1],
            avg_factor=2.0)
        assert expected > 0
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=0)
        assert (grad != 0).any()
    if loss_type is OwnGIoU:
        # not called for the set without pairs
        assert criterion.loss_iou.calls == [(1, 2.0), (1, 2.0)]


def _forward_syncs(loss_type):
    criterion = _criterion(loss_type)
    outputs, gts, metas, _ = _one_pair_per_image(4)
    counter = DispatchCounter()
    with counter.count('forward'):
        criterion(outputs, gts, metas)
    return counter.results()['forward']['syncs']


def test_giou_loss_adds_no_host_sync():
    """mmdet's GIoULoss copies its eps to the device (a host sync on GPUs)
    in every call; the criterion's loss_iou, configured as GIoULoss or
    DETRGIoULoss, adds no sync to the forward: as many as with an L1 loss
    in its place (sync-free itself), fewer than with a GIoU loss called set
    by set."""
    pred, target = _boxes(8, torch.float32, 0), _boxes(8, torch.float32, 1)
    counter = DispatchCounter()
    with counter.count('l1'):
        L1Loss(loss_weight=W_IOU)(pred, target, avg_factor=4.0)
    with counter.count('mmdet'):
        GIoULoss(loss_weight=W_IOU)(pred, target, avg_factor=4.0)
    assert counter.results()['l1']['syncs'] == 0
    assert counter.results()['mmdet']['syncs'] > 0
    baseline = _forward_syncs(L1Loss)
    assert _forward_syncs(GIoULoss) == baseline
    assert _forward_syncs(DETRGIoULoss) == baseline
    # one call per set (3 sets), each with its own sync
    assert _forward_syncs(OwnGIoU) >= baseline + 3


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
    weight = torch.rand(
        12, 4, generator=torch.Generator().manual_seed(2),
        dtype=torch.float64)
    torch.testing.assert_close(
        loss(pred, target, weight=weight, reduction_override='sum'),
        2 * ((1 - giou) * weight.mean(-1)).sum())
    # the mmdet loss differs by about eps / area
    mmdet = GIoULoss(loss_weight=2.0)(pred, target, reduction_override='none')
    assert not torch.equal(mmdet, 2 * (1 - giou))
    with pytest.raises(ValueError, match='reduction_override'):
        loss(pred, target, reduction_override='max')
