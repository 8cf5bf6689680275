"""The synthetic dataset generator and the tiny synthetic configs.

The generator must be deterministic for a seed and write self-consistent
files in the real formats (checked here with pycocotools and panopticapi,
independently of its own validation); each tiny config, pointed at a
generated dataset, must yield correct ``DetDataSample``s for training and
validation.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, TINY_CONFIGS
from data_helpers import (SYNTHETIC_ROOT, check_boxes_from_masks,
                          generate_by_command, run_generator,
                          synthetic_config, tight_box)
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.runner import Runner
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools.coco import COCO

from projects.mask_dino.testing import synthetic_dataset as gen

SIZE = 128  # the tiny configs' image size: no resize at test time
NUM_THINGS = len(gen.THING_CLASSES)


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> str:
    """A generated dataset at the configs' size (enough images that every
    annotation kind occurs)."""
    out = str(tmp_path_factory.mktemp('synth') / 'synthetic')
    gen.make_dataset(out, num_train=16, num_val=12, size=(SIZE, SIZE), seed=3)
    return out


def _tree(root: str) -> dict:
    """Relative path -> bytes of every file under ``root``."""
    files = {}
    for d, _, names in os.walk(root):
        for name in names:
            path = osp.join(d, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, root)] = f.read()
    return files


def _pan_ids(root: str, split: str, name: str) -> np.ndarray:
    png = osp.join(root, 'coco', 'annotations', f'panoptic_{split}2017',
                   name + '.png')
    return rgb2id(np.array(Image.open(png).convert('RGB')))


def _ade(root: str, split: str, name: str) -> np.ndarray:
    folder = dict(train='training', val='validation')[split]
    return np.array(
        Image.open(
            osp.join(root, 'ade', 'ADEChallengeData2016', 'annotations',
                     folder, name + '.png')))


# ------------------------------------------------------------- generator
def test_deterministic_for_a_seed(tmp_path):
    kwargs = dict(num_train=3, num_val=2, size=(80, 112))
    a = gen.make_dataset(str(tmp_path / 'a'), seed=1, **kwargs)['root']
    b = gen.make_dataset(str(tmp_path / 'b'), seed=1, **kwargs)['root']
    c = gen.make_dataset(str(tmp_path / 'c'), seed=2, **kwargs)['root']
    files_a, files_b, files_c = _tree(a), _tree(b), _tree(c)
    # 6 files per image (3 images, 3 label maps), 4 jsons and the marker
    assert len(files_a) == 6 * (3 + 2) + 5
    assert files_a == files_b
    images = [k for k in files_a if k.endswith('.jpg')]
    assert images and all(files_a[k] != files_c[k] for k in images)
    # (H, W) = (80, 112) everywhere, not transposed
    img = cv2.imread(osp.join(a, 'coco', 'val2017', '000000000004.jpg'))
    assert img.shape == (80, 112, 3)
    # regenerating in place replaces the dataset and leaves no temp folder
    gen.make_dataset(a, seed=1, **kwargs)
    assert _tree(a) == files_a
    assert sorted(os.listdir(tmp_path)) == ['a', 'b', 'c']


def test_instance_json_loads_with_pycocotools(root):
    for split in ('train', 'val'):
        coco = COCO(
            osp.join(root, 'coco', 'annotations',
                     f'instances_{split}2017.json'))
        cats = coco.loadCats(coco.getCatIds())
        assert [(c['id'], c['name'])
                for c in cats] == list(enumerate(gen.THING_CLASSES, 1))
        kinds = set()
        for ann in coco.loadAnns(coco.getAnnIds()):
            mask = coco.annToMask(ann).astype(bool)
            assert mask.sum() == ann['area'] > 0
            assert ann['bbox'] == tight_box(mask)
            segm = ann['segmentation']
            if ann['iscrowd']:  # COCO stores crowd as uncompressed RLE
                assert isinstance(segm['counts'], list)
                kinds.add('crowd')
            elif isinstance(segm, list):
                kinds.add('polygon')
            else:
                assert isinstance(segm['counts'], str)
                kinds.add('rle')
        assert kinds == {'crowd', 'polygon', 'rle'}


def test_panoptic_png_matches_json_and_semantic_maps(root):
    for split in ('train', 'val'):
        with open(
                osp.join(root, 'coco', 'annotations',
                         f'panoptic_{split}2017.json')) as f:
            pan = json.load(f)
        isthing = {c['id']: c['isthing'] for c in pan['categories']}
        assert isthing == {1: 1, 2: 1, 3: 1, 4: 0, 5: 0}
        inst = COCO(
            osp.join(root, 'coco', 'annotations',
                     f'instances_{split}2017.json'))
        for ann in pan['annotations']:
            name = osp.splitext(ann['file_name'])[0]
            ids = _pan_ids(root, split, name)
            assert ids.shape == (SIZE, SIZE)
            segs = ann['segments_info']
            assert set(np.unique(ids)) == {s['id'] for s in segs} | {0}
            # a few void pixels, all in stuff regions (not inside things)
            assert 0 < (ids == 0).sum() <= 16
            classes = np.zeros_like(ids)
            for s in segs:
                mask = ids == s['id']
                assert mask.sum() == s['area']
                assert s['bbox'] == tight_box(mask)
                classes[mask] = s['category_id']
            stuff = [s for s in segs if not isthing[s['category_id']]]
            assert sorted(s['category_id'] for s in stuff) == [4, 5]
            # ADE: class index + 1, 0 = void; Cityscapes: train id, 255
            np.testing.assert_array_equal(_ade(root, split, name), classes)
            city = cv2.imread(
                osp.join(root, 'cityscapes', 'gtFine', split, 'synth',
                         f'{name}_gtFine_labelTrainIds.png'),
                cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(
                city, np.where(classes == 0, 255, classes - 1))
            # things: exactly the instance annotations of the image
            things = sorted((s['category_id'], s['iscrowd'], s['area'])
                            for s in segs if isthing[s['category_id']])
            anns = inst.loadAnns(inst.getAnnIds(imgIds=ann['image_id']))
            assert things == sorted(
                (a['category_id'], a['iscrowd'], a['area']) for a in anns)
            for a in anns:
                mask = inst.annToMask(a).astype(bool)
                assert len(np.unique(ids[mask])) == 1
                assert (ids == ids[mask][0]).sum() == mask.sum()


def test_three_layouts_hold_the_same_pixels(root):
    for split, ade_dir in (('train', 'training'), ('val', 'validation')):
        names = sorted(
            osp.splitext(n)[0]
            for n in os.listdir(osp.join(root, 'coco', f'{split}2017')))
        assert len(names) == dict(train=16, val=12)[split]
        for name in names:
            coco = cv2.imread(
                osp.join(root, 'coco', f'{split}2017', name + '.jpg'))
            ade = cv2.imread(
                osp.join(root, 'ade', 'ADEChallengeData2016', 'images',
                         ade_dir, name + '.jpg'))
            city = cv2.imread(
                osp.join(root, 'cityscapes', 'leftImg8bit', split, 'synth',
                         f'{name}_leftImg8bit.png'))
            np.testing.assert_array_equal(coco, ade)
            np.testing.assert_array_equal(coco, city)


def test_classes_have_distinct_appearance(root):
    """Mean colours per class differ clearly (a tiny model can learn them)."""
    coco_pan = osp.join(root, 'coco', 'annotations', 'panoptic_train2017.json')
    with open(coco_pan) as f:
        anns = json.load(f)['annotations']
    sums, counts = np.zeros((6, 3)), np.zeros(6)
    for ann in anns:
        name = osp.splitext(ann['file_name'])[0]
        img = cv2.imread(osp.join(root, 'coco', 'train2017',
                                  name + '.jpg'))[..., ::-1]
        ids = _pan_ids(root, 'train', name)
        for s in ann['segments_info']:
            mask = ids == s['id']
            sums[s['category_id']] += img[mask].sum(0)
            counts[s['category_id']] += mask.sum()
    means = sums[1:] / counts[1:, None]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert dist[~np.eye(5, dtype=bool)].min() > 40


def test_validation_names_the_bad_file(tmp_path):
    out = str(tmp_path / 'synthetic')
    paths = gen.make_dataset(out, num_train=2, num_val=1, size=(64, 64))
    assert gen.validate_dataset(out)['val']['images'] == 1
    # a wrong area in the panoptic json
    with open(paths['panoptic_val']) as f:
        pan = json.load(f)
    pan['annotations'][0]['segments_info'][0]['area'] += 1
    with open(paths['panoptic_val'], 'w') as f:
        json.dump(pan, f)
    with pytest.raises(gen.DatasetError, match='panoptic_val2017.*area'):
        gen.validate_dataset(out)
    # an ADE map that disagrees with the panoptic PNG
    paths = gen.make_dataset(out, num_train=2, num_val=1, size=(64, 64))
    ade_png = osp.join(paths['ade_train_ann'], '000000000002.png')
    ade = cv2.imread(ade_png, cv2.IMREAD_UNCHANGED)
    ade[0, 0] = 1 if ade[0, 0] != 1 else 2
    cv2.imwrite(ade_png, ade)
    with pytest.raises(gen.DatasetError, match='000000000002.png'):
        gen.validate_dataset(out)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_train=0), 'num_train'),
    (dict(num_val=-1), 'num_val'),
    (dict(num_val=2.5), 'num_val'),
    (dict(size=(16, 64)), 'size'),
    (dict(size=(64, )), 'size'),
    (dict(seed=-1), 'seed'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gen.make_dataset(str(tmp_path / 'out'), **kwargs)
    assert not osp.exists(tmp_path / 'out')


def test_refuses_to_replace_foreign_folders(tmp_path):
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(ValueError, match='did not write'):
        gen.make_dataset(str(foreign), num_train=1, num_val=1)
    assert (foreign / 'keep.txt').read_text() == 'x'
    with pytest.raises(ValueError, match='not a folder'):
        gen.make_dataset(str(foreign / 'keep.txt'))


@pytest.mark.integration  # subprocess
def test_command_line(tmp_path):
    out = str(tmp_path / 'cli')
    stdout, info = generate_by_command(out, '--num-train', '2', '--num-val',
                                       '1', '--size', '64', '96', '--seed',
                                       '5')
    assert 'train: 2 images' in stdout
    assert (info['num_train'], info['num_val'], info['size'],
            info['seed']) == (2, 1, [64, 96], 5)
    proc = run_generator('--out', out, '--num-train', '0')
    assert proc.returncode != 0 and 'num_train must be' in proc.stderr


# --------------------------------------------------------- tiny configs
def test_tiny_configs_match_the_generator():
    for task, name in TINY_CONFIGS.items():
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        head = cfg.model.panoptic_head
        classes = (
            gen.THING_CLASSES if task == 'instance' else gen.ALL_CLASSES)
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            dataset = cfg[loader].dataset
            assert tuple(dataset.metainfo.classes) == classes
            assert dataset.data_root.startswith(SYNTHETIC_ROOT)
            assert cfg[loader].batch_size == 2
        things = 0 if task == 'semantic' else NUM_THINGS
        assert head.num_things_classes == things
        assert head.num_things_classes + head.num_stuff_classes == len(classes)
        # stated on the head only (it passes them down)
        assert 'num_classes' not in head.criterion
        assert 'num_things_classes' not in head.criterion.assigner
        assert 'num_things_classes' not in cfg.model.panoptic_fusion_head
        if task == 'panoptic':
            meta = cfg.train_dataloader.dataset.metainfo
            assert tuple(meta.thing_classes) == gen.THING_CLASSES
            assert tuple(meta.stuff_classes) == gen.STUFF_CLASSES
        # tiny model: ResNet-18 at 1/8 width, 32-d transformer
        assert (cfg.model.backbone.depth, cfg.model.backbone.base_channels,
                head.embed_dims) == (18, 8, 32)
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
        assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU-friendly


def _val_dataset(task: str, root: str):
    return DATASETS.build(synthetic_config(task, root).val_dataloader.dataset)


def _train_dataset(task: str, root: str):
    cfg = synthetic_config(task, root)
    return DATASETS.build(cfg.train_dataloader.dataset)


def _check_pad(sample, inputs) -> None:
    """Rows / columns padded by the pipeline (raw value 128 over a whole
    line) carry no mask and the ignore label."""
    img = inputs.numpy()
    if 'gt_sem_seg' in sample:
        assert sample.gt_sem_seg.sem_seg.shape[1:] == img.shape[1:]
    pad_rows = np.where((img == 128).all(axis=(0, 2)))[0]
    pad_cols = np.where((img == 128).all(axis=(0, 1)))[0]
    if 'gt_sem_seg' in sample:
        sem = sample.gt_sem_seg.sem_seg[0].numpy()
        assert (sem[pad_rows] == 255).all() and (sem[:, pad_cols] == 255).all()
    if 'masks' in sample.gt_instances:
        masks = sample.gt_instances.masks.masks
        assert not masks[:, pad_rows].any() and not masks[:, pad_cols].any()


def test_instance_val_samples(root):
    dataset = _val_dataset('instance', root)
    coco = COCO(
        osp.join(root, 'coco', 'annotations', 'instances_val2017.json'))
    assert len(dataset) == 12 and dataset.metainfo['classes'] == \
        gen.THING_CLASSES
    for item in dataset:
        sample = item['data_samples']
        assert item['inputs'].shape == (3, SIZE, SIZE)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=sample.img_id))
        plain = [a for a in anns if not a['iscrowd']]
        crowd = [a for a in anns if a['iscrowd']]
        gt = sample.gt_instances
        assert gt.labels.tolist() == [a['category_id'] - 1 for a in plain]
        for ann, mask in zip(plain, gt.masks.masks):
            np.testing.assert_array_equal(mask, coco.annToMask(ann))
        check_boxes_from_masks(gt)
        # crowd regions are ignored instances, not targets
        assert len(sample.ignored_instances) == len(crowd)
        np.testing.assert_allclose(
            sample.ignored_instances.bboxes.tensor.numpy().reshape(-1, 4),
            np.array([[x, y, x + w, y + h]
                      for x, y, w, h in (a['bbox']
                                         for a in crowd)]).reshape(-1, 4))


def test_panoptic_val_samples(root):
    dataset = _val_dataset('panoptic', root)
    assert dataset.metainfo['thing_classes'] == gen.THING_CLASSES
    with open(osp.join(root, 'coco', 'annotations',
                       'panoptic_val2017.json')) as f:
        pan = {a['image_id']: a for a in json.load(f)['annotations']}
    seen_ignore = seen_crowd = False
    for item in dataset:
        sample = item['data_samples']
        ann = pan[sample.img_id]
        ids = _pan_ids(root, 'val', osp.splitext(ann['file_name'])[0])
        expected = np.full(ids.shape, 255)
        things = []
        for s in ann['segments_info']:
            expected[ids == s['id']] = s['category_id'] - 1
            if s['category_id'] <= NUM_THINGS and not s['iscrowd']:
                things.append(s)
            seen_crowd |= bool(s['iscrowd'])
        sem = sample.gt_sem_seg.sem_seg[0].numpy()
        np.testing.assert_array_equal(sem, expected)
        seen_ignore |= bool((sem == 255).any())
        gt = sample.gt_instances
        assert gt.labels.tolist() == [s['category_id'] - 1 for s in things]
        for s, mask in zip(things, gt.masks.masks):
            np.testing.assert_array_equal(mask, ids == s['id'])
        check_boxes_from_masks(gt)
    assert seen_ignore and seen_crowd


def test_semantic_val_samples(root):
    dataset = _val_dataset('semantic', root)
    assert len(dataset) == 12
    for item in dataset:
        sample = item['data_samples']
        name = osp.splitext(osp.basename(sample.img_path))[0]
        ade = _ade(root, 'val', name).astype(np.int64)
        sem = sample.gt_sem_seg.sem_seg[0].numpy()
        # reduce_zero_label: k -> k - 1, 0 (void) -> 255
        np.testing.assert_array_equal(sem, np.where(ade == 0, 255, ade - 1))
        assert (sem == 255).any() and set(
            np.unique(sem)) <= {0, 1, 2, 3, 4, 255}


@pytest.mark.parametrize('task', ['instance', 'panoptic', 'semantic'])
def test_train_samples(root, task):
    """Augmented training samples: the padded 128x128 canvas, boxes that are
    the tight boxes of the (cropped) masks, no crowd targets, valid labels,
    ignore (255) on the padding and the void pixels."""
    np.random.seed(0)
    dataset = _train_dataset(task, root)
    assert len(dataset) == 16
    coco = COCO(
        osp.join(root, 'coco', 'annotations', 'instances_train2017.json'))
    num_classes = len(gen.THING_CLASSES if task ==
                      'instance' else gen.ALL_CLASSES)
    padded = False
    for index in range(len(dataset)):
        item = dataset[index]
        sample, inputs = item['data_samples'], item['inputs']
        assert inputs.shape == (3, SIZE, SIZE)
        assert sample.img_shape == (SIZE, SIZE)
        padded |= bool((inputs == 128).all(0).all(0).any())
        _check_pad(sample, inputs)
        if task == 'semantic':
            sem = sample.gt_sem_seg.sem_seg[0].numpy()
            assert set(np.unique(sem)) <= set(range(num_classes)) | {255}
            assert len(sample.gt_instances) == 0
            continue
        gt = sample.gt_instances
        assert gt.masks.masks.shape[1:] == (SIZE, SIZE)
        assert all(mask.any() for mask in gt.masks.masks)
        assert ((gt.labels >= 0) & (gt.labels < NUM_THINGS)).all()
        check_boxes_from_masks(gt)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=sample.img_id))
        assert len(gt) <= sum(not a['iscrowd'] for a in anns)
        if task == 'panoptic':
            sem = sample.gt_sem_seg.sem_seg[0].numpy()
            assert set(np.unique(sem)) <= set(range(num_classes)) | {255}
            # every target mask lies on its own class in the semantic map
            for label, mask in zip(gt.labels, gt.masks.masks.astype(bool)):
                assert (sem[mask] == int(label)).all()
    assert padded  # scale < 1 happened at least once


@pytest.mark.parametrize('task', ['panoptic', 'semantic'])
def test_head_targets_from_semantic_maps(root, task):
    """The model turns the packed semantic map into one mask (and its tight
    box) per class present: stuff for panoptic, every class for semantic."""
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = synthetic_config(task, root)
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = model.data_preprocessor(
        dict(
            inputs=[dataset[i]['inputs'] for i in range(2)],
            data_samples=[dataset[i]['data_samples'] for i in range(2)]),
        training=True)
    targets = model.panoptic_head.preprocess_gt(batch['data_samples'])
    first_stuff = 0 if task == 'semantic' else NUM_THINGS
    for sample, target in zip(batch['data_samples'], targets):
        sem = sample.gt_sem_seg.sem_seg[0]
        num_things = len(sample.gt_instances)
        present = [
            c for c in torch.unique(sem).tolist() if first_stuff <= c < 255
        ]
        assert target.labels[num_things:].tolist() == present
        h, w = sem.shape
        for label, mask, box in zip(target.labels[num_things:],
                                    target.masks[num_things:],
                                    target.bboxes[num_things:]):
            np.testing.assert_array_equal(mask[:h, :w].numpy(),
                                          (sem == label).numpy())
            x, y, bw, bh = tight_box(mask.numpy())
            assert box.tolist() == [x, y, x + bw, y + bh]


@pytest.mark.parametrize('task', ['instance', 'panoptic', 'semantic'])
def test_runner_builds_the_dataloaders(root, task):
    cfg = synthetic_config(task, root)
    for key in ('train_dataloader', 'val_dataloader'):
        loader = Runner.build_dataloader(cfg[key], seed=0)
        batch = next(iter(loader))
        assert len(batch['inputs']) == len(batch['data_samples']) == 2
