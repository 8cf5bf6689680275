import math

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.models.layers.transformer import inverse_sigmoid
from projects.mask_dino.layers import DNLayout, MaskDINODenoisingGenerator

IMG_H, IMG_W = 40, 80


def _make_gt(labels, bboxes):
    return InstanceData(
        labels=torch.tensor(labels, dtype=torch.long),
        bboxes=torch.tensor(bboxes, dtype=torch.float32).view(-1, 4))


def _metas(num_imgs):
    return [dict(img_shape=(IMG_H, IMG_W)) for _ in range(num_imgs)]


def _random_gt(num_gts, num_classes, generator):
    labels = torch.randint(0, num_classes, (num_gts, ), generator=generator)
    xy1 = torch.rand(num_gts, 2, generator=generator) * 0.5
    wh = torch.rand(num_gts, 2, generator=generator) * 0.4 + 0.05
    norm = torch.cat([xy1, xy1 + wh], dim=1)
    bboxes = norm * torch.tensor([IMG_W, IMG_H, IMG_W, IMG_H])
    return InstanceData(labels=labels, bboxes=bboxes)


def _normalised_cxcywh(bboxes):
    x1, y1, x2, y2 = bboxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2 / IMG_W, (y1 + y2) / 2 / IMG_H,
                        (x2 - x1) / IMG_W, (y2 - y1) / IMG_H], -1)


def _two_images(num_classes=7):
    g = torch.Generator().manual_seed(0)
    return [_random_gt(3, num_classes, g), _random_gt(5, num_classes, g)]


def _brute_force_attn_mask(single_pad, num_groups, num_queries):
    pad = single_pad * num_groups
    total = pad + num_queries
    mask = torch.zeros(total, total, dtype=torch.bool)
    for i in range(total):
        for j in range(total):
            i_dn, j_dn = i < pad, j < pad
            if not i_dn and j_dn:
                mask[i, j] = True  # matching query looks at a dn query
            elif i_dn and j_dn and i // single_pad != j // single_pad:
                mask[i, j] = True  # dn query looks at another dn group
    return mask


def test_group_layout_and_slot_mapping_without_noise():
    torch.manual_seed(0)
    gen = MaskDINODenoisingGenerator(
        num_classes=7, embed_dims=8, num_matching_queries=6, noise_scale=0.)
    gts = _two_images()
    queries, anchors, attn_mask, meta = gen(gts, _metas(2))

    assert meta == DNLayout(20, 5)
    assert queries.shape == (2, 100, 8)
    assert anchors.shape == (2, 100, 4)
    assert attn_mask.shape == (106, 106) and attn_mask.dtype == torch.bool
    weight = gen.label_embedding.weight
    for b, gt in enumerate(gts):
        expected_anchor = inverse_sigmoid(
            _normalised_cxcywh(gt.bboxes), eps=1e-5)
        for g in range(20):
            for t in range(5):
                slot = g * 5 + t
                if t < len(gt.labels):
                    assert torch.equal(queries[b, slot], weight[gt.labels[t]])
                    torch.testing.assert_close(anchors[b, slot],
                                               expected_anchor[t])
                else:  # padding slot of the image with 3 GTs
                    assert not queries[b, slot].any()
                    assert not anchors[b, slot].any()
    # image 1 (5 GTs) has no padding slot, image 0 has 2 per group.
    assert (queries[0].abs().sum(-1) == 0).sum() == 40
    assert (queries[1].abs().sum(-1) == 0).sum() == 0


def test_attn_mask_matches_brute_force():
    gen = MaskDINODenoisingGenerator(
        num_classes=7, embed_dims=8, num_matching_queries=6)
    _, _, attn_mask, meta = gen(_two_images(), _metas(2))
    assert torch.equal(attn_mask, _brute_force_attn_mask(5, 20, 6))
    # Uneven split: 100 // 3 = 33 groups, pad 99.
    gts = [_random_gt(3, 7, torch.Generator().manual_seed(1))]
    _, _, attn_mask, meta = gen(gts, _metas(1))
    assert meta == DNLayout(33, 3)
    assert torch.equal(attn_mask, _brute_force_attn_mask(3, 33, 6))
    # Small hand-written case: single_pad 1, 2 groups, 1 matching query.
    gen = MaskDINODenoisingGenerator(
        num_classes=7, embed_dims=8, num_matching_queries=1, dn_num=2)
    _, _, attn_mask, _ = gen([_make_gt([0], [[0, 0, 8, 8]])], _metas(1))
    expected = torch.tensor([[0, 1, 0], [1, 0, 0], [1, 1, 0]]).bool()
    assert torch.equal(attn_mask, expected)


def test_box_noise_bounds():
    torch.manual_seed(0)
    gen = MaskDINODenoisingGenerator(num_classes=5, embed_dims=4)
    # Small central boxes: noise never reaches the [0, 1] clamp.
    cxcywh = torch.tensor([[0.5, 0.5, 0.1, 0.2], [0.3, 0.6, 0.2, 0.05],
                           [0.7, 0.4, 0.05, 0.1], [0.45, 0.5, 0.3, 0.3]])
    noisy = gen.apply_box_noise(cxcywh.repeat(5000, 1)).view(5000, 4, 4)
    # relative noise (delta / (w, h, w, h)), bounded by 0.2 and 0.4
    scale = torch.cat([cxcywh[:, 2:], cxcywh[:, 2:]], -1)
    rel = (noisy - cxcywh) / scale
    tol = 1e-5
    assert rel[..., :2].abs().max() <= 0.2 + tol
    assert rel[..., 2:].abs().max() <= 0.4 + tol
    # the bounds are reached (uniform noise fills the whole range)
    assert rel[..., :2].abs().max() > 0.199
    assert rel[..., 2:].abs().max() > 0.399
    # U(-1, 1) * bound: mean 0, std bound / sqrt(3)
    assert rel.mean(dim=(0, 1)).abs().max() < 0.01
    std = rel.std(dim=(0, 1))
    expected_std = torch.tensor([0.2, 0.2, 0.4, 0.4]) / math.sqrt(3)
    torch.testing.assert_close(std, expected_std, atol=0.005, rtol=0)
    # each copy gets its own noise: groups differ
    assert not torch.allclose(noisy[0], noisy[1])


def test_noised_anchors_in_full_call():
    torch.manual_seed(0)
    gen = MaskDINODenoisingGenerator(
        num_classes=5, embed_dims=4, num_matching_queries=2, dn_num=1000)
    gts = _two_images(num_classes=5)
    _, anchors, _, meta = gen(gts, _metas(2))
    assert meta == DNLayout(200, 5)
    for b, gt in enumerate(gts):
        n = len(gt.labels)
        boxes = _normalised_cxcywh(gt.bboxes)
        noisy = anchors[b].view(200, 5, 4)[:, :n].sigmoid()
        scale = torch.cat([boxes[:, 2:] * 0.2, boxes[:, 2:] * 0.4], -1)
        assert ((noisy - boxes).abs() <= scale + 1e-4).all()
        assert ((noisy - boxes).abs() > scale * 0.9).any()
        assert not anchors[b].view(200, 5, 4)[:, n:].any()


def test_box_noise_clamped_to_unit_range():
    torch.manual_seed(0)
    gen = MaskDINODenoisingGenerator(
        num_classes=5, embed_dims=4, num_matching_queries=2, dn_num=1000)
    # full-image box: w, h = 1 grow up to 1.4 and are clamped to 1
    gt = _make_gt([1], [[0, 0, IMG_W, IMG_H]])
    _, anchors, _, _ = gen([gt], _metas(1))
    logit_one = math.log(1 / 1e-5)
    assert anchors.max().item() == pytest.approx(logit_one, abs=1e-4)
    at_one = (anchors[0, :, 2:] - logit_one).abs() < 1e-4
    # P(size noise > 0) = 0.5 for each of w and h
    assert 0.4 < at_one.float().mean().item() < 0.6
    # the noised boxes themselves are clamped (inverse_sigmoid would hide
    # a missing clamp in the anchors)
    noisy = gen.apply_box_noise(torch.tensor([[0.5, 0.5, 1., 1.]] * 1000))
    assert noisy.min() >= 0 and noisy.max() == 1
    assert 0.4 < (noisy[:, 2:] == 1).float().mean().item() < 0.6


def test_label_noise_embedding_rows():
    torch.manual_seed(0)
    num_classes = 10
    gen = MaskDINODenoisingGenerator(
        num_classes=num_classes,
        embed_dims=16,
        num_matching_queries=2,
        dn_num=2000)
    labels = torch.arange(10)
    gt = InstanceData(
        labels=labels,
        bboxes=torch.tensor([[10., 10., 20., 30.]]).repeat(10, 1))
    queries, _, _, meta = gen([gt], _metas(1))
    assert meta['num_groups'] == 200
    weight = gen.label_embedding.weight
    # every query is exactly one row of the embedding table
    eq = (queries[0][:, None, :] == weight[None]).all(-1)  # (pad, C)
    assert (eq.sum(-1) == 1).all()
    noisy_labels = eq.float().argmax(-1)
    assert ((noisy_labels >= 0) & (noisy_labels < num_classes)).all()
    true_labels = labels.repeat(200)
    changed = noisy_labels != true_labels
    # resample prob 0.2, and a resampled label differs w.p. 1 - 1 / C
    assert changed.float().mean().item() == pytest.approx(0.18, abs=0.03)
    # the resampled labels are spread over all classes
    assert len(noisy_labels[changed].unique()) == 10


def test_label_noise_rate():
    torch.manual_seed(0)
    gen = MaskDINODenoisingGenerator(num_classes=10, embed_dims=4)
    labels = torch.arange(10).repeat(5000)
    noisy = gen.apply_label_noise(labels)
    changed = noisy != labels
    assert ((noisy >= 0) & (noisy < 10)).all()
    assert changed.float().mean().item() == pytest.approx(
        0.2 * (1 - 1 / 10), abs=0.01)
    # resampled labels are uniform over the other classes
    counts = torch.bincount(noisy[changed], minlength=10).float()
    assert (counts / counts.sum() - 0.1).abs().max() < 0.02


def test_label_noise_rate_many_classes():
    torch.manual_seed(1)
    gen = MaskDINODenoisingGenerator(num_classes=1000, embed_dims=4)
    labels = gen.apply_label_noise(torch.full((20000, ), 3))
    assert ((labels >= 0) & (labels < 1000)).all()
    assert (labels != 3).float().mean().item() == pytest.approx(
        0.2 * 0.999, abs=0.015)
    # noise_scale 0 keeps every label
    gen = MaskDINODenoisingGenerator(num_classes=1000, noise_scale=0.)
    assert torch.equal(
        gen.apply_label_noise(torch.full((1000, ), 3)), torch.full((1000, ),
                                                                   3))


def test_gradient_reaches_label_embedding():
    gen = MaskDINODenoisingGenerator(
        num_classes=7, embed_dims=8, num_matching_queries=3, noise_scale=0.)
    gts = [_make_gt([2, 4], [[0, 0, 8, 8], [4, 4, 20, 12]])]
    queries, _, _, _ = gen(gts, _metas(1))
    queries.sum().backward()
    grad = gen.label_embedding.weight.grad
    # 100 // 2 = 50 groups: rows 2 and 4 used 50 times each
    expected = torch.zeros(7, 8)
    expected[[2, 4]] = 50.
    assert torch.equal(grad, expected)


def test_skip_without_gt_or_too_many_gt():
    gen = MaskDINODenoisingGenerator(num_classes=7, embed_dims=8, dn_num=4)
    empty = _make_gt([], [])
    assert gen([empty, empty], _metas(2)) == (None, None, None, None)
    five = _random_gt(5, 7, torch.Generator().manual_seed(0))
    assert gen([empty, five], _metas(2)) == (None, None, None, None)
    # exactly dn_num GTs -> a single group; an empty image is all padding
    four = _random_gt(4, 7, torch.Generator().manual_seed(0))
    queries, anchors, attn_mask, meta = gen([empty, four], _metas(2))
    assert meta == DNLayout(1, 4)
    assert not queries[0].any() and not anchors[0].any()
    assert queries[1].abs().sum(-1).gt(0).all()
    assert attn_mask.shape == (304, 304)


def test_boxes_normalised_by_img_shape():
    gen = MaskDINODenoisingGenerator(
        num_classes=3, embed_dims=4, dn_num=1, noise_scale=0.)
    gt = _make_gt([0], [[10., 20., 30., 60.]])
    _, anchors, _, _ = gen([gt], [dict(img_shape=(100, 200))])
    # (cx, cy, w, h) = (20 / 200, 40 / 100, 20 / 200, 40 / 100)
    expected = torch.tensor([0.1, 0.4, 0.1, 0.4])
    torch.testing.assert_close(anchors[0, 0].sigmoid(), expected)


def test_bad_config():
    # The targets are checked where they enter the head
    # (tests/test_heads/test_targets.py), the settings here.
    with pytest.raises(ValueError, match='num_classes'):
        MaskDINODenoisingGenerator(num_classes=0)
    with pytest.raises(ValueError, match='dn_num'):
        MaskDINODenoisingGenerator(num_classes=3, dn_num=-1)
    with pytest.raises(ValueError, match='noise_scale'):
        MaskDINODenoisingGenerator(num_classes=3, noise_scale=-0.1)


def test_dn_layout_slots_pairs_and_split_agree():
    """The generator's slots, the criterion's pairs and the head's split
    come from one layout: the copy of GT t of image b in group g sits at
    the slot the criterion pairs with GT t."""
    layout = DNLayout(num_groups=3, single_pad=2)
    assert layout.pad_size == 6 and layout['pad_size'] == 6
    num_gts = [1, 2, 0]
    batch_idx, slot_idx = layout.slot_indices(num_gts, 'cpu')
    # group-major copies: (img0 gt0, img1 gt0, img1 gt1) x 3 groups
    assert batch_idx.tolist() == [0, 1, 1] * 3
    assert slot_idx.tolist() == [0, 0, 1, 2, 2, 3, 4, 4, 5]
    pairs = layout.pairs(num_gts)
    for b, (pred_inds, gt_inds) in enumerate(pairs):
        slots = sorted(slot_idx[batch_idx == b].tolist())
        assert sorted(pred_inds.tolist()) == slots
        assert (pred_inds % layout.single_pad == gt_inds).all()
    assert len(pairs[2][0]) == 0
    preds = torch.arange(2 * 9).view(2, 9)  # 6 dn + 3 matching queries
    dn, matching = layout.split(preds)
    assert dn.shape == (2, 6) and torch.equal(matching, preds[:, 6:])
    with pytest.raises(ValueError, match='single_pad'):
        layout.pairs([3])


def test_dn_layout_from_meta():
    layout = DNLayout(2, 4)
    assert DNLayout.from_meta(layout) is layout
    assert DNLayout.from_meta(
        dict(num_groups=2, single_pad=4, pad_size=8)) == layout
    assert DNLayout.from_meta(dict(num_groups=2, single_pad=4)) == layout
    with pytest.raises(ValueError, match='pad_size'):
        DNLayout.from_meta(dict(num_groups=2, single_pad=4, pad_size=6))
    with pytest.raises(KeyError, match='single_pad'):
        DNLayout.from_meta(dict(num_groups=2))
    with pytest.raises(ValueError, match='num_groups'):
        DNLayout(0, 4)
