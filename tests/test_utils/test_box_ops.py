import math

import pytest
import torch

from projects.mask_dino.utils.box_ops import (mask_boxes_to_anchor_logits,
                                              masks_to_boxes,
                                              masks_to_boxes_bitmask,
                                              masks_to_boxes_mask2box)

H, W = 5, 6
LOGIT_ONE = math.log(1 / 1e-5)  # inverse_sigmoid(1) with eps 1e-5


def _hand_made_masks():
    """Single pixel, full, empty and L-shaped masks, shape (4, 5, 6)."""
    masks = torch.zeros(4, H, W, dtype=torch.bool)
    masks[0, 2, 3] = True  # single pixel at row 2, column 3
    masks[1] = True  # full
    # masks[2] stays empty
    masks[3, 1:5, 1] = True  # L: vertical bar in column 1, rows 1..4
    masks[3, 4, 1:5] = True  # L: horizontal bar in row 4, columns 1..4
    return masks


def _brute_force(mask, mode):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return [1e8, 1e8, 0., 0.] if mode == 'mask2box' else [0.] * 4
    extra = 0 if mode == 'mask2box' else 1
    return [
        xs.min().item(),
        ys.min().item(),
        xs.max().item() + extra,
        ys.max().item() + extra
    ]


def test_mask2box_hand_made():
    boxes = masks_to_boxes_mask2box(_hand_made_masks())
    expected = torch.tensor([[3., 2., 3., 2.], [0., 0., 5., 4.],
                             [1e8, 1e8, 0., 0.], [1., 1., 4., 4.]])
    assert boxes.dtype == torch.float32
    assert torch.equal(boxes, expected)


def test_bitmask_hand_made():
    boxes = masks_to_boxes_bitmask(_hand_made_masks())
    expected = torch.tensor([[3., 2., 4., 3.], [0., 0., 6., 5.],
                             [0., 0., 0., 0.], [1., 1., 5., 5.]])
    assert boxes.dtype == torch.float32
    assert torch.equal(boxes, expected)


def test_bitmask_equals_mmdet_mask2bbox():
    from mmdet.structures.mask import mask2bbox
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(20, 13, 17, generator=g) > 0.9
    masks[:3] = False  # empty masks: (0, 0, 0, 0) in both
    assert torch.equal(masks_to_boxes_bitmask(masks), mask2bbox(masks))


@pytest.mark.parametrize('mode', ['mask2box', 'bitmask'])
def test_random_batched_masks_match_brute_force(mode):
    g = torch.Generator().manual_seed(0)
    # sparse masks so that some are empty and extents vary
    masks = torch.rand(3, 7, 9, 11, generator=g) > 0.97
    masks[0, 0] = False
    boxes = masks_to_boxes(masks, mode=mode)
    assert boxes.shape == (3, 7, 4)
    expected = torch.tensor([[_brute_force(m, mode) for m in row]
                             for row in masks])
    assert torch.equal(boxes, expected)
    # batched call equals the flat (N, h, w) call
    flat = masks_to_boxes(masks.flatten(0, 1), mode=mode)
    assert torch.equal(boxes.flatten(0, 1), flat)
    # non-bool input: non-zero is foreground
    assert torch.equal(masks_to_boxes(masks.float() * 3, mode=mode), boxes)


def test_masks_to_boxes_edge_inputs():
    assert masks_to_boxes(torch.zeros(0, H, W,
                                      dtype=torch.bool)).shape == (0, 4)
    with pytest.raises(ValueError, match='mode'):
        masks_to_boxes(_hand_made_masks(), mode='tight')
    with pytest.raises(ValueError, match='masks'):
        masks_to_boxes(torch.zeros(5, dtype=torch.bool))


def test_anchor_logits_hand_computed():
    boxes = torch.tensor([[1., 1., 3., 2.], [0., 0., 4., 4.]])
    logits = mask_boxes_to_anchor_logits(boxes, h=4, w=4)
    # box 0: (cx, cy, w, h) = (0.5, 0.375, 0.5, 0.25)
    expected = torch.tensor(
        [[0., math.log(0.375 / 0.625), 0.,
          math.log(0.25 / 0.75)], [0., 0., LOGIT_ONE, LOGIT_ONE]])
    torch.testing.assert_close(logits, expected)
    # non-square map: normalised by (w, h, w, h)
    logits = mask_boxes_to_anchor_logits(
        torch.tensor([[2., 1., 6., 3.]]), h=4, w=8)
    torch.testing.assert_close(logits.sigmoid(),
                               torch.tensor([[0.5, 0.5, 0.5, 0.5]]))


def test_anchor_logits_of_empty_masks():
    masks = _hand_made_masks()
    # mask2box: inverted box -> centre clamped to 1, size clamped to 0
    logits = mask_boxes_to_anchor_logits(
        masks_to_boxes_mask2box(masks), h=H, w=W)
    torch.testing.assert_close(
        logits[2], torch.tensor([LOGIT_ONE, LOGIT_ONE, -LOGIT_ONE,
                                 -LOGIT_ONE]))
    assert logits[2, 0].item() == pytest.approx(11.5129, abs=1e-4)
    # bitmask: zero box -> every coordinate clamped to 0
    logits = mask_boxes_to_anchor_logits(
        masks_to_boxes_bitmask(masks), h=H, w=W)
    torch.testing.assert_close(logits[2], torch.full((4, ), -LOGIT_ONE))
    # full mask with bitmask covers the map exactly: (0.5, 0.5, 1, 1)
    torch.testing.assert_close(logits[1],
                               torch.tensor([0., 0., LOGIT_ONE, LOGIT_ONE]))
