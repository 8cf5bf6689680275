"""SemSegRandomCrop: one window for the image and its label map, the
category-area constraint, and clear errors."""
import numpy as np
import pytest
from mmdet.registry import TRANSFORMS
from mmengine.registry import init_default_scope

import projects.mask_dino  # noqa: F401


def _coords_image(h, w):
    """Image whose pixel (y, x) holds (y, x, 7): crops reveal their
    offset."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy, xx, np.full_like(yy, 7)], -1).astype(np.int32)


def _build(**kwargs):
    init_default_scope('mmdet')
    return TRANSFORMS.build(dict(type='SemSegRandomCrop', **kwargs))


@pytest.mark.parametrize(
    'img_hw,crop_hw,out_hw',
    [
        ((40, 60), (16, 24), (16, 24)),
        ((10, 60), (16, 24), (10, 24)),  # clipped to the image
    ])
def test_crops_image_and_map_with_one_window(img_hw, crop_hw, out_hw):
    np.random.seed(0)
    crop = _build(crop_size=crop_hw)
    h, w = img_hw
    img = _coords_image(h, w)
    seg = (np.arange(h * w).reshape(h, w) % 251).astype(np.uint8)
    offsets = set()
    for _ in range(20):
        results = crop.transform(
            dict(img=img.copy(), gt_seg_map=seg.copy(), img_shape=(h, w)))
        out = results['img']
        assert out.shape[:2] == out_hw
        assert results['img_shape'] == out_hw
        oy, ox = int(out[0, 0, 0]), int(out[0, 0, 1])
        np.testing.assert_array_equal(
            out, img[oy:oy + out_hw[0], ox:ox + out_hw[1]])
        np.testing.assert_array_equal(
            results['gt_seg_map'], seg[oy:oy + out_hw[0], ox:ox + out_hw[1]])
        offsets.add((oy, ox))
    assert len(offsets) > 1  # random windows


def _class_share_ok(seg, ratio, ignore=255):
    labels, counts = np.unique(seg, return_counts=True)
    counts = counts[labels != ignore]
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def test_category_area_constraint():
    """Left half class 0, right half class 1; a 8x20 window of the 8x40
    map is acceptable for ratio 0.75 iff it starts at x = 6..14 (9 of the 21
    windows). Plain crops hit it ~43% of the time; with up to 10 redraws
    the constrained crop should almost always (1 - (12/21)^10 = 99.6%)."""
    seg = np.zeros((8, 40), np.uint8)
    seg[:, 20:] = 1
    img = _coords_image(8, 40)

    def hit_rate(ratio, trials=200):
        np.random.seed(1)
        crop = _build(crop_size=(8, 20), cat_max_ratio=ratio)
        hits = 0
        for _ in range(trials):
            out = crop.transform(dict(img=img.copy(), gt_seg_map=seg.copy()))
            ox = int(out['img'][0, 0, 1])
            ok = _class_share_ok(out['gt_seg_map'], 0.75)
            assert ok == (6 <= ox <= 14)  # brute-force rule
            hits += ok
        return hits / trials

    plain, constrained = hit_rate(1.0), hit_rate(0.75)
    assert 0.3 < plain < 0.56
    assert constrained > 0.95


def test_ignore_label_not_counted():
    """Class 0 in columns 0-9, ignore (255) elsewhere, 4x12 windows (offset
    0..18). Counting 255 as a class would accept the windows at x = 2..6
    (0 and 255 shares both in (0.25, 0.75)) and pick them almost always;
    with 255 excluded no window has two classes, so the crop is the plain
    11th draw and lands there 5/19 = 26% of the time."""
    seg = np.full((4, 30), 255, np.uint8)
    seg[:, :10] = 0
    img = _coords_image(4, 30)
    np.random.seed(2)
    crop = _build(crop_size=(4, 12), cat_max_ratio=0.75, ignore_index=255)
    trials = 200
    balanced = 0
    for _ in range(trials):
        out = crop.transform(dict(img=img.copy(), gt_seg_map=seg.copy()))
        balanced += 2 <= int(out['img'][0, 0, 1]) <= 6
    assert 0.15 < balanced / trials < 0.4
    # counterpart: the same map with the middle labelled as class 1 is
    # constrained to those windows
    seg[:, 10:] = 1
    np.random.seed(2)
    balanced = sum(2 <= int(
        crop.transform(dict(img=img.copy(), gt_seg_map=seg.copy()))['img'][
            0, 0, 1]) <= 6 for _ in range(trials))
    assert balanced / trials > 0.9


def test_errors_name_the_problem():
    crop = _build(crop_size=(4, 4), cat_max_ratio=0.5)
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(KeyError, match='gt_seg_map'):
        crop.transform(dict(img=img, img_path='a.jpg'))
    with pytest.raises(ValueError, match=r"a\.jpg.*gt_bboxes"):
        crop.transform(
            dict(
                img=img,
                img_path='a.jpg',
                gt_seg_map=np.zeros((8, 8), np.uint8),
                gt_bboxes=np.zeros((0, 4))))
