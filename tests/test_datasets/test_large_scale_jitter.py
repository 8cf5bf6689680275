"""LargeScaleJitter: the official LSJ as one step, with the results and
random draws of mmdet's own five steps (flip, random resize, crop, pad,
drop emptied instances) that the COCO and synthetic configs listed before."""
import copy

import numpy as np
import pytest
from data_helpers import lsj_steps
from mmcv.transforms import Compose
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

import projects.mask_dino  # noqa: F401  (registers the transform)

SCALE = (64, 64)


def _sample(with_masks: bool = True, with_seg: bool = False) -> dict:
    """A 90x120 image with a large disc and a small square near a corner
    (so that some crops drop it), as LoadAnnotations leaves them."""
    rng = np.random.RandomState(0)
    h, w = 90, 120
    ys, xs = np.mgrid[:h, :w]
    disc = (ys - 40)**2 + (xs - 70)**2 < 25**2
    square = np.zeros((h, w), bool)
    square[2:9, 3:10] = True
    masks = np.stack([disc, square]).astype(np.uint8)
    boxes = np.array([[45, 15, 95, 65], [3, 2, 10, 9]], np.float32)
    results = dict(
        img=rng.randint(0, 255, (h, w, 3), np.uint8),
        img_shape=(h, w),
        ori_shape=(h, w),
        gt_bboxes=HorizontalBoxes(boxes),
        gt_bboxes_labels=np.array([0, 1], np.int64),
        gt_ignore_flags=np.zeros(2, bool))
    if with_masks:
        results['gt_masks'] = BitmapMasks(masks, h, w)
    if with_seg:
        seg = np.full((h, w), 7, np.uint8)
        seg[disc] = 0
        seg[square] = 1
        results['gt_seg_map'] = seg
    return results


def _same(a, b) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        other = b[key]
        if isinstance(value, HorizontalBoxes):
            value, other = value.tensor.numpy(), other.tensor.numpy()
        elif isinstance(value, BitmapMasks):
            value, other = value.masks, other.masks
        np.testing.assert_array_equal(value, other, err_msg=key)


def _run(transform, results: dict, seed: int):
    np.random.seed(seed)
    return transform(copy.deepcopy(results))


@pytest.mark.parametrize('with_masks,with_seg', [(True, False), (True, True),
                                                 (False, False)])
def test_equals_the_five_steps(with_masks, with_seg):
    lsj = TRANSFORMS.build(
        dict(
            type='LargeScaleJitter',
            scale=SCALE,
            ratio_range=(0.1, 2.0),
            boxes_from_masks=with_masks))
    steps = Compose([
        TRANSFORMS.build(step) for step in lsj_steps(
            SCALE, (0.1, 2.0), boxes_from_masks=with_masks)
    ])
    sample = _sample(with_masks, with_seg)
    # the small square alone: large scales crop it away in some draws
    corner = copy.deepcopy(sample)
    for key in ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags',
                'gt_masks'):
        if key in corner:
            corner[key] = corner[key][1:]
    outcomes = []
    for seed in range(30):
        for results in (sample, corner):
            ours, ref = _run(lsj, results, seed), _run(steps, results, seed)
            _same(ours, ref)
            outcomes.append(len(ours['gt_bboxes_labels']) == 0)
            # every output lies on the padded canvas
            assert ours['img'].shape[:2] == SCALE
            assert ours['img_shape'] == SCALE
            if with_masks:
                assert ours['gt_masks'].masks.shape[1:] == SCALE
    # both outcomes are compared: crops that keep instances and crops that
    # leave none (still a training sample: all queries are no-object, as
    # official)
    assert any(outcomes) and not all(outcomes)


def test_boxes_follow_the_cropped_masks():
    lsj = TRANSFORMS.build(
        dict(type='LargeScaleJitter', scale=SCALE, ratio_range=(0.5, 0.5)))
    out = _run(lsj, _sample(), 0)
    for mask, box in zip(out['gt_masks'].masks, out['gt_bboxes'].tensor):
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(
            box.numpy(), [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    # half the 64 px fit: the image is resized to 24x32, which the crop
    # keeps whole, and padded with raw 128 (detectron2's FixedSizeCrop)
    assert out['img'].shape[:2] == SCALE
    assert (out['img'][24:] == 128).all() and (out['img'][:, 32:] == 128).all()
    assert (out['img'][:24, :32] != 128).any()
    assert not out['gt_masks'].masks[:, 24:].any()
