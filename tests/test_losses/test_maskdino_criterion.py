"""Tests of MaskDINOCriterion against hand computations of the official
formulas (Mask DINO criterion, spec section 4)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

import projects.mask_dino  # noqa: F401  (registers the assigner)
from projects.mask_dino.losses import MaskDINOCriterion
from projects.mask_dino.losses import maskdino_criterion as criterion_module

C = 3  # classes: 0, 1 things, 2 stuff (for the decoupled-box test)
Q = 6  # matching queries
h, w = 4, 5  # mask prediction size (1/4 of the padded input)
H, W = 16, 20  # padded batch input size
IMG_SHAPES = [(16, 20), (12, 16)]  # image 1 is padded
W_CLS, W_MASK, W_DICE, W_BBOX, W_IOU = 4.0, 5.0, 5.0, 5.0, 2.0

ASSIGNER = dict(
    type='HybridHungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', weight=4.0, eps=1e-8),
        dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
        dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0),
    ],
    box_match_costs=[
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0),
    ],
    num_points=64)

# Ground truth: (labels, pixel xyxy boxes) per image.
GT_LABELS = [[0, 2], [1]]
GT_BOXES = [[[2., 3., 10., 12.], [11., 1., 19., 9.]], [[3., 2., 9., 10.]]]
# Queries built to resemble each GT -> the expected Hungarian result.
MATCHED = [([4, 1], [0, 1]), ([2], [0])]


def build_criterion(**kwargs):
    cfg = dict(num_classes=C, assigner=ASSIGNER, num_points=h * w)
    cfg.update(kwargs)
    return MaskDINOCriterion(**cfg)


def make_gt(labels=GT_LABELS, boxes=GT_BOXES, seed=0):
    """GT whose full-res masks are 4x4 blocks of a random (h, w) map."""
    gen = torch.Generator().manual_seed(seed)
    batch_gt, small_masks = [], []
    for lab, box, (img_h, img_w) in zip(labels, boxes, IMG_SHAPES):
        small = torch.rand(len(lab), h, w, generator=gen) > 0.5
        small[:, img_h // 4:] = False  # nothing in the padded area
        small[:, :, img_w // 4:] = False
        full = small.repeat_interleave(4, 1).repeat_interleave(4, 2)
        batch_gt.append(
            InstanceData(
                labels=torch.tensor(lab, dtype=torch.long),
                masks=full,
                bboxes=torch.tensor(box).reshape(-1, 4)))
        small_masks.append(small.float())
    return batch_gt, small_masks


def make_metas():
    return [
        dict(img_shape=s, batch_input_shape=(H, W), pad_shape=(H, W))
        for s in IMG_SHAPES
    ]


def norm_cxcywh(boxes, img_shape):
    img_h, img_w = img_shape
    b = boxes / torch.tensor([img_w, img_h, img_w, img_h])
    return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                        b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], -1)


def make_set(batch_gt, small_masks, pairs, num_queries=Q, seed=1,
             cls_channels=C):
    """One prediction set where query p of ``pairs`` resembles its GT."""
    gen = torch.Generator().manual_seed(seed)
    B = len(batch_gt)
    cls = -3. + torch.rand(B, num_queries, cls_channels, generator=gen)
    masks = -3. + torch.rand(B, num_queries, h, w, generator=gen)
    boxes = torch.tensor([0.9, 0.9, 0.05, 0.05]).repeat(B, num_queries, 1)
    boxes = boxes + 0.02 * torch.rand(B, num_queries, 4, generator=gen)
    for b, (pred_inds, gt_inds) in enumerate(pairs):
        gt = batch_gt[b]
        target = norm_cxcywh(gt.bboxes, IMG_SHAPES[b])
        for p, g in zip(pred_inds, gt_inds):
            cls[b, p, gt.labels[g]] = 2. + torch.rand(1, generator=gen)
            masks[b, p] = (6. * small_masks[b][g] - 3. +
                           torch.rand(h, w, generator=gen) - 0.5)
            boxes[b, p] = target[g] + 0.03 * (
                torch.rand(4, generator=gen) - 0.5)
    return dict(
        cls_scores=cls.requires_grad_(),
        mask_preds=masks.requires_grad_(),
        bbox_preds=boxes.requires_grad_())


def pixel_centre_coords(num_masks):
    """(M, h*w, 2) (x, y) points at the centres of the (h, w) pixels."""
    ys, xs = torch.meshgrid(
        (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
        indexing='ij')
    coords = torch.stack([xs.flatten(), ys.flatten()], -1)
    return coords.expand(num_masks, -1, -1).clone()


@pytest.fixture
def fixed_points(monkeypatch):
    """Replace the uncertainty point selection by the (h, w) pixel centres.

    At those points the prediction sample is the logit itself and the GT
    sample is the block value, so the hand computation is exact. Records
    the arguments of every call (the pre-drawn random points included).
    """
    calls = []

    def sampler(self, mask_logits, candidates, uniform):
        calls.append(
            dict(
                mask_preds=mask_logits.clone(),
                candidates=candidates,
                uniform=uniform,
                grad_enabled=torch.is_grad_enabled()))
        return pixel_centre_coords(mask_logits.size(0))

    monkeypatch.setattr(MaskDINOCriterion, '_uncertain_points', sampler)
    return calls


# ----------------------------------------------------------------------------
# hand computations of the official formulas
def focal_ref(logits, labels, alpha=0.25, gamma=2.0):
    """Sum of the sigmoid focal loss; label C (=background) -> all zero."""
    onehot = F.one_hot(labels, C + 1)[..., :C].float()
    p = logits.sigmoid()
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos = -alpha * (1 - p)**gamma * log_p
    neg = -(1 - alpha) * p**gamma * log_1mp
    return (onehot * pos + (1 - onehot) * neg).sum()


def bce_ref(logits, targets):
    """Mean over points of the sigmoid BCE, summed over masks."""
    loss = -(targets * F.logsigmoid(logits) +
             (1 - targets) * F.logsigmoid(-logits))
    return loss.mean(-1).sum()


def dice_ref(logits, targets):
    s = logits.sigmoid()
    dice = (2 * (s * targets).sum(-1) + 1) / (s.sum(-1) + targets.sum(-1) + 1)
    return (1 - dice).sum()


def cxcywh_to_xyxy(b):
    return torch.stack([
        b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2,
        b[:, 1] + b[:, 3] / 2
    ], -1)


def giou_ref(a, b, eps=1e-6):
    """Sum of 1 - GIoU of aligned xyxy boxes, with the official eps
    (DETR's ``box_ops``: added to the union and the enclosing area)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = (torch.min(a[:, 2], b[:, 2]) - torch.max(a[:, 0], b[:, 0])).clamp(0)
    ih = (torch.min(a[:, 3], b[:, 3]) - torch.max(a[:, 1], b[:, 1])).clamp(0)
    inter = iw * ih
    union = area_a + area_b - inter
    ew = torch.max(a[:, 2], b[:, 2]) - torch.min(a[:, 0], b[:, 0])
    eh = torch.max(a[:, 3], b[:, 3]) - torch.min(a[:, 1], b[:, 1])
    enclose = ew * eh
    giou = inter / (union + eps) - (enclose - union) / (enclose + eps)
    return (1 - giou).sum()


def hand_losses(preds, batch_gt, small_masks, pairs, normaliser,
                box_filter=None):
    """The five weighted losses of one set, computed from the formulas."""
    cls, masks, boxes = (preds['cls_scores'], preds['mask_preds'],
                         preds['bbox_preds'])
    labels = torch.full(cls.shape[:2], C, dtype=torch.long)
    src_m, tgt_m, src_b, tgt_b = [], [], [], []
    for b, (pred_inds, gt_inds) in enumerate(pairs):
        gt = batch_gt[b]
        target = norm_cxcywh(gt.bboxes, IMG_SHAPES[b])
        for p, g in zip(pred_inds, gt_inds):
            labels[b, p] = gt.labels[g]
            src_m.append(masks[b, p].flatten())
            tgt_m.append(small_masks[b][g].flatten())
            if box_filter is None or box_filter(int(gt.labels[g])):
                src_b.append(boxes[b, p])
                tgt_b.append(target[g])
    src_m, tgt_m = torch.stack(src_m), torch.stack(tgt_m)
    src_b, tgt_b = torch.stack(src_b), torch.stack(tgt_b)
    losses = dict(
        loss_mask=W_MASK * bce_ref(src_m, tgt_m) / normaliser,
        loss_dice=W_DICE * dice_ref(src_m, tgt_m) / normaliser,
        loss_bbox=W_BBOX * (src_b - tgt_b).abs().sum() / normaliser,
        loss_iou=W_IOU * giou_ref(
            cxcywh_to_xyxy(src_b), cxcywh_to_xyxy(tgt_b)) / normaliser)
    if cls.size(-1) == C:  # focal (sigmoid) classification
        losses['loss_cls'] = W_CLS * focal_ref(cls, labels) / normaliser
    return losses


def assert_losses_close(losses, expected, prefix=''):
    for name, value in expected.items():
        torch.testing.assert_close(
            losses[prefix + name],
            value.detach(),
            rtol=1e-5,
            atol=1e-6,
            msg=lambda m: f'{prefix + name}: {m}')


def outputs_of(final, aux=(), interm=None, dn=None, dn_meta=None):
    return dict(
        **final,
        aux_outputs=list(aux),
        interm_outputs=interm,
        dn_outputs=dn,
        dn_meta=dn_meta)


def as_pairs(pairs):
    return [(pi.tolist(), gi.tolist()) for pi, gi in pairs]


# ----------------------------------------------------------------------------
def test_matched_set_losses_equal_hand_computation(fixed_points):
    torch.manual_seed(0)
    criterion = build_criterion()
    batch_gt, small_masks = make_gt()
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED)

    seen, seen_masks = [], []
    get_row_costs = criterion.assigner.get_row_costs
    add_mask_costs = criterion.assigner.add_mask_costs

    def recording_row_costs(scores, bboxes, gt_labels, gt_bboxes, img_meta):
        seen.append((scores, bboxes, gt_labels, img_meta))
        return get_row_costs(scores, bboxes, gt_labels, gt_bboxes, img_meta)

    def recording_mask_costs(row_costs, mask_logits, gt_masks, img_meta,
                             sets=slice(None)):
        seen_masks.append(mask_logits)
        return add_mask_costs(row_costs, mask_logits, gt_masks, img_meta,
                              sets)

    criterion.assigner.get_row_costs = recording_row_costs
    criterion.assigner.add_mask_costs = recording_mask_costs
    torch.manual_seed(5)
    pairs = criterion.get_matched_pairs(preds, batch_gt, metas)
    # the assigner sees detached logits and pixel xyxy boxes of img_shape,
    # one (S=1, Q, .) stack per image
    assert len(seen) == 2 and len(seen_masks) == 2
    torch.manual_seed(5)
    for b, ((scores, bboxes, gt_labels, img_meta), mask_logits) in enumerate(
            zip(seen, seen_masks)):
        assert img_meta is metas[b] and gt_labels is batch_gt[b].labels
        img_h, img_w = IMG_SHAPES[b]
        pixel_xyxy = cxcywh_to_xyxy(preds['bbox_preds'][b]) * torch.tensor(
            [img_w, img_h, img_w, img_h])
        torch.testing.assert_close(bboxes[0], pixel_xyxy.detach())
        torch.testing.assert_close(scores[0],
                                   preds['cls_scores'][b].detach())
        # masks sampled at the image's uniform random points
        points = torch.rand(criterion.assigner.num_points, 2)
        torch.testing.assert_close(
            mask_logits[0],
            F.grid_sample(
                preds['mask_preds'][b].detach()[:, None],
                (2 * points - 1)[None, :, None].expand(Q, -1, -1, -1),
                align_corners=False)[:, 0, :, 0])
        for t in (scores, bboxes, mask_logits):
            assert not t.requires_grad
    assert as_pairs(pairs) == [(sorted(p), [g for _, g in sorted(zip(p, g))])
                               for p, g in MATCHED]

    losses = criterion(outputs_of(preds), batch_gt, metas)
    expected = hand_losses(preds, batch_gt, small_masks, MATCHED, 3.0)
    assert_losses_close(losses, expected)

    # the sampler ran without grad on the matched logits in pair order,
    # with 3 * P candidates and P / 4 uniform points per mask
    call = fixed_points[0]
    num_masks = sum(len(p) for p, _ in MATCHED)
    assert call['candidates'].shape == (num_masks, 3 * h * w, 2)
    assert call['uniform'].shape == (num_masks, h * w - int(0.75 * h * w), 2)
    assert call['grad_enabled'] is False
    src = torch.stack([
        preds['mask_preds'][b, p] for b, (pi, _) in enumerate(pairs)
        for p in pi
    ]).unsqueeze(1)
    torch.testing.assert_close(call['mask_preds'], src.detach())


def test_normaliser_is_reduced_over_ranks_and_clamped(fixed_points,
                                                      monkeypatch):
    torch.manual_seed(0)
    criterion = build_criterion()
    batch_gt, small_masks = make_gt()
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED)

    # another rank holding 5 GT: mean over 2 ranks = (3 + 5) / 2 = 4
    monkeypatch.setattr(criterion_module, 'reduce_mean',
                        lambda t: (t + 5.) / 2)
    losses = criterion(outputs_of(preds), batch_gt, metas)
    assert_losses_close(
        losses, hand_losses(preds, batch_gt, small_masks, MATCHED, 4.0))

    # a mean below one is clamped to one
    monkeypatch.setattr(criterion_module, 'reduce_mean', lambda t: t * 0.1)
    losses = criterion(outputs_of(preds), batch_gt, metas)
    assert_losses_close(
        losses, hand_losses(preds, batch_gt, small_masks, MATCHED, 1.0))


def test_dn_pairs_fixed_assignment():
    batch_gt, _ = make_gt()  # 2 GT and 1 GT
    dn_meta = dict(num_groups=3, single_pad=2, pad_size=6)
    pairs = MaskDINOCriterion.get_dn_pairs(batch_gt, dn_meta, 6)
    assert as_pairs(pairs) == [([0, 1, 2, 3, 4, 5], [0, 1, 0, 1, 0, 1]),
                               ([0, 2, 4], [0, 0, 0])]
    with pytest.raises(ValueError, match='pad_size'):
        MaskDINOCriterion.get_dn_pairs(batch_gt, dn_meta, 8)
    with pytest.raises(ValueError, match='single_pad'):
        MaskDINOCriterion.get_dn_pairs(
            batch_gt, dict(num_groups=6, single_pad=1, pad_size=6), 6)


def test_dn_losses_use_fixed_pairs_and_group_normaliser(fixed_points):
    torch.manual_seed(0)
    criterion = build_criterion()
    batch_gt, small_masks = make_gt()
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED)
    aux = [make_set(batch_gt, small_masks, MATCHED, seed=s) for s in (2, 3)]
    dn_meta = dict(num_groups=3, single_pad=2, pad_size=6)
    dn_pairs = [([0, 1, 2, 3, 4, 5], [0, 1, 0, 1, 0, 1]), ([0, 2, 4],
                                                           [0, 0, 0])]
    # dn predictions deliberately do NOT resemble their GT: no matching
    # could produce this assignment.
    dn_sets = [
        make_set(batch_gt, small_masks, [([], []), ([], [])], 6, seed=s)
        for s in (4, 5, 6)
    ]
    dn = dict(**dn_sets[0], aux_outputs=dn_sets[1:])

    num_matched_sets = []
    get_row_costs = criterion.assigner.get_row_costs

    def counting_row_costs(scores, *args):
        num_matched_sets.append(scores.size(0))
        return get_row_costs(scores, *args)

    criterion.assigner.get_row_costs = counting_row_costs
    losses = criterion(
        outputs_of(preds, aux=aux, dn=dn, dn_meta=dn_meta), batch_gt, metas)
    # per image one batch of (final + 2 aux); dn sets are never matched
    assert num_matched_sets == [3, 3]

    # 3 GT x 3 groups; padding slots (image 1, slots 1, 3, 5) background
    assert_losses_close(
        losses,
        hand_losses(dn_sets[0], batch_gt, small_masks, dn_pairs, 9.0),
        prefix='dn_')
    # no interm outputs -> the dn aux losses start at d1 (official)
    assert 'd0.dn_loss_cls' not in losses
    assert_losses_close(
        losses,
        hand_losses(dn_sets[2], batch_gt, small_masks, dn_pairs, 9.0),
        prefix='d1.dn_')
    # matching losses keep the plain GT count
    assert_losses_close(
        losses,
        hand_losses(aux[0], batch_gt, small_masks, MATCHED, 3.0),
        prefix='d0.')


def expected_keys(num_aux, with_interm):
    names = ['loss_cls', 'loss_mask', 'loss_dice', 'loss_bbox', 'loss_iou']
    keys = set(names)
    keys |= {f'd{i}.{n}' for i in range(num_aux) for n in names}
    if with_interm:
        keys |= {f'enc_{n}' for n in names}
    keys |= {f'dn_{n}' for n in names}
    start = 0 if with_interm else 1
    keys |= {f'd{i}.dn_{n}' for i in range(start, num_aux) for n in names}
    return keys


@pytest.mark.parametrize('with_interm, num_keys', [(True, 105),
                                                   (False, 95)])
@pytest.mark.parametrize('with_dn', [True, False])
def test_key_names_and_counts(with_interm, num_keys, with_dn):
    torch.manual_seed(0)
    # real uncertainty sampler here
    criterion = build_criterion(num_points=16)
    batch_gt, small_masks = make_gt()
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED)
    aux = [make_set(batch_gt, small_masks, MATCHED, seed=s) for s in range(9)]
    interm = make_set(batch_gt, small_masks, MATCHED, seed=20)
    dn, dn_meta = None, None
    if with_dn:
        dn_sets = [
            make_set(batch_gt, small_masks, [([], []), ([], [])], 4, seed=s)
            for s in range(30, 40)
        ]
        dn = dict(**dn_sets[0], aux_outputs=dn_sets[1:])
        dn_meta = dict(num_groups=2, single_pad=2, pad_size=4)
    losses = criterion(
        outputs_of(
            preds,
            aux=aux,
            interm=interm if with_interm else None,
            dn=dn,
            dn_meta=dn_meta), batch_gt, metas)

    assert len(losses) == num_keys
    assert set(losses) == expected_keys(9, with_interm)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
        assert value.requires_grad, name
        is_dn = 'dn_' in name
        if is_dn and not with_dn:
            assert value.item() == 0.0, name
        else:
            assert value.item() > 0.0, name
    sum(losses.values()).backward()
    assert torch.isfinite(preds['cls_scores'].grad).all()


def test_empty_gt_batch_is_finite_with_gradients():
    torch.manual_seed(0)
    criterion = build_criterion(num_points=16)
    batch_gt, small_masks = make_gt(labels=[[], []], boxes=[[], []])
    metas = make_metas()
    no_pairs = [([], []), ([], [])]
    preds = make_set(batch_gt, small_masks, no_pairs)
    aux = [make_set(batch_gt, small_masks, no_pairs, seed=s) for s in (2, 3)]
    interm = make_set(batch_gt, small_masks, no_pairs, seed=4)
    losses = criterion(
        outputs_of(preds, aux=aux, interm=interm), batch_gt, metas)
    assert len(losses) == 5 * 3 + 5 + 5 + 5 * 2
    for name, value in losses.items():
        assert torch.isfinite(value), name
        assert value.requires_grad, name
    # everything is background, normaliser clamped to 1
    no_gt_labels = torch.full((2, Q), C, dtype=torch.long)
    torch.testing.assert_close(
        losses['loss_cls'],
        (W_CLS * focal_ref(preds['cls_scores'], no_gt_labels)).detach())
    for name in ('loss_mask', 'loss_dice', 'loss_bbox', 'loss_iou'):
        assert losses[name].item() == 0.0

    sum(losses.values()).backward()
    for key in ('cls_scores', 'mask_preds', 'bbox_preds'):
        grad = preds[key].grad
        assert grad is not None and torch.isfinite(grad).all(), key
    assert preds['cls_scores'].grad.abs().sum() > 0


def test_one_empty_image_in_batch(fixed_points):
    torch.manual_seed(0)
    criterion = build_criterion()
    batch_gt, small_masks = make_gt(
        labels=[[0, 2], []], boxes=[GT_BOXES[0], []])
    metas = make_metas()
    pairs = [MATCHED[0], ([], [])]
    preds = make_set(batch_gt, small_masks, pairs)
    dn_meta = dict(num_groups=2, single_pad=2, pad_size=4)
    dn = dict(
        **make_set(batch_gt, small_masks, [([], []), ([], [])], 4, seed=3),
        aux_outputs=[])
    losses = criterion(
        outputs_of(preds, dn=dn, dn_meta=dn_meta), batch_gt, metas)
    assert_losses_close(losses,
                        hand_losses(preds, batch_gt, small_masks, pairs, 2.0))
    dn_pairs = [([0, 1, 2, 3], [0, 1, 0, 1]), ([], [])]
    assert_losses_close(
        losses,
        hand_losses(dn, batch_gt, small_masks, dn_pairs, 4.0),
        prefix='dn_')
    sum(losses.values()).backward()
    assert torch.isfinite(preds['mask_preds'].grad).all()


def test_decoupled_stuff_boxes_keep_normaliser(fixed_points):
    torch.manual_seed(0)
    batch_gt, small_masks = make_gt()  # labels [0, 2], [1]; 2 is stuff
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED)
    decoupled = build_criterion(num_things_classes=2,
                                decouple_stuff_boxes=True)
    coupled = build_criterion(num_things_classes=2)

    losses = decoupled(outputs_of(preds), batch_gt, metas)
    expected = hand_losses(
        preds, batch_gt, small_masks, MATCHED, 3.0,
        box_filter=lambda label: label < 2)
    assert_losses_close(losses, expected)

    losses_all = coupled(outputs_of(preds), batch_gt, metas)
    assert_losses_close(losses_all,
                        hand_losses(preds, batch_gt, small_masks, MATCHED,
                                    3.0))
    assert losses['loss_bbox'] < losses_all['loss_bbox']
    # class and mask losses are untouched by the decoupling
    for name in ('loss_cls', 'loss_mask', 'loss_dice'):
        torch.testing.assert_close(losses[name], losses_all[name])

    # only stuff GT -> zero box losses that still have a graph
    stuff_gt, stuff_small = make_gt(labels=[[2, 2], [2]])
    stuff_preds = make_set(stuff_gt, stuff_small, MATCHED)
    losses = decoupled(outputs_of(stuff_preds), stuff_gt, metas)
    assert losses['loss_bbox'].item() == 0.0
    assert losses['loss_iou'].item() == 0.0
    assert losses['loss_bbox'].requires_grad

    with pytest.raises(ValueError, match='num_things_classes'):
        build_criterion(decouple_stuff_boxes=True)


def test_cross_entropy_variant_with_no_object_weight(fixed_points):
    torch.manual_seed(0)
    class_weight = [1.0] * C + [0.1]
    criterion = build_criterion(
        loss_cls=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=4.0,
            class_weight=class_weight))
    batch_gt, small_masks = make_gt()
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED, cls_channels=C + 1)
    dn_meta = dict(num_groups=2, single_pad=2, pad_size=4)
    dn = dict(
        **make_set(
            batch_gt,
            small_masks, [([], []), ([], [])],
            4,
            seed=3,
            cls_channels=C + 1),
        aux_outputs=[])
    losses = criterion(
        outputs_of(preds, dn=dn, dn_meta=dn_meta), batch_gt, metas)

    weight = torch.tensor(class_weight)
    targets = torch.full((2, Q), C, dtype=torch.long)
    targets[0, 4], targets[0, 1], targets[1, 2] = 0, 2, 1
    expected = W_CLS * F.cross_entropy(
        preds['cls_scores'].flatten(0, 1), targets.flatten(), weight=weight)
    torch.testing.assert_close(losses['loss_cls'], expected.detach())
    # dn: weighted mean too (slots 0..3 of image 0, slots 0, 2 of image 1)
    dn_targets = torch.tensor([[0, 2, 0, 2], [1, C, 1, C]])
    expected_dn = W_CLS * F.cross_entropy(
        dn['cls_scores'].flatten(0, 1), dn_targets.flatten(), weight=weight)
    torch.testing.assert_close(losses['dn_loss_cls'], expected_dn.detach())
    # mask / box losses are the same as for the focal variant
    expected = hand_losses(preds, batch_gt, small_masks, MATCHED, 3.0)
    assert 'loss_cls' not in expected
    assert_losses_close(losses, expected)

    with pytest.raises(ValueError, match='cls_scores'):
        criterion(
            outputs_of(make_set(batch_gt, small_masks, MATCHED)), batch_gt,
            metas)


def test_bad_inputs_raise_clear_errors():
    criterion = build_criterion(num_points=16)
    batch_gt, small_masks = make_gt()
    metas = make_metas()
    preds = make_set(batch_gt, small_masks, MATCHED)
    no_masks = dict(preds, mask_preds=None)
    with pytest.raises(ValueError, match='mask_preds'):
        criterion(outputs_of(no_masks), batch_gt, metas)
    dn = dict(
        **make_set(batch_gt, small_masks, [([], []), ([], [])], 4),
        aux_outputs=[])
    with pytest.raises(ValueError, match='dn_meta'):
        criterion(outputs_of(preds, dn=dn), batch_gt, metas)
    # malformed targets are refused where they enter the head
    # (tests/test_heads/test_targets.py)
