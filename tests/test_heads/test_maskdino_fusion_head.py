"""Tests of :class:`MaskDINOFusionHead` on hand-built logits."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData, PixelData

from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from projects.mask_dino.heads.maskdino_fusion_head import MaskDINOFusionHead

NEG = -4.0  # background mask logit (sigmoid 0.018)


def logit(p):
    return math.log(p / (1 - p))


def make_head(num_things=2, num_stuff=0, **cfg):
    return MaskDINOFusionHead(
        num_things_classes=num_things,
        num_stuff_classes=num_stuff,
        test_cfg=cfg)


def meta(pad, img, ori=None, scale=(1.0, 1.0)):
    return dict(
        batch_input_shape=pad,
        img_shape=img,
        ori_shape=ori or img,
        scale_factor=scale)


def full_box(num_queries):
    return torch.tensor([[0.5, 0.5, 1.0, 1.0]]).repeat(1, num_queries, 1)


# ----------------------------------------------------------------------
# instance
# ----------------------------------------------------------------------
def test_instance_topk_pairs_and_hand_scores():
    # sigmoid class scores, 3 queries x 2 classes
    probs = [[0.9, 0.1], [0.2, 0.7], [0.6, 0.05]]
    cls = torch.tensor([[[logit(p) for p in row] for row in probs]])
    # constant mask logits survive bilinear upsampling unchanged
    masks = torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1).expand(1, 3, 2,
                                                                   2).clone()
    head = make_head(max_per_image=3)
    res = head.predict(cls, masks, full_box(3), [meta(
        (8, 8), (8, 8))])[0]['ins_results']

    # sorted top-3: (q0, c0) 0.9, (q1, c1) 0.7, (q2, c0) 0.6
    assert res.labels.tolist() == [0, 1, 0]
    n = 64.0
    sig = torch.sigmoid(torch.tensor([2.0, 0.5]))
    expected = torch.tensor([
        0.9 * sig[0] * n / (n + 1e-6),
        0.0,  # q1's mask is empty -> mask score 0
        0.6 * sig[1] * n / (n + 1e-6),
    ])
    torch.testing.assert_close(res.scores, expected)
    assert res.masks.dtype == torch.bool
    assert res.masks.sum((1, 2)).tolist() == [64, 0, 64]


def test_instance_focus_on_box_and_k_limit():
    probs = [[0.9, 0.1], [0.2, 0.7], [0.6, 0.05]]
    cls = torch.tensor([[[logit(p) for p in row] for row in probs]])
    masks = torch.full((1, 3, 2, 2), -1.0)
    head = make_head(max_per_image=2, focus_on_box=True)
    res = head.predict(cls, masks, full_box(3), [meta(
        (8, 8), (8, 8))])[0]['ins_results']
    torch.testing.assert_close(res.scores, torch.tensor([0.9, 0.7]))
    assert res.labels.tolist() == [0, 1]


def test_instance_padded_crop_resize_and_boxes():
    # padded canvas 16 x 24, image 12 x 16 (right and bottom padding),
    # original image 6 x 8 (scale factor 2)
    h, w = 4, 6
    cols = torch.tensor([-5.0, -5.0, 5.0, 5.0, 5.0, 5.0])
    half = cols.expand(h, w)  # positive from 1/4-col 2 into the padding
    pad_only = torch.tensor([-5.0, -5.0, -5.0, -5.0, 5.0, 5.0]).expand(h, w)
    masks = torch.stack([half, pad_only])[None]
    cls = torch.tensor([[[3.0, -3.0], [-3.0, 2.0]]])
    boxes = torch.tensor([[[0.5, 0.25, 0.5, 0.25], [0.25, 0.5, 0.2, 0.5]]])
    img_meta = meta((16, 24), (12, 16), (6, 8), scale=(2.0, 2.0))
    head = make_head(max_per_image=2)
    res = head.predict(cls, masks, boxes, [img_meta])[0]['ins_results']

    assert res.labels.tolist() == [0, 1]
    assert res.masks.shape == (2, 6, 8)
    # upsampled: full-res cols >= 8 positive; crop 16 cols; halve -> 4..7
    expected = torch.zeros(6, 8, dtype=torch.bool)
    expected[:, 4:] = True
    assert torch.equal(res.masks[0], expected)
    # the second mask lies in the padding only: nothing left after the crop
    assert not res.masks[1].any()
    assert res.scores[1] == 0
    # box 0: norm xyxy (.25, .125, .75, .375) * (24, 16) = (6, 2, 18, 6),
    # / 2 = (3, 1, 9, 3), clipped to width 8
    # box 1: norm xyxy (.15, .25, .35, .75) * (24, 16) = (3.6, 4, 8.4, 12),
    # / 2 = (1.8, 2, 4.2, 6)
    torch.testing.assert_close(
        res.bboxes, torch.tensor([[3.0, 1.0, 8.0, 3.0], [1.8, 2.0, 4.2, 6.0]]))

    # without rescale: results in the img_shape frame, no scale factor
    res = head.predict(
        cls, masks, boxes, [img_meta], rescale=False)[0]['ins_results']
    assert res.masks.shape == (2, 12, 16)
    assert res.masks[0, :, 8:].all() and not res.masks[0, :, :8].any()
    torch.testing.assert_close(
        res.bboxes, torch.tensor([[6.0, 2.0, 16.0, 6.0], [3.6, 4.0, 8.4,
                                                          12.0]]))


def reference_instance(cls, masks, boxes, img_meta, k, thing_only=None):
    """Official-style instance inference written with loops."""
    pad_h, pad_w = img_meta['batch_input_shape']
    img_h, img_w = img_meta['img_shape']
    ori_h, ori_w = img_meta['ori_shape']
    up = F.interpolate(
        masks[None], (pad_h, pad_w), mode='bilinear', align_corners=False)[0]
    up = up[:, :img_h, :img_w]
    up = F.interpolate(
        up[None], (ori_h, ori_w), mode='bilinear', align_corners=False)[0]
    num_q, num_c = cls.shape
    pairs = sorted(((cls[q, c].sigmoid().item(), q, c) for q in range(num_q)
                    for c in range(num_c)),
                   reverse=True)[:k]
    out = []
    for s, q, c in pairs:
        if thing_only is not None and c >= thing_only:
            continue
        m = up[q]
        binary = m > 0
        ms = (m.sigmoid() * binary).sum() / (binary.sum() + 1e-6)
        cx, cy, bw, bh = boxes[q].tolist()
        sx = pad_w / img_w * ori_w
        sy = pad_h / img_h * ori_h
        box = [(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx,
               (cy + bh / 2) * sy]
        box = [min(max(v, 0), lim) for v, lim in zip(box, [ori_w, ori_h] * 2)]
        out.append((q, c, s * ms.item(), binary, box))
    return out


@pytest.mark.parametrize('panoptic_on', [False, True])
def test_instance_matches_brute_force(panoptic_on):
    torch.manual_seed(0)
    num_q, num_things, num_stuff = 7, 2, 2
    cls = torch.randn(1, num_q, num_things + num_stuff) * 2
    masks = torch.randn(1, num_q, 5, 7) * 3
    boxes = torch.rand(1, num_q, 4)
    img_meta = meta((20, 28), (17, 22), (13, 19), scale=(22 / 19, 17 / 13))
    head = make_head(
        num_things, num_stuff, max_per_image=9, panoptic_on=panoptic_on)
    res = head.predict(cls, masks, boxes, [img_meta])[0]['ins_results']
    ref = reference_instance(cls[0], masks[0], boxes[0], img_meta, 9,
                             num_things if panoptic_on else None)

    assert len(res) == len(ref) and len(ref) > 0
    if panoptic_on:
        assert len(ref) < 9  # stuff pairs were among the top 9
    assert res.labels.tolist() == [c for _, c, _, _, _ in ref]
    torch.testing.assert_close(res.scores,
                               torch.tensor([s for _, _, s, _, _ in ref]))
    assert torch.equal(res.masks, torch.stack([b for *_, b, _ in ref]))
    torch.testing.assert_close(res.bboxes, torch.tensor([b for *_, b in ref]))


# ----------------------------------------------------------------------
# panoptic
# ----------------------------------------------------------------------
def panoptic_inputs():
    """4 x 6 image, two things, one stuff class split over two queries,
    one low-score query and one query that loses most of its mask."""
    cls = torch.full((6, 4), -5.0)  # classes 0, 1 things; 2, 3 stuff
    cls[0, 0] = 3.0  # thing 0 on A
    cls[1, 1] = 3.0  # thing 1 on B
    cls[2, 2] = 3.0  # stuff 2, bottom-left
    cls[3, 2] = 3.0  # stuff 2, bottom-right
    cls[4, 0] = -1.2  # sigmoid 0.23 < 0.25: dropped
    cls[5, 0] = 1.0  # thing 0 on A + C, loses A to query 0
    masks = torch.full((6, 4, 6), NEG)
    masks[0, :2, :2] = 4.0  # A
    masks[1, :2, 2:4] = 4.0  # B
    masks[2, 2:, :3] = 4.0
    masks[3, 2:, 3:] = 4.0
    masks[4, :2, 4:] = 8.0  # C: would win C if it were kept
    masks[5, :2, :2] = 2.0
    masks[5, :2, 4:] = 2.0
    return cls[None], masks[None]


def run_panoptic(cls, masks, **cfg):
    # 1/4 input equal to the canvas: upsampling is the identity
    head = make_head(2, 2, instance_on=False, panoptic_on=True, **cfg)
    h, w = masks.shape[-2:]
    out = head.predict(cls, masks, None, [meta((h, w), (h, w))])[0]
    assert set(out) == {'pan_results'}
    assert isinstance(out['pan_results'], PixelData)
    pan = out['pan_results'].sem_seg
    assert pan.shape == (1, h, w) and pan.dtype == torch.int32
    return pan[0]


def test_panoptic_segments():
    cls, masks = panoptic_inputs()
    pan = run_panoptic(cls, masks)
    void = 4
    expected = torch.full((4, 6), void, dtype=torch.int32)
    expected[:2, :2] = 0 + 1 * INSTANCE_OFFSET
    expected[:2, 2:4] = 1 + 2 * INSTANCE_OFFSET
    expected[2:, :] = 2  # the two stuff queries merged into one segment
    # C: query 4 dropped by score, query 5 owns 4 of its 8 px < 0.8 -> void
    assert torch.equal(pan, expected)
    # ids decode to the expected labels and instance ids
    assert set((pan % INSTANCE_OFFSET).unique().tolist()) == {0, 1, 2, 4}
    assert (pan // INSTANCE_OFFSET).unique().tolist() == [0, 1, 2]


def test_panoptic_thresholds_matter():
    cls, masks = panoptic_inputs()
    # overlap ratio 0.5 passes iou_thr 0.5: query 5 becomes thing id 3
    pan = run_panoptic(cls, masks, iou_thr=0.5)
    assert (pan[:2, 4:] == 0 + 3 * INSTANCE_OFFSET).all()
    # query 4 passes object_mask_thr 0.2 and takes C; query 5 owns nothing
    pan = run_panoptic(cls, masks, object_mask_thr=0.2)
    assert (pan[:2, 4:] == 0 + 3 * INSTANCE_OFFSET).all()
    assert (pan[:2, :2] == 0 + 1 * INSTANCE_OFFSET).all()


def test_panoptic_temperature_rescoring():
    # query 0: one class dominates (stuff 2, sigmoid 0.3), mask sigmoid 0.8
    # query 1: two close classes (0.9, 0.88), mask sigmoid 0.7
    cls = torch.full((1, 2, 4), logit(0.01))
    cls[0, 0, 2] = logit(0.3)
    cls[0, 1, 0] = logit(0.9)
    cls[0, 1, 1] = logit(0.88)
    masks = torch.stack(
        [torch.full((3, 3), logit(0.8)),
         torch.full((3, 3), logit(0.7))])[None]
    # sharpened: 0.977 * 0.8 > 0.583 * 0.7 -> the stuff query wins
    assert (run_panoptic(cls, masks) == 2).all()
    # raw sigmoid: 0.3 * 0.8 < 0.9 * 0.7 -> thing query wins
    pan = run_panoptic(cls, masks, transform_eval=False)
    assert (pan == 0 + 1 * INSTANCE_OFFSET).all()


def reference_panoptic(cls, masks, num_things, thr, iou_thr, temperature):
    """Official sequential merge, written in mmdet's encoding."""
    probs = cls.sigmoid()
    scores, labels = probs.max(-1)
    keep = scores > thr
    scores = (probs / temperature).softmax(-1).max(-1)[0]
    s, c, m = scores[keep], labels[keep], masks[keep].sigmoid()
    pan = torch.full(masks.shape[1:], cls.shape[1], dtype=torch.int32)
    owner = (s[:, None, None] * m).argmax(0)
    instance_id = 1
    for k in range(len(s)):
        area = (owner == k).sum().item()
        orig = (m[k] >= 0.5).sum().item()
        seg = (owner == k) & (m[k] >= 0.5)
        if area > 0 and orig > 0 and seg.sum().item() > 0:
            if area / orig < iou_thr:
                continue
            if c[k] < num_things:
                pan[seg] = int(c[k]) + instance_id * INSTANCE_OFFSET
                instance_id += 1
            else:
                pan[seg] = int(c[k])
    return pan


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_panoptic_matches_sequential_loop(seed):
    torch.manual_seed(seed)
    cls = torch.randn(1, 8, 4) * 3
    # smooth blobs so that segments overlap partly
    masks = F.interpolate(
        torch.randn(1, 8, 3, 3) * 4 - 2, (12, 14),
        mode='bilinear',
        align_corners=False)
    pan = run_panoptic(cls, masks, iou_thr=0.6)
    ref = reference_panoptic(cls[0], masks[0], 2, 0.25, 0.6, 0.06)
    assert torch.equal(pan, ref)
    # the case is not trivial: things, stuff and void are all present,
    # and the overlap threshold removed at least one segment
    labels = (pan % INSTANCE_OFFSET).unique().tolist()
    assert {0, 1} & set(labels) and {2, 3} & set(labels) and 4 in labels
    no_overlap_check = run_panoptic(cls, masks, iou_thr=0.0)
    assert len(no_overlap_check.unique()) > len(pan.unique())


def test_panoptic_query_owning_only_background_gets_no_id():
    # q0 owns pixel 1 only where its sigmoid is 0.4 (< 0.5) and loses its
    # foreground pixel 0 to q1: skipped, so q2 is thing instance 2.
    cls = torch.full((1, 3, 4), -5.0)
    cls[0, 0, 0] = cls[0, 1, 1] = cls[0, 2, 0] = 3.0
    masks = torch.full((1, 3, 1, 3), NEG)
    masks[0, 0, 0, :2] = torch.tensor([1.0, logit(0.4)])
    masks[0, 1, 0, 0] = 4.0
    masks[0, 2, 0, 2] = 4.0
    pan = run_panoptic(cls, masks)
    expected = [1 + 1 * INSTANCE_OFFSET, 4, 0 + 2 * INSTANCE_OFFSET]
    assert pan[0].tolist() == expected


def test_panoptic_nothing_kept_is_void():
    cls = torch.full((1, 3, 4), -5.0)
    pan = run_panoptic(cls, torch.zeros(1, 3, 2, 2))
    assert (pan == 4).all()


def test_panoptic_semantic_ce_drops_no_object():
    # C + 1 outputs: the no-object winner is dropped
    cls = torch.full((1, 2, 5), -5.0)
    cls[0, 0, 3] = 5.0  # stuff 3
    cls[0, 1, 4] = 6.0  # no-object
    masks = torch.full((1, 2, 2, 2), 3.0)
    masks[0, 1] = 6.0
    pan = run_panoptic(cls, masks, semantic_ce=True, object_mask_thr=0.8)
    assert (pan == 3).all()


# ----------------------------------------------------------------------
# semantic
# ----------------------------------------------------------------------
def brute_semantic(cls, masks, ce, temperature=None):
    num_q, num_c = cls.shape[0], cls.shape[1] - int(ce)
    out = torch.zeros(num_c, *masks.shape[1:])
    for q in range(num_q):
        if ce:
            z = sum(math.exp(v) for v in cls[q].tolist())
            w = [math.exp(cls[q, c].item()) / z for c in range(num_c)]
        else:
            s = [1 / (1 + math.exp(-v)) for v in cls[q].tolist()]
            if temperature is None:
                w = s
            else:
                z = sum(math.exp(v / temperature) for v in s)
                w = [math.exp(v / temperature) / z for v in s]
        for c in range(num_c):
            out[c] += w[c] * masks[q].sigmoid()
    return out


@pytest.mark.parametrize('ce,transform_eval', [(True, True), (False, True),
                                               (False, False)])
def test_semantic_hand_formula(ce, transform_eval):
    torch.manual_seed(1)
    num_c = 3
    cls = torch.randn(1, 4, num_c + int(ce)) * 2
    masks = torch.randn(1, 4, 5, 6) * 2
    head = make_head(
        num_c,
        0,
        instance_on=False,
        semantic_on=True,
        semantic_ce=ce,
        transform_eval=transform_eval)
    sem = head.predict(cls, masks, None, [meta(
        (5, 6), (5, 6))])[0]['sem_results'].sem_seg
    expected = brute_semantic(cls[0], masks[0], ce,
                              0.06 if transform_eval else None)
    torch.testing.assert_close(sem, expected)


def test_semantic_resize_order():
    torch.manual_seed(2)
    cls = torch.randn(1, 4, 3) * 2
    masks = torch.randn(1, 4, 4, 5) * 3
    img_meta = meta((16, 20), (13, 17), (7, 9), scale=(17 / 9, 13 / 7))
    pad = F.interpolate(masks, (16, 20), mode='bilinear', align_corners=False)

    def crop_resize(x):
        return F.interpolate(
            x[:, :, :13, :17], (7, 9), mode='bilinear', align_corners=False)

    # semantic only: map at padded size, then crop + resize (official)
    head = make_head(3, 0, instance_on=False, semantic_on=True)
    sem = head.predict(cls, masks, None, [img_meta])[0]['sem_results']
    expected = crop_resize(brute_semantic(cls[0], pad[0], False, 0.06)[None])
    torch.testing.assert_close(sem.sem_seg, expected[0])

    # with instance on: masks are resized first, then combined
    head = make_head(3, 0, semantic_on=True)
    out = head.predict(cls, masks, full_box(4), [img_meta])[0]
    expected = brute_semantic(cls[0], crop_resize(pad)[0], False, 0.06)
    torch.testing.assert_close(out['sem_results'].sem_seg, expected)
    assert out['ins_results'].masks.shape == (12, 7, 9)
    # the two orders really differ
    assert not torch.allclose(sem.sem_seg, expected, atol=1e-3)


# ----------------------------------------------------------------------
# all tasks, batching, registry, bad input
# ----------------------------------------------------------------------
def test_all_tasks_batch_of_data_samples():
    torch.manual_seed(3)
    head = MODELS.build(
        dict(
            type='MaskDINOFusionHead',
            num_things_classes=2,
            num_stuff_classes=1,
            test_cfg=dict(
                instance_on=True,
                panoptic_on=True,
                semantic_on=True,
                max_per_image=5,
                unrelated_key=1)))
    cls = torch.randn(2, 6, 3) * 3
    masks = torch.randn(2, 6, 4, 4) * 3
    samples = []
    for img, ori in [((16, 12), (8, 6)), ((10, 16), (10, 16))]:
        sample = DetDataSample()
        scale = (img[1] / ori[1], img[0] / ori[0])
        sample.set_metainfo(meta((16, 16), img, ori, scale))
        samples.append(sample)
    results = head.predict(cls, masks, torch.rand(2, 6, 4), samples)
    for out, ori in zip(results, [(8, 6), (10, 16)]):
        assert set(out) == {'ins_results', 'pan_results', 'sem_results'}
        assert isinstance(out['ins_results'], InstanceData)
        assert out['ins_results'].masks.shape[1:] == ori
        assert (out['ins_results'].labels < 2).all()
        assert out['pan_results'].sem_seg.shape == (1, *ori)
        assert out['sem_results'].sem_seg.shape == (3, *ori)


def test_all_tasks_equal_each_task_alone_and_inputs_untouched():
    # The tasks share one resize and one in-place sigmoid: each result must
    # be what the task computes on its own, and the inputs stay as given.
    torch.manual_seed(5)
    cls = torch.randn(1, 8, 3) * 3
    masks = torch.randn(1, 8, 4, 4) * 3
    boxes = torch.rand(1, 8, 4)
    inputs = [t.clone() for t in (cls, masks, boxes)]
    metas = [meta((16, 16), (16, 12), (8, 6), (2.0, 2.0))]
    tasks = ('instance_on', 'panoptic_on', 'semantic_on')
    # things only: with stuff classes, panoptic_on changes which pairs
    # the instance output may take
    together = make_head(
        3, 0, iou_thr=0.0, **{t: True
                 for t in tasks}).predict(cls, masks, boxes, metas)[0]
    for t, (a, b) in zip(tasks, [(cls, inputs[0]), (masks, inputs[1]),
                                 (boxes, inputs[2])]):
        assert torch.equal(a, b), t
    alone = {}
    for task in tasks:
        # the semantic map from resized masks, as when other tasks are on
        head = make_head(
            3, 0, iou_thr=0.0, sem_seg_postprocess_before_inference=True,
            **{t: t == task
               for t in tasks})
        alone.update(head.predict(cls, masks, boxes, metas)[0])
    assert set(alone) == set(together)
    ins, ins_alone = together['ins_results'], alone['ins_results']
    ref = reference_instance(cls[0], masks[0], boxes[0], metas[0], 100)
    assert len(ins) == len(ref) > 0
    assert ins.labels.tolist() == [c for _, c, _, _, _ in ref]
    torch.testing.assert_close(ins.scores,
                               torch.tensor([s for _, _, s, _, _ in ref]))
    assert torch.equal(ins.masks, torch.stack([b for *_, b, _ in ref]))
    assert torch.equal(ins.scores, ins_alone.scores)
    assert torch.equal(ins.masks, ins_alone.masks)
    assert torch.equal(together['pan_results'].sem_seg,
                       alone['pan_results'].sem_seg)
    assert (together['pan_results'].sem_seg != 3).any()  # not all void
    torch.testing.assert_close(together['sem_results'].sem_seg,
                               alone['sem_results'].sem_seg)


def test_batch_results_equal_single_image_calls():
    torch.manual_seed(4)
    head = make_head(2, 1, panoptic_on=True, semantic_on=True)
    cls = torch.randn(2, 6, 3) * 3
    masks = torch.randn(2, 6, 4, 4) * 3
    boxes = torch.rand(2, 6, 4)
    metas = [
        meta((16, 16), (16, 12), (8, 6), (2.0, 2.0)),
        meta((16, 16), (10, 16))
    ]
    batch = head.predict(cls, masks, boxes, metas)
    for i in range(2):
        single = head.predict(cls[i:i + 1], masks[i:i + 1], boxes[i:i + 1],
                              metas[i:i + 1])[0]
        assert torch.equal(batch[i]['pan_results'].sem_seg,
                           single['pan_results'].sem_seg)
        torch.testing.assert_close(batch[i]['sem_results'].sem_seg,
                                   single['sem_results'].sem_seg)
        torch.testing.assert_close(batch[i]['ins_results'].scores,
                                   single['ins_results'].scores)


def test_bad_inputs():
    head = make_head(2, 0)
    cls, masks = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2, 2)
    img_meta = meta((8, 8), (8, 8))
    with pytest.raises(ValueError, match='mask_cls_results'):
        head.predict(torch.zeros(1, 3, 3), masks, full_box(3), [img_meta])
    with pytest.raises(ValueError, match='bbox_pred_results'):
        head.predict(cls, masks, None, [img_meta])
    with pytest.raises(ValueError, match='mask_pred_results'):
        head.predict(cls, torch.zeros(1, 4, 2, 2), full_box(3), [img_meta])
    with pytest.raises(KeyError, match='scale_factor'):
        head.predict(cls, masks, full_box(3), [
            dict(batch_input_shape=(8, 8), img_shape=(8, 8), ori_shape=(8, 8))
        ])
    with pytest.raises(ValueError, match='at least one'):
        make_head(2, 0, instance_on=False)
    with pytest.raises(ValueError, match='semantic_ce'):
        make_head(
            2, 0, semantic_ce=True).predict(cls, masks, full_box(3),
                                            [img_meta])
