"""The real task configs read files in the exact formats of the public
datasets.

``make_dataset(..., fmt='real')`` writes the synthetic scenes as COCO, COCO
panoptic, ADE20K and Cityscapes write their files: the full category lists
(COCO ids with gaps, stuff ids up to 200), panoptic segment ids made from
category colours, ADE20K labels 1..150 with 0 = other, Cityscapes train ids
0..18 with 255 = ignore. Each real R50 config, with only its paths moved to
the generated root (no ``metainfo`` override: 80 / 133 / 150 / 19 classes),
must decode every sample exactly as the annotation files decoded here
independently (pycocotools, panopticapi, PIL), and score 100 AP / PQ / mIoU
with the ground truth fed back as predictions through its own evaluators.
"""
import json
import os.path as osp

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from data_helpers import (check_boxes_from_masks, config_with_data_at,
                          evaluate, generate_by_command, pred_instances,
                          pred_semantic)
from mmdet.datasets import ADE20KSegDataset, CocoDataset, CocoPanopticDataset
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.datasets import CityscapesDataset
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools.coco import COCO

from projects.mask_dino.testing import synthetic_dataset as gen

SIZE = (64, 80)  # (H, W), not square: a transposition would show
NUM_VAL = 8
# default data root of each real config -> folder of the generated root
CONFIG_ROOTS = {
    'data/coco/': 'coco/',
    'data/ade/ADEChallengeData2016/': 'ade/ADEChallengeData2016/',
    'data/cityscapes/': 'cityscapes/',
}
# The real classes the synthetic ones stand for, by name (the generator's
# table holds ids; the names come from the datasets' own class lists).
COCO_NAMES = ('sports ball', 'tv', 'kite', 'sky-other-merged', 'dirt-merged')
ADE_NAMES = ('ball', 'wall', 'flag', 'sky', 'earth')
CITYSCAPES_NAMES = ('traffic light', 'traffic sign', 'bicycle', 'sky', 'road')
# cityscapesscripts helpers/labels.py: label id -> train id (0 = unlabeled)
CITYSCAPES_TRAIN_ID = {0: 255, 7: 0, 19: 6, 20: 7, 23: 10, 33: 18}
COCO_ID_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}  # no such thing id


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> str:
    """Real-format files; seed 0 gives crowd regions, polygons, RLEs, every
    class and several instances of a class in one image."""
    out = str(tmp_path_factory.mktemp('real') / 'real')
    gen.make_dataset(
        out, num_train=2, num_val=NUM_VAL, size=SIZE, seed=0, fmt='real')
    return out


def real_config(name: str, root: str) -> Config:
    """A real task config with every default data path moved under
    ``root`` (data roots, dataloaders, evaluator files); nothing else
    changed."""
    cfg = config_with_data_at(
        name, {old: osp.join(root, new)
               for old, new in CONFIG_ROOTS.items()})
    assert root in cfg.val_dataloader.dataset.data_root
    return cfg


def _coco_paths(root: str, split: str = 'val') -> dict:
    ann = osp.join(root, 'coco', 'annotations')
    return dict(
        instances=osp.join(ann, f'instances_{split}2017.json'),
        panoptic=osp.join(ann, f'panoptic_{split}2017.json'),
        seg=osp.join(ann, f'panoptic_{split}2017'))


def _read(path: str) -> np.ndarray:
    return np.array(Image.open(path))


def _label_path(img_path: str) -> str:
    """ADE20K / Cityscapes label map of an image (standard layouts)."""
    if img_path.endswith('_leftImg8bit.png'):
        return img_path.replace('/leftImg8bit/', '/gtFine/').replace(
            '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
    return img_path.replace('/images/', '/annotations/')[:-4] + '.png'


def _predict_from_gt(dataset, num_things: int = 0) -> list:
    """One prediction per sample made from its ground truth (score 1):
    instances, the semantic map and, with ``num_things``, a panoptic map
    (stuff from the semantic map, one id per thing, VOID elsewhere)."""
    outputs = []
    for item in dataset:
        gt = item['data_samples']
        sample = DetDataSample(metainfo=gt.metainfo)
        sample.gt_instances = gt.gt_instances
        if 'masks' in gt.gt_instances:
            sample.pred_instances = pred_instances(gt.gt_instances)
        if 'gt_sem_seg' in gt:
            sample.gt_sem_seg = gt.gt_sem_seg
            sem = gt.gt_sem_seg.sem_seg[0].long()
            sample.pred_sem_seg = PixelData(sem_seg=pred_semantic(sem))
        if num_things:
            num_classes = len(dataset.metainfo['classes'])
            pan = torch.full_like(sem, num_classes)
            stuff = [int(c) for c in sem.unique() if num_things <= c < 255]
            for k, label in enumerate(stuff, 1):
                pan[sem == label] = label + k * INSTANCE_OFFSET
            things = sample.pred_instances
            for k, (label, mask) in enumerate(
                    zip(things.labels, things.masks),
                    len(stuff) + 1):
                pan[mask] = label + k * INSTANCE_OFFSET
            sample.pred_panoptic_seg = PixelData(sem_seg=pan[None])
        outputs.append(sample)
    return outputs


# ------------------------------------------------------------ the files
def test_category_tables_are_the_public_ones():
    """The generator's COCO table is COCO panoptic's (133 categories, 80
    things with ids 1..90 with gaps, 53 stuff with ids 92..200), and its
    ADE20K / Cityscapes values are the ones of the named classes."""
    ids = [c[0] for c in gen.COCO_CATEGORIES]
    names = tuple(c[1] for c in gen.COCO_CATEGORIES)
    assert names == CocoPanopticDataset.METAINFO['classes']
    assert names[:80] == CocoDataset.METAINFO['classes']
    assert ids[:80] == sorted(set(range(1, 91)) - COCO_ID_GAPS)
    assert ids == sorted(ids) and len(set(ids)) == 133
    assert all(92 <= i <= 200 for i in ids[80:])
    ade = ADE20KSegDataset.METAINFO['classes']
    city = CityscapesDataset.METAINFO['classes']
    for cls, coco, ade_name, city_name in zip(gen.ALL_CLASSES, COCO_NAMES,
                                              ADE_NAMES, CITYSCAPES_NAMES):
        real = gen.REAL_CLASSES[cls]
        assert real['coco'] == coco
        assert ade[real['ade20k'] - 1] == ade_name
        assert city[real['cityscapes']] == city_name
        assert CITYSCAPES_TRAIN_ID[gen.CITYSCAPES_LABEL_IDS[
            real['cityscapes']]] == real['cityscapes']


def test_real_files_decode_as_the_public_formats(root):
    paths = _coco_paths(root)
    coco = COCO(paths['instances'])
    cats = coco.loadCats(coco.getCatIds())
    assert [(c['id'], c['name'])
            for c in cats] == [(i, n) for i, n, _ in gen.COCO_CATEGORIES[:80]]
    anns = coco.loadAnns(coco.getAnnIds())
    assert [a['id'] for a in anns] == list(range(1, len(anns) + 1))
    assert {a['category_id'] for a in anns} == {37, 72, 38}  # things only
    crowd = [a for a in anns if a['iscrowd']]
    assert crowd and all(
        isinstance(a['segmentation']['counts'], list) for a in crowd)
    kinds = {type(a['segmentation']).__name__ for a in anns}
    assert kinds == {'list', 'dict'}  # polygons and RLEs

    with open(paths['panoptic']) as f:
        pan = json.load(f)
    isthing = {c['id']: c['isthing'] for c in pan['categories']}
    color = {c['id']: c['color'] for c in pan['categories']}
    assert len(isthing) == 133 and sum(isthing.values()) == 80
    seen = set()
    for ann in pan['annotations']:
        ids = rgb2id(_read(osp.join(paths['seg'], ann['file_name'])))
        assert ids.shape == SIZE
        segs = ann['segments_info']
        assert set(np.unique(ids)) == {s['id'] for s in segs} | {0}
        for s in segs:
            assert (ids == s['id']).sum() == s['area']
            if not isthing[s['category_id']]:  # stuff: the category colour
                assert s['id'] == rgb2id(np.array(color[s['category_id']]))
        per_class = [s['category_id'] for s in segs]
        seen |= {c for c in per_class if per_class.count(c) > 1}
    assert seen  # several instances of a class: jittered colours

    # ADE20K: 0 = other, the named classes' labels; Cityscapes: train ids
    # and 255, the labelIds maps agree through the official table
    ade_values, city_values = set(), set()
    for k in range(1, NUM_VAL + 1):
        ade_values |= set(
            np.unique(
                _read(
                    osp.join(root, 'ade', 'ADEChallengeData2016',
                             'annotations', 'validation',
                             f'ADE_val_{k:08d}.png'))).tolist())
        city = osp.join(root, 'cityscapes', 'gtFine', 'val', 'synth',
                        f'synth_000000_{k:06d}_gtFine_')
        train_ids = _read(city + 'labelTrainIds.png')
        label_ids = _read(city + 'labelIds.png')
        np.testing.assert_array_equal(
            np.vectorize(CITYSCAPES_TRAIN_ID.get)(label_ids), train_ids)
        city_values |= set(np.unique(train_ids).tolist())
    assert ade_values == {0, 120, 1, 150, 3, 14}
    assert city_values == {255, 6, 7, 18, 10, 0}


def test_real_format_holds_the_default_scenes(root, tmp_path):
    """Same seed, same pixels and regions: only names and values differ."""
    default = gen.make_dataset(
        str(tmp_path / 'default'),
        num_train=2,
        num_val=NUM_VAL,
        size=SIZE,
        seed=0)
    real = _coco_paths(root)
    with open(default['panoptic_val']) as f:
        default_pan = json.load(f)['annotations']
    with open(real['panoptic']) as f:
        real_pan = json.load(f)['annotations']
    to_real = {
        i: gen.category_id(c, 'real')
        for i, c in enumerate(gen.ALL_CLASSES, 1)
    }
    for a, b in zip(default_pan, real_pan):
        name = a['file_name'][:-4]
        with open(osp.join(default['coco_val_img'], name + '.jpg'), 'rb') as f:
            jpg = f.read()
        with open(osp.join(root, 'coco', 'val2017', name + '.jpg'), 'rb') as f:
            assert f.read() == jpg
        ids_a = rgb2id(
            _read(osp.join(default['panoptic_val_seg'], a['file_name'])))
        ids_b = rgb2id(_read(osp.join(real['seg'], b['file_name'])))
        for sa, sb in zip(a['segments_info'], b['segments_info']):
            assert to_real[sa['category_id']] == sb['category_id']
            np.testing.assert_array_equal(ids_a == sa['id'], ids_b == sb['id'])


def test_validation_knows_the_format(root):
    assert gen.validate_dataset(root)['val']['images'] == NUM_VAL
    with pytest.raises(
            gen.DatasetError, match='instances_train2017.json.*synthetic'):
        gen.validate_dataset(root, 'synthetic')


@pytest.mark.integration  # subprocess
def test_command_line_and_arguments(tmp_path):
    out = str(tmp_path / 'cli')
    stdout, marker = generate_by_command(out, '--num-train', '1',
                                         '--num-val', '1', '--size', '64',
                                         '64', '--format', 'real')
    assert '(real format)' in stdout
    assert marker['format'] == 'real'
    assert marker['real_classes']['sky']['coco'] == 'sky-other-merged'
    assert osp.isfile(
        osp.join(out, 'ade', 'ADEChallengeData2016', 'images', 'validation',
                 'ADE_val_00000001.jpg'))
    with pytest.raises(ValueError, match='fmt must be one of'):
        gen.make_dataset(str(tmp_path / 'bad'), fmt='coco')
    assert not osp.exists(tmp_path / 'bad')


# ----------------------------------------------------------- the configs
def test_instance_config(root):
    """Labels are the contiguous indices of the 80 COCO categories (id 37
    -> 32, 72 -> 62, 38 -> 33), crowd regions are ignored instances, and
    the ground truth scores 100 box and mask AP."""
    cfg = real_config('maskdino_r50_coco_instance.py', root)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(dataset.metainfo['classes']) == 80 and len(dataset) == NUM_VAL
    coco = COCO(_coco_paths(root)['instances'])
    cat_ids = sorted(coco.getCatIds())
    seen = set()
    for item in dataset:
        sample = item['data_samples']
        assert sample.ori_shape == SIZE
        anns = coco.loadAnns(coco.getAnnIds(imgIds=sample.img_id))
        plain = [a for a in anns if not a['iscrowd']]
        crowd = [a for a in anns if a['iscrowd']]
        gt = sample.gt_instances
        labels = [cat_ids.index(a['category_id']) for a in plain]
        assert gt.labels.tolist() == labels
        seen |= set(labels)
        for ann, mask in zip(plain, gt.masks.masks):
            np.testing.assert_array_equal(mask, coco.annToMask(ann))
        check_boxes_from_masks(gt)
        ignored = sample.ignored_instances
        assert ignored.labels.tolist() == [
            cat_ids.index(a['category_id']) for a in crowd
        ]
        np.testing.assert_allclose(
            ignored.bboxes.numpy().reshape(-1, 4),
            np.array([[x, y, x + w, y + h]
                      for x, y, w, h in (a['bbox']
                                         for a in crowd)]).reshape(-1, 4))
    assert seen == {32, 62, 33}
    # the training set parses the same way (labels, crowd flags)
    train = DATASETS.build(dict(cfg.train_dataloader.dataset, pipeline=[]))
    train_coco = COCO(_coco_paths(root, 'train')['instances'])
    assert len(train) == 2
    for index in range(len(train)):
        info = train.get_data_info(index)
        anns = train_coco.loadAnns(train_coco.getAnnIds(imgIds=info['img_id']))
        assert [
            (i['bbox_label'], i['ignore_flag']) for i in info['instances']
        ] == [(cat_ids.index(a['category_id']), a['iscrowd']) for a in anns]

    metrics = evaluate(cfg, dataset, _predict_from_gt(dataset))
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_75'):
        assert metrics[f'coco/{key}'] == 1.0, key


def _expected_panoptic(paths: dict, img_id: int, label_of: dict):
    """Semantic map (VOID 255, crowd pixels keep their class), non-crowd
    thing labels and masks, from the panoptic json and PNG."""
    with open(paths['panoptic']) as f:
        pan = json.load(f)
    isthing = {c['id']: c['isthing'] for c in pan['categories']}
    ann = next(a for a in pan['annotations'] if a['image_id'] == img_id)
    ids = rgb2id(_read(osp.join(paths['seg'], ann['file_name'])))
    sem = np.full(ids.shape, 255, np.int64)
    labels, masks = [], []
    for seg in ann['segments_info']:
        label = label_of[seg['category_id']]
        sem[ids == seg['id']] = label
        if isthing[seg['category_id']] and not seg['iscrowd']:
            labels.append(label)
            masks.append(ids == seg['id'])
    return sem, labels, masks


def test_panoptic_config(root):
    """133 classes: thing labels as in the instance config, stuff labels
    80 + the stuff index (sky-other-merged 187 -> 119, dirt-merged 194 ->
    126); 100 PQ, 100 box / mask AP on the instance json, 100 mIoU."""
    cfg = real_config('maskdino_r50_coco_panoptic.py', root)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(dataset.metainfo['classes']) == 133
    paths = _coco_paths(root)
    with open(paths['panoptic']) as f:
        cat_ids = sorted(c['id'] for c in json.load(f)['categories'])
    label_of = {cat_id: i for i, cat_id in enumerate(cat_ids)}
    assert (label_of[187], label_of[194], label_of[72]) == (119, 126, 62)
    seen, crowd_pixels = set(), 0
    for item in dataset:
        sample = item['data_samples']
        sem, labels, masks = _expected_panoptic(paths, sample.img_id, label_of)
        got = sample.gt_sem_seg.sem_seg[0].numpy()
        np.testing.assert_array_equal(got, sem)
        assert (got == 255).any()
        seen |= set(np.unique(sem).tolist())
        gt = sample.gt_instances
        assert gt.labels.tolist() == labels
        for mask, expected in zip(gt.masks.masks, masks):
            np.testing.assert_array_equal(mask, expected)
        check_boxes_from_masks(gt)
        # crowd regions: in the semantic map, not instances
        crowd_pixels += int(
            np.isin(sem, [32, 62, 33]).sum() -
            sum(int(m.sum()) for m in masks))
    assert seen == {32, 62, 33, 119, 126, 255}
    assert crowd_pixels > 0
    # the training set parses the same way (labels, thing / crowd flags)
    with open(_coco_paths(root, 'train')['panoptic']) as f:
        train_pan = {a['image_id']: a for a in json.load(f)['annotations']}
    train = DATASETS.build(dict(cfg.train_dataloader.dataset, pipeline=[]))
    assert len(train) == 2
    for index in range(len(train)):
        info = train.get_data_info(index)
        segs = train_pan[info['img_id']]['segments_info']
        assert [
            (s['category'], bool(s['is_thing'])) for s in info['segments_info']
        ] == [(label_of[s['category_id']], label_of[s['category_id']] < 80
               and not s['iscrowd']) for s in segs]

    metrics = evaluate(cfg, dataset, _predict_from_gt(dataset, 80))
    for key in ('PQ', 'SQ', 'RQ', 'PQ_th', 'PQ_st'):
        assert metrics[f'coco_panoptic/{key}'] == pytest.approx(100), key
    assert metrics['coco/bbox_mAP'] == metrics['coco/segm_mAP'] == 1.0
    assert metrics['mIoU'] == 100.0


@pytest.mark.parametrize(
    'name',
    ['maskdino_r50_ade20k_semantic.py', 'maskdino_r50_cityscapes_semantic.py'])
def test_semantic_config(root, name):
    """ADE20K: 0 (other) -> 255, k -> k - 1 (labels 0 and 149 kept);
    Cityscapes: the labelTrainIds map as it is (train id 0 = road kept),
    not the labelIds map beside it; 100 mIoU."""
    cfg = real_config(name, root)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    ade = 'ade20k' in name
    assert len(dataset) == NUM_VAL
    assert len(dataset.metainfo['classes']) == (150 if ade else 19)
    seen = set()
    for item in dataset:
        sample = item['data_samples']
        assert sample.ori_shape == SIZE
        raw = _read(_label_path(sample.img_path)).astype(np.int64)
        expected = np.where(raw == 0, 255, raw - 1) if ade else raw
        got = sample.gt_sem_seg.sem_seg[0].numpy()
        np.testing.assert_array_equal(got, expected)
        assert (got == 255).any()
        seen |= set(np.unique(got).tolist())
    assert seen == ({119, 0, 149, 2, 13, 255}
                    if ade else {6, 7, 18, 10, 0, 255})

    metrics = evaluate(cfg, dataset, _predict_from_gt(dataset))
    assert metrics['mIoU'] == 100.0


# ------------------------------------------------------------ pitfalls
def _detection_json(root: str, out: str, things_only: bool,
                    first_id: int) -> str:
    """An instance json made from the panoptic one as panopticapi's
    converters/panoptic2detection_coco_format.py makes it (one compressed
    RLE per segment, ids from 0), optionally renumbered from 1."""
    paths = _coco_paths(root)
    with open(paths['panoptic']) as f:
        pan = json.load(f)
    isthing = {c['id']: c['isthing'] for c in pan['categories']}
    anns = []
    for ann in pan['annotations']:
        ids = rgb2id(_read(osp.join(paths['seg'], ann['file_name'])))
        for seg in ann['segments_info']:
            if things_only and not isthing[seg['category_id']]:
                continue
            rle = mask_utils.encode(
                np.asfortranarray((ids == seg['id']).astype(np.uint8)))
            rle['counts'] = rle['counts'].decode()
            anns.append(
                dict({
                    k: v
                    for k, v in seg.items() if k != 'id'
                },
                     id=first_id + len(anns),
                     image_id=ann['image_id'],
                     segmentation=rle))
    cats = [
        dict(id=c['id'], name=c['name']) for c in pan['categories']
        if c['isthing'] or not things_only
    ]
    with open(out, 'w') as f:  # info: pycocotools' loadRes needs it
        json.dump(
            dict(
                info=pan['info'],
                images=pan['images'],
                annotations=anns,
                categories=cats), f)
    return out


@pytest.mark.parametrize(
    'things_only, first_id, expected',
    [
        (True, 1, 1.0),  # what the panoptic config needs
        (False, 1, 0.6),  # stuff classes count, with AP 0: (3 * 1 + 2 * 0) / 5
        (True, 0, None),  # the match with gt id 0 is a false positive
    ])
def test_instance_json_of_a_panoptic_dataset(root, tmp_path, things_only,
                                             first_id, expected):
    """Box AP of the ground truth through the panoptic config's CocoMetric
    with instance jsons converted from the panoptic annotations: only the
    things-only json with ids from 1 gives 100."""
    cfg = real_config('maskdino_r50_coco_panoptic.py', root)
    cfg.val_evaluator = [
        dict(
            cfg.val_evaluator[1],
            metric=['bbox'],
            ann_file=_detection_json(root, str(tmp_path / 'det.json'),
                                     things_only, first_id))
    ]
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    ap = evaluate(cfg, dataset, _predict_from_gt(dataset))['coco/bbox_mAP']
    if expected is None:
        assert 0.5 < ap < 1.0
    else:
        assert ap == expected


def _instance_labels(root: str, ann_file: str) -> tuple:
    """(labels present, instance count) of the instance config's val set
    read through ``ann_file``."""
    cfg = real_config('maskdino_r50_coco_instance.py', root)
    dataset = DATASETS.build(
        dict(cfg.val_dataloader.dataset, ann_file=ann_file))
    labels = [
        int(label) for item in dataset
        for label in item['data_samples'].gt_instances.labels
    ]
    return set(labels), len(labels)


def test_category_list_decides_the_labels(root, tmp_path):
    """Labels are positions among the json's categories that carry class
    names: a json that lists only the categories it uses gives labels 0..2
    instead of the 80-class model's 32, 62, 33 (no error); an extra
    category with id 0 and another name is dropped with its annotations."""
    with open(_coco_paths(root)['instances']) as f:
        full = json.load(f)
    labels, num = _instance_labels(root, _coco_paths(root)['instances'])
    assert labels == {32, 62, 33}
    used = {a['category_id'] for a in full['annotations']}
    partial = dict(
        full, categories=[c for c in full['categories'] if c['id'] in used])
    with open(tmp_path / 'partial.json', 'w') as f:
        json.dump(partial, f)
    assert _instance_labels(root,
                            str(tmp_path / 'partial.json')) == ({0, 1, 2}, num)
    extra = dict(
        full,
        categories=[dict(id=0, name='background')] + full['categories'],
        annotations=full['annotations'] +
        [dict(full['annotations'][0], id=10**6, category_id=0)])
    with open(tmp_path / 'extra.json', 'w') as f:
        json.dump(extra, f)
    assert _instance_labels(root,
                            str(tmp_path / 'extra.json')) == ({32, 62,
                                                               33}, num)
