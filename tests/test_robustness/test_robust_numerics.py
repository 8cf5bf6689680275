"""Numerical robustness: fp16 / bf16 autocast with extreme logits (matching
costs and losses stay finite and equal to fp32), empty masks in the
mask-enhanced anchor init."""
import math

import pytest
import torch
from conftest import make_sample, set_num_classes, tiny_cfg
from mmdet.registry import MODELS
from mmengine.structures import InstanceData
from robust_common import (backward_and_check, build_tiny,
                           check_instance_predictions, predict)

from projects.mask_dino.utils.box_ops import (mask_boxes_to_anchor_logits,
                                              masks_to_boxes)

FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504
# (autocast dtype, logit magnitude): the largest finite fp16 value, and a
# bf16 value 15x beyond the fp16 range
EXTREMES = [(torch.float16, FP16_MAX), (torch.bfloat16, 1e6)]


def _criterion():
    # COCO's 80 classes: the fp16 overflow regression needs 80 logits per
    # query (and the targets below use labels up to 79); built by the head,
    # which passes the class counts down
    cfg = set_num_classes(tiny_cfg(), 80).panoptic_head
    return MODELS.build(cfg).criterion


def _targets(batch_size=2):
    gts = []
    for b in range(batch_size):
        masks = torch.zeros(3, 64, 64, dtype=torch.bool)
        masks[0, :10, :10] = True
        masks[1, 30, :] = True  # one-pixel-high line
        masks[2, 40 + b:50, 20:44] = True
        gts.append(
            InstanceData(
                labels=torch.tensor([1, 5, 79]),
                masks=masks,
                bboxes=torch.tensor([[0., 0., 10., 10.], [0., 30., 64., 31.],
                                     [20., 40. + b, 44., 50.]])))
    return gts


def _extreme_preds(magnitude, batch_size=2, num_queries=20, seed=0):
    """Saturated logits of random sign and valid boxes (cxcywh in [0, 1]),
    some of them degenerate."""
    g = torch.Generator().manual_seed(seed)

    def sign(*shape):
        return torch.randint(0, 2, shape, generator=g).float() * 2 - 1

    cls = sign(batch_size, num_queries, 80) * magnitude
    masks = sign(batch_size, num_queries, 16, 16) * magnitude
    boxes = torch.rand(batch_size, num_queries, 4, generator=g)
    boxes[:, :4, 2:] = 0  # zero-size boxes
    boxes[:, 4:8] = torch.tensor([0., 0., 1., 1.])  # saturated sigmoid
    return cls, masks, boxes


def _as_set(cls, masks, boxes, dtype):
    return dict(
        cls_scores=cls.to(dtype),
        mask_preds=masks.to(dtype),
        bbox_preds=boxes.to(dtype))


@pytest.mark.parametrize('dtype,magnitude', EXTREMES)
def test_matching_cost_extreme_logits_autocast(dtype, magnitude):
    crit = _criterion()
    assigner = crit.assigner
    gt = _targets(1)[0]
    cls, masks, boxes = _extreme_preds(magnitude, batch_size=1)
    points = torch.rand(64, 2, generator=torch.Generator().manual_seed(1))
    pixel_boxes = boxes[0] * 64

    meta = dict(img_shape=(64, 64))

    def cost(cast, use_autocast):
        pred = InstanceData(
            scores=cls[0].to(cast),
            masks=masks[0].to(cast),
            bboxes=pixel_boxes.to(cast))
        with torch.autocast('cpu', dtype=dtype, enabled=use_autocast):
            return assigner.get_cost_matrix(
                pred, gt, meta, point_coords=points)

    low = cost(dtype, True)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    # nothing needed the sanitiser's clamp: the raw costs were finite
    assert low.abs().max() < assigner.cost_clamp
    # costs run in fp32: low-precision inputs under autocast give exactly
    # the fp32 costs of the rounded values (hence the same matching)
    rounded = cost(dtype, False)
    torch.testing.assert_close(low, rounded, rtol=0, atol=0)
    assert torch.isfinite(cost(torch.float32, False)).all()


@pytest.mark.parametrize('dtype,magnitude', EXTREMES)
def test_losses_extreme_logits_autocast(dtype, magnitude):
    crit = _criterion()
    gts = _targets()
    metas = [dict(img_shape=(64, 64))] * 2
    cls, masks, boxes = _extreme_preds(magnitude)
    dn_cls, dn_masks, dn_boxes = _extreme_preds(
        magnitude, num_queries=6, seed=1)

    def run(cast):
        outputs = dict(
            _as_set(cls, masks, boxes, cast),
            aux_outputs=[_as_set(cls, masks, boxes, cast)],
            interm_outputs=_as_set(cls, masks, boxes, cast),
            dn_outputs=dict(
                _as_set(dn_cls, dn_masks, dn_boxes, cast),
                aux_outputs=[_as_set(dn_cls, dn_masks, dn_boxes, cast)]),
            dn_meta=dict(num_groups=2, single_pad=3, pad_size=6))
        torch.manual_seed(0)  # same uncertain points in both runs
        with torch.autocast('cpu', dtype=dtype, enabled=cast == dtype):
            return crit(outputs, gts, metas)

    low = run(dtype)
    assert len(low) == 5 * 5  # final, aux, interm, dn, dn aux
    for key, value in low.items():
        assert value.dtype == torch.float32, key
        assert torch.isfinite(value), (key, float(value))
    # losses are computed in fp32 from the (rounded) low-precision inputs
    ref = run(torch.float32)
    for key in low:
        if key.endswith(('bbox', 'iou')):  # boxes are rounded to fp16/bf16
            torch.testing.assert_close(
                low[key], ref[key], rtol=1e-2, atol=1e-2)
        else:
            torch.testing.assert_close(
                low[key], ref[key], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_skipped_dn_zero_losses_do_not_overflow(dtype):
    """Regression: the zero dn losses of a batch without DN were
    ``logits.sum() * 0``, and the fp16 sum of 2 x 300 x 80 ordinary
    background logits (-8) overflows to -inf, so the zeros were NaN."""
    crit = _criterion()
    b, q = 2, 300
    preds = dict(
        cls_scores=torch.full((b, q, 80), -8.).to(dtype).requires_grad_(),
        mask_preds=torch.full((b, q, 32, 32), -8.).to(dtype),
        bbox_preds=torch.full((b, q, 4), 0.5).to(dtype))
    assert torch.isinf(preds['cls_scores'].sum()) == (dtype == torch.float16)
    empty = InstanceData(
        labels=torch.zeros(0, dtype=torch.long),
        masks=torch.zeros(0, 128, 128, dtype=torch.bool),
        bboxes=torch.zeros(0, 4))
    outputs = dict(
        preds,
        aux_outputs=[],
        interm_outputs=None,
        dn_outputs=None,
        dn_meta=None)
    losses = crit(outputs, [empty, empty], [dict(img_shape=(128, 128))] * 2)
    for key in ('dn_loss_cls', 'dn_loss_mask', 'dn_loss_dice', 'dn_loss_bbox',
                'dn_loss_iou', 'loss_mask', 'loss_bbox'):
        assert float(losses[key]) == 0.0, key
    # focal loss of 48000 background logits at -8, weight 4, normaliser 1
    p = torch.sigmoid(torch.tensor(-8.).to(dtype).float())
    expected = 4 * 0.75 * p**2 * -torch.log1p(-p) * b * q * 80
    torch.testing.assert_close(
        losses['loss_cls'].detach(), expected, rtol=1e-3, atol=0)
    sum(losses.values()).backward()
    assert torch.isfinite(preds['cls_scores'].grad).all()


@pytest.mark.parametrize('dtype,empty', [(torch.float16, True),
                                         (torch.bfloat16, False)])
def test_model_trains_and_predicts_under_cpu_autocast(dtype, empty):
    # fp16 with an all-empty batch is the case of the overflow regression
    model = build_tiny()
    boxes = [] if empty else [[4, 4, 30, 20], [16, 10, 32, 32]]
    samples = [
        make_sample(32, 32, boxes, [1, 2][:len(boxes)]),
        make_sample(32, 32, [], [])
    ]
    inputs = torch.randn(2, 3, 32, 32)
    with torch.autocast('cpu', dtype=dtype):
        losses = model.loss(inputs, samples)
    assert (float(losses['dn_loss_cls']) == 0) == empty
    backward_and_check(model, losses, ('panoptic_head.cls_embed.weight', ))
    model.eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        results = model.predict(inputs, samples)
    model.train()
    check_instance_predictions(results, 3)


def test_mask2box_on_empty_masks():
    empty = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    boxes = masks_to_boxes(empty, mode='mask2box')
    assert boxes.tolist() == [[[1e8, 1e8, 0., 0.]] * 3] * 2
    assert masks_to_boxes(empty, mode='bitmask').abs().sum() == 0
    logits = mask_boxes_to_anchor_logits(boxes, 8, 8)
    big = math.log((1 - 1e-5) / 1e-5)
    # inverted box: centre clamps to 1, size to 0 (official corner case)
    torch.testing.assert_close(
        logits,
        torch.tensor([big, big, -big, -big]).expand(2, 3, 4))
    bit = mask_boxes_to_anchor_logits(masks_to_boxes(empty, 'bitmask'), 8, 8)
    torch.testing.assert_close(bit, torch.full_like(bit, -big))


@pytest.mark.parametrize('box_init', ['mask2box', 'bitmask'])
def test_all_interm_masks_empty_trains_and_predicts(box_init):
    model = build_tiny()
    head = model.panoptic_head
    head.initialize_box_type = box_init
    # zero mask embeddings: every interm mask logit is 0, i.e. empty masks
    with torch.no_grad():
        head.mask_embed.layers[-1].weight.zero_()
        head.mask_embed.layers[-1].bias.zero_()
    samples = [
        make_sample(32, 32, [[4, 4, 30, 20]], [1]),
        make_sample(32, 32, [], [])
    ]
    inputs = torch.randn(2, 3, 32, 32)
    feats = model.extract_feat(inputs)
    mask_features, (memory, _, _, shapes) = head.pixel_decoder(feats)
    _, anchors, interm = head.select_queries(memory, shapes, mask_features)
    assert (interm['mask_preds'] <= 0).all()
    big = math.log((1 - 1e-5) / 1e-5)
    expected = [big, big, -big, -big] if box_init == 'mask2box' else \
        [-big] * 4
    torch.testing.assert_close(anchors,
                               torch.tensor(expected).expand_as(anchors))
    if box_init == 'bitmask':
        return
    for dtype in (None, torch.float16):
        with torch.autocast(
                'cpu', dtype=dtype or torch.float32, enabled=dtype
                is not None):
            losses = model.loss(inputs, samples)
        backward_and_check(model, losses, ('panoptic_head.cls_embed.weight', ))
    check_instance_predictions(predict(model, inputs, samples), 3)
