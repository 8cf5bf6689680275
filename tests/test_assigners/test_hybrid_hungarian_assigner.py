"""Tests of ``HybridHungarianAssigner`` against hand-written official costs.

The reference costs below are written from the formulas of the official
Mask DINO matcher (spec section 3), in float64, without mmdet's cost classes.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from projects.mask_dino.task_modules.assigners import HybridHungarianAssigner

IMG_SHAPE = (60, 80)  # (h, w) before batch padding
PAD_SHAPE = (64, 96)  # (H, W) padded batch input; masks are at 1/4 of it
NUM_CLASSES = 5

CLS = dict(type='FocalLossCost', weight=4.0, eps=1e-8)
MASK_CE = dict(type='CrossEntropyLossCost', use_sigmoid=True, weight=5.0)
DICE = dict(type='DiceCost', pred_act=True, eps=1.0, weight=5.0)
L1 = dict(type='BBoxL1Cost', box_format='xywh', weight=5.0)
GIOU = dict(type='IoUCost', iou_mode='giou', weight=2.0)


def build_assigner(match_costs=(CLS, MASK_CE, DICE),
                   box_match_costs=(L1, GIOU),
                   **kwargs):
    return TASK_UTILS.build(
        dict(
            type='HybridHungarianAssigner',
            match_costs=list(match_costs),
            box_match_costs=list(box_match_costs),
            **kwargs))


# ---------------------------------------------------------------- reference
def ref_point_sample(maps, coords):
    """Bilinear sampling at normalised (x, y) coords, align_corners=False.

    maps (n, h, w), coords (P, 2) -> (n, P), float64.
    """
    grid = (2 * coords.double() - 1)[None, :, None, :]
    grid = grid.expand(maps.size(0), -1, -1, -1)
    out = F.grid_sample(
        maps.double()[:, None], grid, mode='bilinear', align_corners=False)
    return out[:, 0, :, 0]


def ref_focal(logits, labels, eps=1e-8):
    p = logits.double().sigmoid()
    pos = 0.25 * (1 - p)**2 * -torch.log(p + eps)
    neg = 0.75 * p**2 * -torch.log(1 - p + eps)
    return pos[:, labels] - neg[:, labels]


def ref_mask_ce(x, t):
    cost = torch.zeros(x.size(0), t.size(0), dtype=torch.float64)
    for q, n in itertools.product(range(x.size(0)), range(t.size(0))):
        bce_pos = F.softplus(-x[q])  # -log(sigmoid(x))
        bce_neg = F.softplus(x[q])  # -log(1 - sigmoid(x))
        cost[q, n] = (bce_pos * t[n] + bce_neg * (1 - t[n])).mean()
    return cost


def ref_dice(x, t):
    cost = torch.zeros(x.size(0), t.size(0), dtype=torch.float64)
    for q, n in itertools.product(range(x.size(0)), range(t.size(0))):
        s = x[q].sigmoid()
        cost[q, n] = 1 - (2 * (s * t[n]).sum() + 1) / (s.sum() + t[n].sum() +
                                                       1)
    return cost


def to_norm_cxcywh(xyxy):
    h, w = IMG_SHAPE
    x0, y0, x1, y1 = xyxy.double().unbind(-1)
    return torch.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h,
                        (x1 - x0) / w, (y1 - y0) / h], -1)


def ref_l1(pred_xyxy, gt_xyxy):
    p, g = to_norm_cxcywh(pred_xyxy), to_norm_cxcywh(gt_xyxy)
    return (p[:, None] - g[None]).abs().sum(-1)


def ref_neg_giou(pred_xyxy, gt_xyxy):
    """-GIoU on normalised xyxy with the official eps of 1e-6."""
    h, w = IMG_SHAPE
    scale = torch.tensor([w, h, w, h], dtype=torch.float64)
    p, g = pred_xyxy.double() / scale, gt_xyxy.double() / scale
    cost = torch.zeros(p.size(0), g.size(0), dtype=torch.float64)
    for i, j in itertools.product(range(p.size(0)), range(g.size(0))):
        a, b = p[i], g[j]
        area_a = (a[2] - a[0]) * (a[3] - a[1])
        area_b = (b[2] - b[0]) * (b[3] - b[1])
        iw = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
        ih = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
        inter = iw * ih
        union = area_a + area_b - inter
        iou = inter / (union + 1e-6)
        enclose = ((torch.max(a[2], b[2]) - torch.min(a[0], b[0])) *
                   (torch.max(a[3], b[3]) - torch.min(a[1], b[1])))
        cost[i, j] = -(iou - (enclose - union) / (enclose + 1e-6))
    return cost


def ref_total(preds, gts, coords, weights=(4, 5, 5, 5, 2)):
    x = ref_point_sample(preds.masks, coords)
    t = ref_point_sample(gts.masks.float(), coords)
    w_cls, w_ce, w_dice, w_l1, w_giou = weights
    return (w_cls * ref_focal(preds.scores, gts.labels) +
            w_ce * ref_mask_ce(x, t) + w_dice * ref_dice(x, t) +
            w_l1 * ref_l1(preds.bboxes, gts.bboxes) +
            w_giou * ref_neg_giou(preds.bboxes, gts.bboxes))


# ------------------------------------------------------------------- inputs
def random_boxes(n, min_size=0.3):
    """Pixel xyxy boxes inside IMG_SHAPE, sides >= min_size of the image."""
    h, w = IMG_SHAPE
    wh = min_size + (1 - min_size) * torch.rand(n, 2)
    x0y0 = torch.rand(n, 2) * (1 - wh)
    xyxy = torch.cat([x0y0, x0y0 + wh], -1)
    return xyxy * torch.tensor([w, h, w, h], dtype=torch.float32)


def random_problem(num_preds=6, num_gts=4, seed=0):
    """Predictions at 1/4 res and full-res GT rectangles with noisy preds."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    H, W = PAD_SHAPE
    gt_boxes = random_boxes(num_gts)
    yy, xx = torch.meshgrid(
        torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing='ij')
    gt_masks = torch.stack([(xx >= b[0]) & (xx < b[2]) & (yy >= b[1]) &
                            (yy < b[3]) for b in gt_boxes])
    # predictions loosely follow random GTs so that costs are informative
    src = torch.randint(num_gts, (num_preds, ), generator=g)
    low = F.interpolate(
        gt_masks[src][:, None].float(), size=(H // 4, W // 4),
        mode='bilinear')[:, 0]
    pred_masks = 6 * (low - 0.5) + 2 * torch.randn(
        num_preds, H // 4, W // 4, generator=g)
    pred_boxes = random_boxes(num_preds)
    scores = 2 * torch.randn(num_preds, NUM_CLASSES, generator=g)
    preds = InstanceData(scores=scores, masks=pred_masks, bboxes=pred_boxes)
    gts = InstanceData(
        labels=torch.randint(NUM_CLASSES, (num_gts, ), generator=g),
        masks=gt_masks,
        bboxes=gt_boxes)
    return preds, gts


def img_meta():
    return dict(img_shape=IMG_SHAPE, batch_input_shape=PAD_SHAPE)


def brute_force(cost):
    """Optimal injective GT -> pred map by enumeration: (perm, total)."""
    num_preds, num_gts = cost.shape
    best = None
    for perm in itertools.permutations(range(num_preds), num_gts):
        total = sum(cost[q, n].item() for n, q in enumerate(perm))
        if best is None or total < best[1]:
            best = (perm, total)
    return best


# -------------------------------------------------------------------- tests
@pytest.mark.parametrize('seed', [0, 1, 2, 3, 4])
def test_assignment_is_brute_force_optimum(seed):
    preds, gts = random_problem(seed=seed)
    assigner = build_assigner(num_points=64)
    # the assigner draws its points with the first torch.rand after seeding
    torch.manual_seed(100 + seed)
    result = assigner.assign(preds, gts, img_meta())
    torch.manual_seed(100 + seed)
    coords = torch.rand(64, 2)

    perm, best = brute_force(ref_total(preds, gts, coords))
    expected = torch.zeros(6, dtype=torch.long)
    for n, q in enumerate(perm):
        expected[q] = n + 1
    assert result.gt_inds.tolist() == expected.tolist()
    assert result.num_gts == 4
    matched = expected > 0
    assert result.labels[matched].tolist() == \
        gts.labels[expected[matched] - 1].tolist()
    assert (result.labels[~matched] == -1).all()
    # the total of the returned assignment is the optimum (no tie issues)
    ref = ref_total(preds, gts, coords)
    got = sum(ref[q, n - 1].item()
              for q, n in enumerate(result.gt_inds.tolist()) if n > 0)
    assert got == pytest.approx(best, abs=1e-9)


ZERO_CLS = dict(CLS, weight=0.0)


@pytest.mark.parametrize(
    'match_costs, box_match_costs, weights',
    [
        ([dict(CLS, weight=1.0)], [], (1, 0, 0, 0, 0)),
        ([dict(MASK_CE, weight=1.0)], [], (0, 1, 0, 0, 0)),
        ([dict(DICE, weight=1.0)], [], (0, 0, 1, 0, 0)),
        ([ZERO_CLS], [dict(L1, weight=1.0)], (0, 0, 0, 1, 0)),
        ([ZERO_CLS], [dict(GIOU, weight=1.0)], (0, 0, 0, 0, 1)),
        ([CLS, MASK_CE, DICE], [L1, GIOU], (4, 5, 5, 5, 2)),
    ])
def test_cost_components_match_official_formulas(match_costs,
                                                 box_match_costs, weights):
    preds, gts = random_problem(seed=7)
    coords = torch.rand(64, 2, generator=torch.Generator().manual_seed(3))
    assigner = build_assigner(match_costs, box_match_costs, num_points=64)
    cost = assigner.get_cost_matrix(preds, gts, img_meta(), coords)
    ref = ref_total(preds, gts, coords, weights)
    assert cost.dtype == torch.float32
    assert torch.allclose(cost.double(), ref, atol=1e-5, rtol=0)
    # assign(point_coords=...) reaches the optimum of the reference cost
    # (compared by total: GTs sharing a label tie under the class cost)
    _, best = brute_force(ref)
    result = assigner.assign(preds, gts, img_meta(), point_coords=coords)
    inds = result.gt_inds
    assert sorted(inds[inds > 0].tolist()) == [1, 2, 3, 4]
    got = sum(ref[q, n - 1].item() for q, n in enumerate(inds.tolist())
              if n > 0)
    assert got == pytest.approx(best, abs=1e-6)


def test_default_num_points_and_seeded_sampling():
    preds, gts = random_problem(seed=11)
    assigner = build_assigner()
    assert assigner.num_points == 12544
    torch.manual_seed(5)
    cost = assigner.get_cost_matrix(preds, gts, img_meta())
    torch.manual_seed(5)
    coords = torch.rand(12544, 2)
    ref = ref_total(preds, gts, coords)
    assert torch.allclose(cost.double(), ref, atol=1e-5, rtol=0)
    # a different draw gives a (slightly) different mask cost
    other = assigner.get_cost_matrix(preds, gts, img_meta())
    assert not torch.equal(cost, other)


def test_presampled_masks_are_used_as_is():
    preds, gts = random_problem(seed=2)
    coords = torch.rand(32, 2, generator=torch.Generator().manual_seed(0))
    sampled_preds = preds.clone()
    sampled_preds.masks = ref_point_sample(preds.masks, coords).float()
    sampled_gts = gts.clone()
    sampled_gts.masks = ref_point_sample(gts.masks.float(), coords).float()
    assigner = build_assigner(num_points=7)  # must not resample
    cost = assigner.get_cost_matrix(sampled_preds, sampled_gts, img_meta())
    assert torch.allclose(
        cost.double(), ref_total(preds, gts, coords), atol=1e-5, rtol=0)


def test_costs_are_fp32_under_autocast():
    preds, gts = random_problem(seed=4)
    coords = torch.rand(64, 2, generator=torch.Generator().manual_seed(1))
    assigner = build_assigner(num_points=64)
    plain = assigner.get_cost_matrix(preds, gts, img_meta(), coords)
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        auto = assigner.get_cost_matrix(preds, gts, img_meta(), coords)
    assert auto.dtype == torch.float32
    assert torch.equal(plain, auto)


# decoupled stuff boxes --------------------------------------------------
def decouple_problem():
    """One thing GT (label 0) and one stuff GT (label 2), 4 predictions.

    For the stuff GT, p0 has the exact box but worse class/mask, p1 the
    better class/mask but a wrong box. p2 and p3 have identical class/mask
    (good for the thing) and differ only in their boxes: p2 has the thing's
    box.
    """
    t_thing = torch.tensor([1., 1, 0, 0, 0, 0, 0, 0])
    t_stuff = torch.tensor([0., 0, 0, 0, 1, 1, 1, 1])
    good_stuff = 0.3 * (2 * t_stuff - 1)
    good_thing = 4.0 * (2 * t_thing - 1)
    masks = torch.stack([-good_stuff, good_stuff, good_thing, good_thing])
    scores = torch.tensor([[-2., -2, -0.5], [-2., -2, 0.5], [2., -2, -2],
                           [2., -2, -2]])
    bboxes = torch.tensor([[60., 60, 100, 100], [60., 0, 100, 40],
                           [0., 0, 20, 20], [40., 40, 60, 60]])
    preds = InstanceData(scores=scores, masks=masks, bboxes=bboxes)
    gts = InstanceData(
        labels=torch.tensor([0, 2]),
        masks=torch.stack([t_thing, t_stuff]),
        bboxes=torch.tensor([[0., 0, 20, 20], [60., 60, 100, 100]]))
    return preds, gts, dict(img_shape=(100, 100))


def test_decoupled_stuff_boxes():
    preds, gts, meta = decouple_problem()
    cm_only = build_assigner(box_match_costs=[])
    box_only = build_assigner(match_costs=[ZERO_CLS])
    # preconditions: the two criteria disagree on the stuff GT (column 1)
    assert cm_only.get_cost_matrix(preds, gts, meta)[:2, 1].argmin() == 1
    assert box_only.get_cost_matrix(preds, gts, meta)[:2, 1].argmin() == 0

    off = build_assigner(num_things_classes=2)
    on = build_assigner(num_things_classes=2, decouple_stuff_boxes=True)
    res_off = off.assign(preds, gts, meta)
    res_on = on.assign(preds, gts, meta)
    # thing (GT 1) goes to p2 by its box in both modes
    assert res_off.gt_inds.tolist() == [2, 0, 1, 0]
    assert res_on.gt_inds.tolist() == [0, 2, 1, 0]
    assert res_on.labels.tolist() == [-1, 2, 0, -1]

    cost_on = on.get_cost_matrix(preds, gts, meta)
    cost_off = off.get_cost_matrix(preds, gts, meta)
    cm = cm_only.get_cost_matrix(preds, gts, meta)
    box = box_only.get_cost_matrix(preds, gts, meta)
    assert torch.equal(cost_on[:, 0], cost_off[:, 0])
    # stuff column: class/mask + one constant = mean box cost of things
    assert torch.allclose(cost_on[:, 1] - cm[:, 1], box[:, 0].mean(),
                          atol=1e-5)
    assert torch.allclose(cost_off, cm + box, atol=1e-5)


def test_decoupled_stuff_boxes_without_things():
    preds, gts, meta = decouple_problem()
    stuff_only = gts[1:]
    on = build_assigner(num_things_classes=2, decouple_stuff_boxes=True)
    cm_only = build_assigner(box_match_costs=[])
    assert torch.allclose(
        on.get_cost_matrix(preds, stuff_only, meta),
        cm_only.get_cost_matrix(preds, stuff_only, meta),
        atol=1e-6)
    assert on.assign(preds, stuff_only, meta).gt_inds.tolist() == \
        [0, 1, 0, 0]


def test_decouple_requires_num_things_classes():
    with pytest.raises(ValueError, match='num_things_classes'):
        build_assigner(decouple_stuff_boxes=True)


# robustness ---------------------------------------------------------------
def test_extreme_fp16_and_nan_inputs():
    preds, gts = random_problem(num_preds=8, num_gts=4, seed=9)
    scores = preds.scores.clone()
    scores[0] = 1e4
    scores[1] = -1e4
    scores[2, :] = 20.  # sigmoid rounds to exactly 1 in fp16
    masks = preds.masks.clone()
    masks[0] = 1e4
    masks[1] = -1e4
    bboxes = preds.bboxes.clone()
    scores[3] = float('nan')
    masks[4] = float('nan')
    bboxes[5, 0] = float('nan')
    preds16 = InstanceData(
        scores=scores.half(), masks=masks.half(), bboxes=bboxes.half())
    # fp16 alone breaks the plain focal cost (-log(1 - 1 + 1e-8) in fp16)
    plain = TASK_UTILS.build(CLS)(preds16[2:3], gts)
    assert not torch.isfinite(plain).all()

    coords = torch.rand(64, 2, generator=torch.Generator().manual_seed(0))
    assigner = build_assigner(num_points=64)
    cost = assigner.get_cost_matrix(preds16, gts, img_meta(), coords)
    assert torch.isfinite(cost).all()
    assert cost.abs().max() <= 1e8
    # NaN rows are the least preferred ones
    assert (cost[3:6] == 1e8).all()
    # rows without NaN equal the cost of the fp16-rounded inputs (row 2 is
    # left out: sigmoid(20) is 1 - 2e-9, exactly 1 in fp32, which moves
    # log(1 - p + 1e-8) by 0.2 against float64; finite is what matters)
    ref = ref_total(
        InstanceData(
            scores=preds16.scores.float(),
            masks=preds16.masks.float(),
            bboxes=preds16.bboxes.float()), gts, coords)
    finite = [0, 1, 6, 7]
    assert torch.allclose(cost[finite].double(), ref[finite], rtol=1e-5,
                          atol=1e-3)

    result = assigner.assign(preds16, gts, img_meta(), point_coords=coords)
    inds = result.gt_inds
    assert sorted(inds[inds > 0].tolist()) == [1, 2, 3, 4]
    assert (inds[3:6] == 0).all()


def test_all_nan_predictions_still_assign():
    preds, gts = random_problem(num_preds=5, num_gts=3, seed=1)
    preds.scores[:] = float('nan')
    assigner = build_assigner(num_points=16)
    result = assigner.assign(preds, gts, img_meta())
    assert sorted(result.gt_inds[result.gt_inds > 0].tolist()) == [1, 2, 3]


def test_zero_gts_and_zero_preds():
    preds, gts = random_problem(seed=0)
    assigner = build_assigner(num_points=16)
    result = assigner.assign(preds, gts[:0], img_meta())
    assert result.num_gts == 0
    assert result.gt_inds.tolist() == [0] * 6
    assert result.labels.tolist() == [-1] * 6

    result = assigner.assign(preds[:0], gts, img_meta())
    assert result.num_gts == 4
    assert result.gt_inds.numel() == 0 and result.labels.numel() == 0


def test_bad_inputs_name_the_field():
    preds, gts = random_problem(seed=0)
    assigner = build_assigner(num_points=16)
    no_boxes = InstanceData(scores=preds.scores, masks=preds.masks)
    with pytest.raises(KeyError, match='pred_instances.bboxes'):
        assigner.assign(no_boxes, gts, img_meta())
    bad_labels = gts.clone()
    bad_labels.labels = torch.tensor([0, 1, 2, NUM_CLASSES])
    with pytest.raises(ValueError, match='gt_instances.labels'):
        assigner.assign(preds, bad_labels, img_meta())
    with pytest.raises(KeyError, match='img_shape'):
        assigner.assign(preds, gts, dict())
    flat_gts = gts.clone()
    flat_gts.masks = gts.masks.flatten(1)
    with pytest.raises(ValueError, match='masks'):
        assigner.assign(preds, flat_gts, img_meta())


def test_class_is_exported_and_registered():
    assert TASK_UTILS.get('HybridHungarianAssigner') is \
        HybridHungarianAssigner
    from mmdet.models.task_modules.assigners import HungarianAssigner
    assert issubclass(HybridHungarianAssigner, HungarianAssigner)


@pytest.mark.parametrize('decouple', [False, True])
def test_mask_costs_in_chunks_of_sets_equal_all_sets_at_once(decouple):
    """The criterion computes the row costs of all sets once and the mask
    costs chunk by chunk: the result is bit-identical to one call."""
    num_sets, num_preds, num_gts, num_points = 5, 6, 4, 50
    g = torch.Generator().manual_seed(7)
    assigner = build_assigner(
        num_things_classes=3, decouple_stuff_boxes=decouple)
    scores = torch.randn(num_sets, num_preds, NUM_CLASSES, generator=g)
    bboxes = torch.stack([random_boxes(num_preds) for _ in range(num_sets)])
    logits = 3 * torch.randn(num_sets, num_preds, num_points, generator=g)
    gt_masks = (torch.rand(num_sets, num_gts, num_points, generator=g) >
                0.5).float()
    gt_labels = torch.tensor([0, 4, 1, 3])
    gt_bboxes = random_boxes(num_gts)
    whole = assigner.get_cost_matrices(scores, bboxes, logits, gt_labels,
                                       gt_bboxes, gt_masks, img_meta())
    row_costs = assigner.get_row_costs(scores, bboxes, gt_labels, gt_bboxes,
                                       img_meta())
    chunks = [slice(0, 2), slice(2, 3), slice(3, 5)]
    chunked = torch.cat([
        assigner.add_mask_costs(row_costs, logits[s], gt_masks[s],
                                img_meta(), s) for s in chunks
    ])
    assert whole.shape == (num_sets, num_preds, num_gts)
    assert torch.equal(whole, chunked)
    # each set alone equals the single-set matrix of get_cost_matrix
    for s in range(num_sets):
        preds = InstanceData(
            scores=scores[s], bboxes=bboxes[s], masks=logits[s])
        gts = InstanceData(
            labels=gt_labels, bboxes=gt_bboxes, masks=gt_masks[s])
        torch.testing.assert_close(
            assigner.get_cost_matrix(preds, gts, img_meta()), whole[s])
    with pytest.raises(ValueError, match='need mask_logits'):
        assigner.add_mask_costs(row_costs, None, None, img_meta())
