"""The project's metrics: pixel accuracy of the semantic metric, the compact
result dump, and a panoptic metric that leaves the predictions alone."""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from conftest import REPO
from mmdet.evaluation import SemSegMetric
from mmdet.structures.mask import encode_mask_results
from mmengine.config import Config
from mmdet.registry import METRICS

from projects.mask_dino.evaluation import (DumpMaskDINOResults,
                                           MaskDINOSemSegMetric)


def sem_sample(pred: np.ndarray, gt: np.ndarray) -> dict:
    return dict(
        pred_sem_seg=dict(sem_seg=torch.from_numpy(pred)[None]),
        gt_sem_seg=dict(sem_seg=torch.from_numpy(gt)[None]))


def run_metric(metric, samples, classes):
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_semseg_aacc_is_pixel_accuracy():
    # class 0 covers 90 labelled pixels, all right; class 1 covers 10, of
    # which 5 are right; 4 pixels are ignored (255)
    gt = np.zeros((8, 13), np.int64)
    gt.flat[90:100] = 1
    gt.flat[100:] = 255
    pred = gt.copy()
    pred.flat[90:95] = 0
    pred.flat[100:] = 1  # ignored pixels do not count
    samples = [sem_sample(pred, gt)]
    ours = run_metric(MaskDINOSemSegMetric(), samples, ('a', 'b'))
    assert ours['aAcc'] == pytest.approx(95.0)  # 95 of 100 labelled pixels
    assert ours['mAcc'] == pytest.approx(75.0)  # (100 + 50) / 2
    # mIoU: a = 90 / 95, b = 5 / 10
    assert ours['mIoU'] == pytest.approx(
        np.round(100 * (90 / 95 + 0.5) / 2, 2))
    # mmdet's figure is the mean class accuracy under the name aAcc
    theirs = run_metric(SemSegMetric(), samples, ('a', 'b'))
    assert theirs['aAcc'] == pytest.approx(75.0)
    assert {k: v for k, v in theirs.items() if k != 'aAcc'} == \
        {k: v for k, v in ours.items() if k != 'aAcc'}


def test_semseg_aacc_sums_over_images():
    gt1, gt2 = np.zeros((4, 5), np.int64), np.ones((2, 3), np.int64)
    pred1, pred2 = gt1.copy(), np.zeros((2, 3), np.int64)
    pred1[0, :2] = 1  # 18 of 20 right; image 2: 0 of 6 right
    metrics = run_metric(MaskDINOSemSegMetric(),
                         [sem_sample(pred1, gt1),
                          sem_sample(pred2, gt2)], ('a', 'b'))
    assert metrics['aAcc'] == pytest.approx(np.round(100 * 18 / 26, 2))


def prediction_sample(h=30, w=40, num_classes=133, seed=0) -> dict:
    """One evaluator sample (dict form) with every prediction field."""
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(4, h, w, generator=gen) > 0.5
    pan = torch.full((1, h, w), num_classes, dtype=torch.int64)
    pan[0, :10] = 3 + 1000 * 2  # a thing, instance 2
    pan[0, 20:] = 90  # a stuff class
    return dict(
        img_id=7,
        img_path='x/000007.jpg',
        pred_instances=dict(
            bboxes=torch.rand(4, 4, generator=gen),
            labels=torch.arange(4),
            scores=torch.rand(4, generator=gen),
            masks=masks),
        pred_panoptic_seg=dict(sem_seg=pan),
        pred_sem_seg=dict(
            sem_seg=torch.randint(0, num_classes, (1, h, w), generator=gen)),
        seg_logits=dict(data=torch.rand(num_classes, h, w, generator=gen)),
        gt_sem_seg=dict(
            sem_seg=torch.randint(0, 256, (1, h, w), generator=gen)),
        gt_instances=dict(labels=torch.arange(2)))


def test_dump_is_compact_and_leaves_samples_alone(tmp_path):
    sample = prediction_sample()
    before = {
        k: v.clone()
        for k, v in (('pan', sample['pred_panoptic_seg']['sem_seg']),
                     ('masks', sample['pred_instances']['masks']))
    }
    out = tmp_path / 'preds.pkl'
    dump = DumpMaskDINOResults(str(out))
    dump.process({}, [sample])
    dump.compute_metrics(dump.results)
    with open(out, 'rb') as f:
        (saved, ) = pickle.load(f)

    assert 'seg_logits' not in saved and 'gt_instances' not in saved
    pan = saved['pred_panoptic_seg']['sem_seg']
    assert pan.dtype == torch.int16  # largest value 2003
    assert torch.equal(pan.long(), before['pan'])
    sem = saved['pred_sem_seg']['sem_seg']
    assert sem.dtype == torch.uint8
    assert torch.equal(sem.long(), sample['pred_sem_seg']['sem_seg'])
    assert saved['gt_sem_seg']['sem_seg'].dtype == torch.uint8
    assert saved['pred_instances']['masks'] == encode_mask_results(
        before['masks'].numpy())
    # the evaluator's sample still holds the model's tensors
    assert sample['pred_instances']['masks'].dtype == torch.bool
    assert sample['pred_panoptic_seg']['sem_seg'].dtype == torch.int64
    assert 'seg_logits' in sample and 'gt_instances' in sample
    # far smaller than the float score maps alone
    assert out.stat().st_size < 0.1 * sample['seg_logits']['data'].nbytes


def test_dump_keeps_score_maps_on_request(tmp_path):
    sample = prediction_sample(num_classes=300)
    dump = DumpMaskDINOResults(str(tmp_path / 'p.pkl'), keep_seg_logits=True)
    dump.process({}, [sample])
    (saved, ) = dump.results
    assert torch.equal(saved['seg_logits']['data'],
                       sample['seg_logits']['data'])
    assert saved['pred_sem_seg']['sem_seg'].dtype == torch.int16  # > 255


@pytest.mark.parametrize('config,types', [
    ('maskdino_r50_coco_panoptic.py',
     ['MaskDINOCocoPanopticMetric', 'CocoMetric', 'MaskDINOSemSegMetric']),
    ('maskdino_r50_ade20k_semantic.py', ['MaskDINOSemSegMetric']),
    ('maskdino_r50_cityscapes_semantic.py', ['MaskDINOSemSegMetric']),
    ('maskdino_tiny_synthetic_panoptic.py',
     ['MaskDINOCocoPanopticMetric', 'CocoMetric', 'MaskDINOSemSegMetric']),
    ('maskdino_tiny_synthetic_semantic.py', ['MaskDINOSemSegMetric']),
])
def test_configs_use_the_fixed_metrics(config, types):
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg[key]
        evaluator = evaluator if isinstance(evaluator, list) else [evaluator]
        assert [m['type'] for m in evaluator] == types
        for metric in evaluator:
            assert METRICS.get(metric['type']) is not None
