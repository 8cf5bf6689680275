"""Metric sanity on generated data, through the tiny configs' evaluators.

The ground truth submitted as predictions must score 100 box AP, 100 mask
AP, 100 PQ and 100 mIoU. A known corruption lowers each by the amount a
hand computation from the generated files gives:

- class ``square`` is relabelled ``triangle`` (instance scores 0.5, below
  every correct one);
- one segment is dropped: the first non-crowd ``disc`` of the first image
  that has one (void in the panoptic prediction, absent from the instances,
  predicted ``ground`` in the semantic map).

Hand formulas, with ``n_c`` the non-crowd instances / segments of class c,
``A_c`` its pixels and ``d`` the pixels of the dropped disc:

- AP (COCO, 101 recall thresholds, every IoU is 1): disc reaches recall
  ``(n-1)/n`` at precision 1, so AP = #{thresholds <= (n-1)/n} / 101;
  square has no detection (AP 0); triangle's false positives rank last
  (AP 1).
- PQ = mean over classes of TP / (TP + FP/2 + FN/2) (every IoU is 1):
  disc (n-1)/(n-1/2), square 0 (all FN), triangle n_t/(n_t + n_s/2),
  sky and ground 1.
- mIoU = mean over classes of I/U: disc (A_d - d)/A_d, square 0,
  triangle A_t/(A_t + A_s), sky 1, ground A_g/(A_g + d).
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from data_helpers import (DISC, GROUND, SKY, SQUARE, TRIANGLE, evaluate,
                          pred_instances, pred_semantic, synthetic_config)
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData
from panopticapi.utils import rgb2id
from PIL import Image

from projects.mask_dino.testing import synthetic_dataset as gen

NUM_CLASSES = 5
COCO_RECALL_THRESHOLDS = np.linspace(.0, 1.00, 101)


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp('synth') / 'synthetic')
    gen.make_dataset(out, num_train=1, num_val=12, seed=11)
    return out


# ------------------------------------------------------ raw ground truth
def _load_json(root: str, name: str) -> dict:
    with open(osp.join(root, 'coco', 'annotations', name)) as f:
        return json.load(f)


def _dropped_disc(root: str):
    """(image id, segment) of the first non-crowd disc, in image order."""
    pan = _load_json(root, 'panoptic_val2017.json')
    for ann in sorted(pan['annotations'], key=lambda a: a['image_id']):
        for seg in ann['segments_info']:
            if seg['category_id'] == DISC + 1 and not seg['iscrowd']:
                return ann, seg
    raise AssertionError('no disc in the validation set')


def _dropped_mask(root: str) -> tuple:
    ann, seg = _dropped_disc(root)
    png = osp.join(root, 'coco', 'annotations', 'panoptic_val2017',
                   ann['file_name'])
    return ann['image_id'], rgb2id(np.array(Image.open(png))) == seg['id']


def _instance_counts(root: str) -> np.ndarray:
    """Non-crowd instances per thing class (instance json)."""
    counts = np.zeros(NUM_CLASSES, np.int64)
    for ann in _load_json(root, 'instances_val2017.json')['annotations']:
        if not ann['iscrowd']:
            counts[ann['category_id'] - 1] += 1
    return counts


def _panoptic_counts(root: str) -> np.ndarray:
    """Non-crowd segments per class (panoptic json)."""
    counts = np.zeros(NUM_CLASSES, np.int64)
    for ann in _load_json(root, 'panoptic_val2017.json')['annotations']:
        for seg in ann['segments_info']:
            counts[seg['category_id'] - 1] += 1 - seg['iscrowd']
    return counts


def _pixel_counts_panoptic(root: str) -> np.ndarray:
    """Pixels per class (crowd included) of the panoptic ground truth."""
    area = np.zeros(NUM_CLASSES, np.int64)
    for ann in _load_json(root, 'panoptic_val2017.json')['annotations']:
        for seg in ann['segments_info']:
            area[seg['category_id'] - 1] += seg['area']
    return area


def _ade_maps(root: str) -> list:
    """(name, uint8 map) of the ADE validation annotations, sorted."""
    folder = osp.join(root, 'ade', 'ADEChallengeData2016', 'annotations',
                      'validation')
    names = sorted(n for n in os.listdir(folder) if n.endswith('.png'))
    return [(osp.splitext(n)[0], np.array(Image.open(osp.join(folder, n))))
            for n in names]


# ----------------------------------------------------- hand computations
def hand_ap(n: np.ndarray) -> float:
    """COCO mAP of the corrupted instances (same at every IoU threshold)."""
    disc = np.sum(COCO_RECALL_THRESHOLDS <= (n[DISC] - 1) / n[DISC]) / 101
    return (disc + 0.0 + 1.0) / 3


def hand_pq(n: np.ndarray) -> dict:
    per_class = [
        (n[DISC] - 1) / (n[DISC] - 1 + 0.5),
        0.0,
        n[TRIANGLE] / (n[TRIANGLE] + 0.5 * n[SQUARE]),
        1.0,
        1.0,
    ]
    return dict(
        PQ=100 * np.mean(per_class),
        PQ_th=100 * np.mean(per_class[:3]),
        PQ_st=100 * np.mean(per_class[3:]))


def hand_miou(area: np.ndarray, dropped: int) -> float:
    iou = [
        (area[DISC] - dropped) / area[DISC],
        0.0,
        area[TRIANGLE] / (area[TRIANGLE] + area[SQUARE]),
        1.0,
        area[GROUND] / (area[GROUND] + dropped),
    ]
    return 100 * np.mean(iou)


# ----------------------------------------------------------- predictions
def _pred_panoptic(sem: torch.Tensor, things: InstanceData) -> torch.Tensor:
    """A panoptic map: stuff from the semantic map, each thing its own id,
    everything else (void, crowd) VOID."""
    pan = torch.full_like(sem, NUM_CLASSES)
    for k, label in enumerate((SKY, GROUND)):
        pan[sem == label] = label + (k + 1) * INSTANCE_OFFSET
    for k, (label, mask) in enumerate(zip(things.labels, things.masks)):
        pan[mask] = label + (k + 3) * INSTANCE_OFFSET
    return pan[None]


def predictions(dataset, corrupt: bool, drop=None) -> list:
    """One predicted DetDataSample per validation image, from its GT."""
    outputs = []
    for item in dataset:
        gt_sample = item['data_samples']
        assert gt_sample.img_shape == gt_sample.ori_shape
        sample = DetDataSample(metainfo=gt_sample.metainfo)
        for key in ('gt_instances', 'gt_sem_seg'):
            if key in gt_sample:
                sample.set_field(gt_sample.get(key), key)
        mine = drop is not None and gt_sample.get('img_id') == drop[0]
        if 'masks' in gt_sample.gt_instances:  # not on semantic data
            sample.pred_instances = pred_instances(
                gt_sample.gt_instances, corrupt, drop[1] if mine else None)
        if 'gt_sem_seg' in gt_sample:
            sem = gt_sample.gt_sem_seg.sem_seg[0].long()
            region = torch.from_numpy(drop[1]) if mine else None
            sample.pred_sem_seg = PixelData(
                sem_seg=pred_semantic(sem, corrupt, region))
            if 'pred_instances' in sample:
                sample.pred_panoptic_seg = PixelData(
                    sem_seg=_pred_panoptic(sem, sample.pred_instances))
        outputs.append(sample)
    return outputs


# ------------------------------------------------------------------ tests
def test_instance_metrics(root):
    cfg = synthetic_config('instance', root)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    perfect = evaluate(cfg, dataset, predictions(dataset, corrupt=False))
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_75'):
        assert perfect[f'coco/{key}'] == 1.0, key

    drop = _dropped_mask(root)
    n = _instance_counts(root)
    assert n[DISC] >= 2 and n[SQUARE] >= 1 and n[TRIANGLE] >= 1
    corrupted = evaluate(cfg, dataset,
                         predictions(dataset, corrupt=True, drop=drop))
    expected = round(hand_ap(n), 3)
    assert expected < 0.7
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP',
                'segm_mAP_50', 'segm_mAP_75'):
        assert corrupted[f'coco/{key}'] == expected, key


def test_panoptic_metrics(root):
    """PQ, instance AP (things only) and mIoU of a panoptic model."""
    cfg = synthetic_config('panoptic', root)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    perfect = evaluate(cfg, dataset, predictions(dataset, corrupt=False))
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert perfect[f'coco_panoptic/{key}'] == pytest.approx(100), key
    assert perfect['coco/bbox_mAP'] == perfect['coco/segm_mAP'] == 1.0
    assert perfect['mIoU'] == 100.0

    drop = _dropped_mask(root)
    corrupted = evaluate(cfg, dataset,
                         predictions(dataset, corrupt=True, drop=drop))
    pq = hand_pq(_panoptic_counts(root))
    for key, value in pq.items():
        assert corrupted[f'coco_panoptic/{key}'] == pytest.approx(
            value, abs=1e-9), key
    assert pq['PQ'] < 80
    assert corrupted['coco/bbox_mAP'] == corrupted['coco/segm_mAP'] == \
        round(hand_ap(_instance_counts(root)), 3)
    miou = hand_miou(_pixel_counts_panoptic(root), int(drop[1].sum()))
    # SemSegMetric reports percentages rounded to 2 decimals
    assert abs(corrupted['mIoU'] - miou) <= 0.005 + 1e-6
    assert miou < 80


def test_semantic_metrics(root):
    cfg = synthetic_config('semantic', root)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    assert evaluate(cfg, dataset, predictions(dataset,
                                              corrupt=False))['mIoU'] == 100.0

    # drop the disc pixels of the first image (by name) that has any
    maps = _ade_maps(root)
    area = np.zeros(NUM_CLASSES, np.int64)
    for _, ade in maps:
        area += np.bincount(ade.reshape(-1), minlength=6)[1:]
    name, ade = next((n, a) for n, a in maps if (a == DISC + 1).any())
    region = ade == DISC + 1

    samples = predictions(dataset, corrupt=True)
    hit = [
        s for s in samples if osp.splitext(osp.basename(s.img_path))[0] == name
    ]
    assert len(hit) == 1
    pred = hit[0].pred_sem_seg.sem_seg
    pred[0][torch.from_numpy(region)] = GROUND
    miou = hand_miou(area, int(region.sum()))
    assert abs(evaluate(cfg, dataset, samples)['mIoU'] - miou) <= 0.005 + 1e-6
    assert miou < 80
