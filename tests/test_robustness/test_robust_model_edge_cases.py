"""Edge cases that must train and predict (model level, tiny models):
empty images and batches, more GT than dn_num / queries, degenerate and
border geometry, tiny and large inputs, stuff-only and ignore-only maps.
The models are those of the tiny synthetic configs: 3 thing classes, 2
stuff classes (panoptic), 5 classes (semantic)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_sample
from mmengine.structures import InstanceData
from robust_common import (backward_and_check, build_tiny,
                           check_instance_predictions, predict)

from projects.mask_dino.layers.denoising import (DNLayout,
                                              MaskDINODenoisingGenerator)

# parameters that only get gradients when the whole graph is connected
CORE_PARAMS = ('backbone.conv1.weight', 'panoptic_head.cls_embed.weight',
               'panoptic_head.pixel_decoder.input_projs.0.conv.weight')


def _core_params(model):
    names = dict(model.named_parameters())
    return [n for n in CORE_PARAMS if n in names]


def _head_run(model, inputs, samples):
    """Head forward with the targets kept, to inspect matching and DN."""
    head = model.panoptic_head
    feats = model.extract_feat(inputs)
    gts = head.preprocess_gt(samples)
    metas = [s.metainfo for s in samples]
    outputs = head(feats, samples, gts)
    return head, outputs, gts, metas


def test_image_without_annotations_next_to_annotated_one():
    model = build_tiny()
    samples = [
        make_sample(64, 64, [], []),
        make_sample(64, 64, [[4, 4, 30, 40], [30, 10, 60, 30]], [1, 2])
    ]
    inputs = torch.randn(2, 3, 64, 64)
    head, outputs, gts, metas = _head_run(model, inputs, samples)
    # DN groups are sized by the busier image: dn_num 10 // 2 GT = 5
    assert outputs['dn_meta'] == DNLayout(num_groups=5, single_pad=2)
    pairs = head.criterion.get_matched_pairs(outputs, gts, metas)
    assert len(pairs[0][0]) == 0 and sorted(pairs[1][1].tolist()) == [0, 1]
    losses = head.criterion(outputs, gts, metas)
    assert float(losses['dn_loss_mask']) > 0
    backward_and_check(model, losses, _core_params(model))
    results = predict(model, inputs, samples)
    check_instance_predictions(results, 3)


def test_all_empty_batch_skips_dn_and_still_learns():
    model = build_tiny()
    samples = [
        make_sample(64, 64, [], []),
        make_sample(48, 64, [], [], pad_shape=(64, 64))
    ]
    inputs = torch.randn(2, 3, 64, 64)
    head, outputs, gts, metas = _head_run(model, inputs, samples)
    assert outputs['dn_meta'] is None and outputs['dn_outputs'] is None
    losses = head.criterion(outputs, gts, metas)
    # every query is background: the focal loss (normaliser clamped to 1)
    # equals the hand-computed sum over all logits
    logits = outputs['cls_scores'].detach()
    p = logits.sigmoid()
    focal = 0.75 * p**2 * F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction='none')
    torch.testing.assert_close(
        losses['loss_cls'].detach(), 4.0 * focal.sum(), rtol=1e-4, atol=1e-4)
    for key, value in losses.items():
        if 'dn_' in key or key.endswith(('mask', 'dice', 'bbox', 'iou')):
            assert float(value) == 0.0, key
    backward_and_check(model, losses, _core_params(model))
    # the DN embedding stays in the graph (DDP) but gets a zero gradient
    emb = head.dn_generator.label_embedding.weight
    assert emb.grad is not None and float(emb.grad.abs().sum()) == 0.0

    # a few optimiser steps on empty images push the logits down
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(4):
        losses = model.loss(inputs, samples)
        total = sum(losses.values())
        first = float(losses['loss_cls']) if first is None else first
        optim.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optim.step()
    assert float(model.loss(inputs, samples)['loss_cls']) < first
    results = predict(model, inputs, samples)
    check_instance_predictions(results, 3)
    assert results[1].pred_instances.masks.shape[-2:] == (48, 64)


def test_more_instances_than_dn_num_and_queries():
    model = build_tiny()  # 20 queries, dn_num 10
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(30):
        x0, y0 = rng.integers(0, 56, 2)
        w, h = rng.integers(2, 9, 2)
        boxes.append([int(x0), int(y0), int(x0 + w), int(y0 + h)])
    labels = list(rng.integers(0, 3, 30))
    samples = [
        make_sample(64, 64, boxes, labels),
        make_sample(64, 64, boxes[:3], labels[:3])
    ]
    inputs = torch.randn(2, 3, 64, 64)
    head, outputs, gts, metas = _head_run(model, inputs, samples)
    assert outputs['dn_meta'] is None  # 30 > dn_num: DN skipped
    pairs = head.criterion.get_matched_pairs(outputs, gts, metas)
    # one-to-one: all 20 queries get distinct GTs, 10 GTs stay unmatched
    assert len(pairs[0][0]) == 20 and len(set(pairs[0][1].tolist())) == 20
    assert len(pairs[1][0]) == 3
    losses = head.criterion(outputs, gts, metas)
    assert float(losses['dn_loss_cls']) == 0.0
    assert float(losses['loss_mask']) > 0
    backward_and_check(model, losses, _core_params(model))
    check_instance_predictions(predict(model, inputs, samples), 3)


@pytest.mark.parametrize('num_gt,expected', [(101, None), (100, (1, 100)),
                                             (34, (2, 34)), (0, None)])
def test_official_dn_num_groups(num_gt, expected):
    gen = MaskDINODenoisingGenerator(
        num_classes=80, embed_dims=8, num_matching_queries=300, dn_num=100)
    boxes = torch.tensor([[1., 2., 30., 40.]]).repeat(num_gt, 1)
    gts = [
        InstanceData(
            labels=torch.zeros(num_gt, dtype=torch.long), bboxes=boxes)
    ]
    query, anchors, attn_mask, meta = gen(gts, [dict(img_shape=(64, 64))])
    if expected is None:
        assert query is None and meta is None
        return
    groups, pad = expected
    assert meta == DNLayout(num_groups=groups, single_pad=pad)
    assert query.shape == (1, groups * pad, 8)
    assert torch.isfinite(anchors).all()
    assert attn_mask.shape == (groups * pad + 300, ) * 2


def test_degenerate_border_and_thin_geometry():
    model = build_tiny()
    boxes = [
        [10, 10, 10, 10],  # zero area (and an empty mask)
        [20, 20, 20, 40],  # zero width
        [5, 5, 6, 6],  # one pixel
        [0, 0, 64, 64],  # the whole image
        [63, 0, 64, 64],  # one column on the right border
        [0, 63, 64, 64],  # one row on the bottom border
        [30, 0, 31, 64],  # thin vertical line
    ]
    samples = [
        make_sample(64, 64, boxes, [0, 1, 2, 0, 1, 2, 0]),
        make_sample(64, 64, [[0, 0, 1, 1]], [1])
    ]
    inputs = torch.randn(2, 3, 64, 64)
    head, outputs, gts, metas = _head_run(model, inputs, samples)
    assert outputs['dn_meta']['num_groups'] == 1  # 10 // 7
    assert gts[0].masks[0].sum() == 0 and gts[0].masks[2].sum() == 1
    losses = head.criterion(outputs, gts, metas)
    assert float(losses['dn_loss_iou']) > 0
    backward_and_check(model, losses, _core_params(model))
    check_instance_predictions(predict(model, inputs, samples), 3)


@pytest.mark.parametrize('sizes', [[(8, 8), (5, 13)], [(1, 1), (31, 2)]])
def test_images_smaller_than_the_largest_stride(sizes):
    # padded to 32x32: the stride-32 and stride-64 levels are 1x1
    model = build_tiny()
    samples = [
        make_sample(h, w, [[0, 0, w, h]], [2], pad_shape=(32, 32))
        for h, w in sizes
    ]
    inputs = torch.randn(2, 3, 32, 32)
    losses = model.loss(inputs, samples)
    assert len(losses) == 45
    backward_and_check(model, losses, _core_params(model))
    results = predict(model, inputs, samples)
    check_instance_predictions(results, 3)
    assert [tuple(r.pred_instances.masks.shape[-2:])
            for r in results] == [tuple(s) for s in sizes]


def test_input_with_fewer_tokens_than_queries_is_a_clear_error():
    model = build_tiny(num_queries=300)
    samples = [make_sample(32, 32, [[0, 0, 8, 8]], [1])]
    with pytest.raises(ValueError, match='too small.*22 tokens.*300'):
        model.loss(torch.randn(1, 3, 32, 32), samples)


def test_large_image_trains_and_predicts():
    model = build_tiny()
    h, w = 256, 448  # 16x the tiny tests' area, non-square
    samples = [
        make_sample(h, w, [[10, 20, 300, 200], [420, 0, 448, 256]], [1, 2])
    ]
    losses = model.loss(torch.randn(1, 3, h, w), samples)
    backward_and_check(model, losses, _core_params(model))
    # inference on a 1333 x 800 sized image (the COCO test scale)
    big = make_sample(
        800, 1216, [], [], ori_shape=(600, 912), pad_shape=(800, 1216))
    results = predict(model, torch.randn(1, 3, 800, 1216), [big])
    check_instance_predictions(results, 3)
    assert results[0].pred_instances.masks.shape[-2:] == (600, 912)


def test_panoptic_image_with_only_stuff():
    model = build_tiny('panoptic')
    head = model.panoptic_head
    sem = np.full((64, 64), 3)  # the first stuff class ...
    sem[40:] = 4  # ... and the last class
    sem[:4] = 255  # unlabelled band
    samples = [
        make_sample(64, 64, [], [], sem_seg=sem),
        make_sample(64, 64, [], [], sem_seg=sem[::-1].copy())
    ]
    inputs = torch.randn(2, 3, 64, 64)
    head, outputs, gts, metas = _head_run(model, inputs, samples)
    assert gts[0].labels.tolist() == [3, 4]
    assert gts[0].bboxes.tolist() == [[0, 4, 64, 40], [0, 40, 64, 64]]
    assert outputs['dn_meta'] is not None  # stuff targets get DN as well
    losses = head.criterion(outputs, gts, metas)
    assert float(losses['loss_dice']) > 0
    backward_and_check(model, losses, _core_params(model))
    results = predict(model, inputs, samples)
    pan = results[0].pred_panoptic_seg.sem_seg
    assert pan.shape == (1, 64, 64)
    assert results[0].pred_sem_seg.sem_seg.max() < 5


def test_semantic_ignore_label_only_and_partly():
    model = build_tiny('semantic')
    head = model.panoptic_head
    sem = np.full((64, 64), 255)
    sem[10:30, 5:60] = 4  # the last class
    samples = [
        make_sample(64, 64, [], [], sem_seg=sem),
        make_sample(64, 64, [], [], sem_seg=np.full((64, 64), 255))
    ]
    for s in samples:
        del s.gt_instances  # semantic datasets pack no instances
    inputs = torch.randn(2, 3, 64, 64)
    head, outputs, gts, metas = _head_run(model, inputs, samples)
    assert gts[0].labels.tolist() == [4]
    assert gts[0].bboxes.tolist() == [[5, 10, 60, 30]]
    assert len(gts[1]) == 0  # only ignore pixels: no target at all
    losses = head.criterion(outputs, gts, metas)
    backward_and_check(model, losses, ('panoptic_head.cls_embed.weight', ))
    results = predict(model, inputs, samples)
    assert results[1].pred_sem_seg.sem_seg.shape == (1, 64, 64)
    assert results[1].seg_logits.data.shape == (5, 64, 64)
