"""Class and box losses of all prediction sets computed group by group
(#15) against a plain per-set reference: per set, the labels and box pairs
gathered in Python and mmdet's FocalLoss / CrossEntropyLoss / L1Loss /
GIoULoss called on them. Same values and gradients; host syncs and
operators that do not grow with the number of sets."""
import numpy as np
import pytest
import torch
from mmdet.models.losses import (CrossEntropyLoss, FocalLoss, GIoULoss,
                                 L1Loss)
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData

import projects.mask_dino  # noqa: F401  (registers the assigner)
from projects.mask_dino.analysis.benchmark import DispatchCounter
from projects.mask_dino.losses import MaskDINOCriterion

C = 4  # classes 0, 1 things; 2, 3 stuff
NUM_THINGS = 2
Q = 7  # matching queries
NUM_GROUPS, SINGLE_PAD = 2, 3  # dn layout: 6 dn queries
h, w = 4, 5  # mask prediction size
H, W = 16, 20  # padded input size
IMG_SHAPES = [(16, 20), (12, 16)]
W_CLS, W_BBOX, W_IOU = 4.0, 5.0, 2.0
CLASS_WEIGHT = [1.0] * C + [0.1]

FOCAL = dict(
    type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
    loss_weight=W_CLS)
CE = dict(
    type='CrossEntropyLoss',
    use_sigmoid=False,
    loss_weight=W_CLS,
    reduction='mean',
    class_weight=CLASS_WEIGHT)
BOX_COSTS = [
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0),
]


def build_criterion(loss_cls=FOCAL, with_mask=True, **kwargs):
    match_costs = [dict(type='FocalLossCost', weight=4.0)]
    if with_mask:
        match_costs += [
            dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
            dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)
        ]
    assigner = dict(
        type='HybridHungarianAssigner',
        match_costs=match_costs,
        box_match_costs=BOX_COSTS,
        num_points=8)
    box_only = {} if with_mask else dict(loss_mask=None, loss_dice=None)
    return MaskDINOCriterion(
        num_classes=C,
        assigner=assigner,
        loss_cls=loss_cls,
        loss_bbox=dict(type='L1Loss', loss_weight=W_BBOX),
        loss_iou=dict(type='GIoULoss', loss_weight=W_IOU),
        num_points=h * w,
        num_things_classes=NUM_THINGS,
        with_mask=with_mask,
        **box_only,
        **kwargs)


def make_gt(labels_per_image, with_mask=True, seed=0):
    """GT with random pixel boxes inside each image (and random masks)."""
    gen = torch.Generator().manual_seed(seed)
    batch_gt = []
    for labels, (img_h, img_w) in zip(labels_per_image, IMG_SHAPES):
        n = len(labels)
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([img_w, img_h
                                                             ]) * 0.5
        wh = (0.1 + 0.4 * torch.rand(n, 2, generator=gen)) * torch.tensor(
            [img_w, img_h])
        gt = InstanceData(
            labels=torch.tensor(labels, dtype=torch.long),
            bboxes=torch.cat([xy, xy + wh], -1))
        if with_mask:
            gt.masks = torch.rand(n, H, W, generator=gen) > 0.5
        batch_gt.append(gt)
    return batch_gt


def make_metas():
    return [
        dict(img_shape=s, batch_input_shape=(H, W), pad_shape=(H, W))
        for s in IMG_SHAPES
    ]


def make_set(num_queries, cls_channels, with_mask, gen):
    boxes = torch.cat([
        0.2 + 0.6 * torch.rand(2, num_queries, 2, generator=gen),
        0.05 + 0.4 * torch.rand(2, num_queries, 2, generator=gen)
    ], -1)
    preds = dict(
        cls_scores=(2 * torch.randn(
            2, num_queries, cls_channels, generator=gen)).requires_grad_(),
        bbox_preds=boxes.requires_grad_())
    if with_mask:
        preds['mask_preds'] = torch.randn(
            2, num_queries, h, w, generator=gen).requires_grad_()
    return preds


def make_outputs(num_aux, cls_channels, with_mask=True, seed=1):
    """Final, ``num_aux`` aux and interm sets, dn set with ``num_aux`` aux
    sets (all supervised: two-stage)."""
    gen = torch.Generator().manual_seed(seed)
    outputs = make_set(Q, cls_channels, with_mask, gen)
    outputs['aux_outputs'] = [
        make_set(Q, cls_channels, with_mask, gen) for _ in range(num_aux)
    ]
    outputs['interm_outputs'] = make_set(Q, cls_channels, with_mask, gen)
    dn = make_set(NUM_GROUPS * SINGLE_PAD, cls_channels, with_mask, gen)
    dn['aux_outputs'] = [
        make_set(NUM_GROUPS * SINGLE_PAD, cls_channels, with_mask, gen)
        for _ in range(num_aux)
    ]
    outputs['dn_outputs'] = dn
    outputs['dn_meta'] = dict(num_groups=NUM_GROUPS, single_pad=SINGLE_PAD)
    return outputs


def named_sets(outputs):
    sets = [('', outputs)] + [
        (f'd{i}.', a) for i, a in enumerate(outputs['aux_outputs'])
    ] + [('enc_', outputs['interm_outputs'])]
    dn = outputs['dn_outputs']
    dn_sets = [('dn_', dn)] + [
        (f'd{i}.dn_', a) for i, a in enumerate(dn['aux_outputs'])
    ]
    return sets, dn_sets


def fake_matching(monkeypatch, batch_gt, seed=5):
    """Hungarian matching replaced by random (but fixed) pairs per set and
    image, sorted by prediction as the solver gives them; returns them.

    A seam on the private ``_match_sets``: the losses under test are given
    known pairs, so the reference needs no matching of its own and any
    pairing (not only the solver's optimum) is exercised."""
    rng = np.random.RandomState(seed)
    matched = []

    def match_sets(self, sets, batch_gt_instances, batch_img_metas, factors,
                   points, gt_masks):
        matched.clear()
        for _ in sets:
            set_pairs = []
            for gt in batch_gt_instances:
                n = min(len(gt), Q)
                pred_inds = np.sort(rng.choice(Q, n, replace=False))
                set_pairs.append((pred_inds, rng.permutation(n)))
            matched.append(set_pairs)
        return [list(p) for p in matched]

    monkeypatch.setattr(MaskDINOCriterion, '_match_sets', match_sets)
    return matched


# ----------------------------------------------------------------------------
# plain per-set reference
def reference_set_losses(loss_cls, preds, pairs, batch_gt, avg_factor,
                         decouple):
    """loss_cls, loss_bbox and loss_iou of one set from mmdet's losses."""
    cls_scores = preds['cls_scores']
    labels = torch.full(cls_scores.shape[:2], C, dtype=torch.long)
    for b, (p, g) in enumerate(pairs):
        labels[b, p] = batch_gt[b].labels[g]
    cls_scores, labels = cls_scores.flatten(0, 1), labels.flatten()
    if isinstance(loss_cls, FocalLoss):
        cls = loss_cls(cls_scores, labels, avg_factor=avg_factor)
    else:
        weight_sum = torch.tensor(CLASS_WEIGHT)[labels].sum()
        cls = loss_cls(cls_scores, labels, avg_factor=weight_sum)
    src, tgt = [], []
    for b, (p, g) in enumerate(pairs):
        gt = batch_gt[b]
        if decouple:
            keep = gt.labels[g] < NUM_THINGS
            p, g = p[keep], g[keep]
        img_h, img_w = IMG_SHAPES[b]
        factor = torch.tensor([img_w, img_h, img_w, img_h])
        src.append(preds['bbox_preds'][b][p])
        tgt.append(bbox_xyxy_to_cxcywh(gt.bboxes[g] / factor))
    src, tgt = torch.cat(src), torch.cat(tgt)
    if len(src) == 0:
        zero = preds['bbox_preds'].sum() * 0
        return cls, zero, zero
    l1 = L1Loss(loss_weight=W_BBOX)(src, tgt, avg_factor=avg_factor)
    giou = GIoULoss(loss_weight=W_IOU)(
        bbox_cxcywh_to_xyxy(src), bbox_cxcywh_to_xyxy(tgt),
        avg_factor=avg_factor)
    return cls, l1, giou


def reference_losses(loss_cls, outputs, matched, batch_gt, decouple):
    avg = float(max(sum(len(g) for g in batch_gt), 1))
    sets, dn_sets = named_sets(outputs)
    as_tensors = [[(torch.from_numpy(p), torch.from_numpy(g))
                   for p, g in set_pairs] for set_pairs in matched]
    dn_pairs = []
    for gt in batch_gt:
        g = torch.arange(len(gt))
        starts = torch.arange(NUM_GROUPS) * SINGLE_PAD
        dn_pairs.append(((starts[:, None] + g).flatten(),
                         g.repeat(NUM_GROUPS)))
    expected = {}
    for (prefix, preds), avg_factor, pairs in zip(
            sets + dn_sets, [avg] * len(sets) + [avg * NUM_GROUPS] *
            len(dn_sets), as_tensors + [dn_pairs] * len(dn_sets)):
        values = reference_set_losses(loss_cls, preds, pairs, batch_gt,
                                      avg_factor, decouple)
        for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'),
                               values):
            expected[prefix + name] = value
    return expected


def leaves(outputs):
    sets, dn_sets = named_sets(outputs)
    return [p[k] for _, p in sets + dn_sets
            for k in ('cls_scores', 'bbox_preds')]


def assert_equal_to_reference(losses, expected, outputs):
    for key, value in expected.items():
        torch.testing.assert_close(
            losses[key], value, rtol=1e-5, atol=1e-7, msg=key)
    params = leaves(outputs)
    grads = torch.autograd.grad(
        sum(losses[k] for k in expected), params, retain_graph=True)
    ref_grads = torch.autograd.grad(sum(expected.values()), params)
    num_nonzero = 0
    for g, r in zip(grads, ref_grads):
        assert (g - r).abs().max() <= 1e-5 * max(r.abs().max(), 1e-12)
        num_nonzero += bool(r.abs().max() > 0)
    return num_nonzero


CASES = {
    # focal loss with dn sets, 3 GT + 1 GT (a stuff GT in each image)
    'focal': dict(loss_cls=FOCAL, labels=[[0, 2, 1], [3]]),
    # decoupled stuff boxes: the stuff pairs get no box loss
    'decouple': dict(
        loss_cls=FOCAL, labels=[[0, 2, 1], [3]], decouple=True),
    # all-stuff image 1: its pairs get no box loss at all
    'decouple_all_stuff': dict(
        loss_cls=FOCAL, labels=[[0, 2], [3, 2]], decouple=True),
    # image 1 without GT (its queries are all background, no pair)
    'zero_gt_image': dict(loss_cls=FOCAL, labels=[[1, 0, 3], []]),
    'no_gt': dict(loss_cls=FOCAL, labels=[[], []]),
    'box_only': dict(loss_cls=FOCAL, labels=[[0, 2, 1], [3]],
                     with_mask=False),
    'box_only_zero_gt_image': dict(
        loss_cls=FOCAL, labels=[[0, 1], []], with_mask=False),
    # softmax CE with a no-object weight (semantic_ce configs)
    'softmax_ce': dict(loss_cls=CE, labels=[[0, 2, 1], [3]]),
}


@pytest.mark.parametrize('case', list(CASES))
def test_equals_per_set_reference(case, monkeypatch):
    cfg = CASES[case]
    with_mask = cfg.get('with_mask', True)
    decouple = cfg.get('decouple', False)
    criterion = build_criterion(
        cfg['loss_cls'], with_mask=with_mask, decouple_stuff_boxes=decouple)
    batch_gt = make_gt(cfg['labels'], with_mask)
    use_sigmoid = cfg['loss_cls'] is FOCAL
    outputs = make_outputs(2, C if use_sigmoid else C + 1, with_mask)
    matched = fake_matching(monkeypatch, batch_gt)
    torch.manual_seed(0)
    losses = criterion(outputs, batch_gt, make_metas())
    # 4 matching + 3 dn sets, 5 losses each (3 without masks)
    assert len(losses) == 7 * (5 if with_mask else 3)
    loss_cls = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25,
                         loss_weight=W_CLS) if use_sigmoid else \
        CrossEntropyLoss(use_sigmoid=False, loss_weight=W_CLS,
                         class_weight=CLASS_WEIGHT)
    expected = reference_losses(loss_cls, outputs, matched, batch_gt,
                                decouple)
    num_nonzero = assert_equal_to_reference(losses, expected, outputs)
    num_gts = sum(len(lab) for lab in cfg['labels'])
    # the class logits of all 7 sets get a gradient, the boxes with pairs
    assert num_nonzero == (14 if num_gts else 7)
    if num_gts:
        assert all(losses[k] > 0 for k in expected
                   if 'cls' in k or not decouple)
    else:
        assert all(losses[k] == 0 for k in expected if 'cls' not in k)


def test_losses_called_set_by_set_equal_batched(monkeypatch):
    """Losses without a batched form here (another type, or another
    reduction) are called per set on its gathered pairs: same values."""
    batch_gt = make_gt([[0, 2, 1], [3]])
    outputs = make_outputs(2, C)
    criterion = build_criterion(decouple_stuff_boxes=True)
    # the same fixed pairs in both forwards (see fake_matching)
    monkeypatch.setattr(MaskDINOCriterion, '_match_sets',
                        lambda *args: matched)
    rng = np.random.RandomState(0)
    matched = [[(np.sort(rng.choice(Q, len(gt), replace=False)),
                 rng.permutation(len(gt))) for gt in batch_gt]
               for _ in range(4)]
    torch.manual_seed(0)
    batched = criterion(outputs, batch_gt, make_metas())

    class OwnFocal(FocalLoss):
        pass

    class OwnL1(L1Loss):
        pass

    class OwnGIoU(GIoULoss):
        pass

    calls = []

    def spy(loss):
        forward = loss.forward

        def wrapped(*args, **kwargs):
            calls.append(type(loss).__name__)
            assert 'reduction_override' not in kwargs
            return forward(*args, **kwargs)

        loss.forward = wrapped
        return loss

    criterion.loss_cls = spy(
        OwnFocal(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=W_CLS))
    criterion.loss_bbox = spy(OwnL1(loss_weight=W_BBOX))
    criterion.loss_iou = spy(OwnGIoU(loss_weight=W_IOU))
    torch.manual_seed(0)
    per_set = criterion(outputs, batch_gt, make_metas())
    # 7 sets, one call per set and loss
    assert sorted(set(calls)) == ['OwnFocal', 'OwnGIoU', 'OwnL1']
    assert len(calls) == 21
    assert set(per_set) == set(batched)
    for key in batched:
        torch.testing.assert_close(
            per_set[key], batched[key], rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.parametrize('with_mask', [True, False])
def test_cls_box_losses_syncs_and_operators_do_not_grow_with_the_sets(
        with_mask, monkeypatch):
    """The class and box losses of 5 and of 13 sets dispatch the same
    operators (backward: the same kernels, only views grow), none of them
    a host sync; the whole criterion makes the same few syncs for both.

    The class and box part is counted by wrapping the criterion's private
    ``_loss_cls_boxes``: the forward's other work (matching, mask losses)
    grows with the number of sets, so the part cannot be counted through
    the forward alone."""
    batch_gt = make_gt([[0, 2, 1], [3]], with_mask)
    fake_matching(monkeypatch, batch_gt)
    results = {}
    for num_aux in (1, 5):
        criterion = build_criterion(with_mask=with_mask)
        outputs = make_outputs(num_aux, C, with_mask)
        counter = DispatchCounter()
        with counter.count('criterion'):
            criterion(outputs, batch_gt, make_metas())
        # the class and box part alone, forward and backward
        inner, part = criterion._loss_cls_boxes, []

        def counted(*args, inner=inner, counter=counter, part=part):
            with counter.count('cls_box'):
                part.extend(inner(*args))
            return part

        monkeypatch.setattr(criterion, '_loss_cls_boxes', counted)
        criterion(outputs, batch_gt, make_metas())
        total = sum(v for values in part for v in values)
        with counter.count('cls_box_backward'):
            total.backward()
        results[num_aux] = counter.results()
    few, many = results[1], results[5]
    # 3 + 2 sets against 7 + 6: the same host syncs in the whole
    # criterion, none in the class and box losses
    assert few['criterion']['syncs'] == many['criterion']['syncs'] <= 6
    assert few['cls_box']['syncs'] == many['cls_box']['syncs'] == 0
    # the class and box losses dispatch the same operators for any number
    # of sets; backward, only views grow (the stack's backward selects
    # every set's gradient, the leaves detach theirs)
    assert few['cls_box']['ops'] == many['cls_box']['ops']
    kernels = [r['cls_box_backward']['ops'] - r['cls_box_backward']['views']
               for r in (few, many)]
    assert kernels[0] == kernels[1]
