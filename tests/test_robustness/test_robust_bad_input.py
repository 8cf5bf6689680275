"""Bad input gets a clear error naming the file or field: missing and
corrupt images, unparsable or inconsistent annotation files, panoptic PNGs
that do not match their JSON, semantic labels outside the class range,
malformed polygons / RLEs, incompatible config options."""
import copy
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from conftest import load_config, make_sample, tiny_cfg
from mmdet.registry import DATASETS, MODELS
from robust_common import (ade_dataset, build_tiny, coco_dataset,
                           dataset_base, loading_steps, make_synthetic,
                           make_tiny_coco)

from projects.mask_dino.runtime.robust_dataset import (
    AnnotationError, DatasetBuildError, SampleError, SkipBadSamplesDataset,
    check_data_info, check_mask_annotation, rle_string_counts)


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory, num_train=3)


def _copy_tree(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def _instance_wrapper(root, ann, strict=True):
    dataset = coco_dataset(root, ann, ('class1', 'class2', 'class3'))
    return SkipBadSamplesDataset(dataset, strict=strict)


# ----------------------------------------------------------------------
# images
# ----------------------------------------------------------------------
def test_missing_image_names_the_file(tmp_path):
    root = str(tmp_path)
    ann = make_tiny_coco(root, num_images=2)
    missing = osp.join(root, 'img', '0001.png')
    os.remove(missing)
    # mmcv's own error already names it ...
    with pytest.raises(FileNotFoundError, match=missing):
        coco_dataset(root, ann, 'abc')[1]
    # ... and the wrapper adds the sample and all its files
    with pytest.raises(SampleError) as info:
        _instance_wrapper(root, ann)[1]
    assert str(info.value).startswith(f'sample 1 (img_path={missing}')
    assert 'FileNotFoundError' in str(info.value)
    assert info.value.files['img_path'] == missing


@pytest.mark.parametrize(
    'payload', [b'', b'\xff\xd8\xff\xe0 truncated jpeg', b'GIF89a not really'])
def test_corrupt_image_names_the_file(tmp_path, payload):
    root = str(tmp_path)
    ann = make_tiny_coco(root, num_images=2)
    bad = osp.join(root, 'img', '0000.png')
    with open(bad, 'wb') as f:
        f.write(payload)
    with pytest.raises(SampleError) as info:
        _instance_wrapper(root, ann)[0]
    assert f'img_path={bad}' in str(info.value)
    # non-strict: the sample is replaced by a good one and counted
    wrapper = _instance_wrapper(root, ann, strict=False)
    item = wrapper[0]
    assert item['data_samples'].img_path.endswith('0001.png')
    assert wrapper.num_skipped >= 1


def test_every_sample_failing_gives_up_with_the_last_error(tmp_path):
    root = str(tmp_path)
    ann = make_tiny_coco(root, num_images=2)
    for name in os.listdir(osp.join(root, 'img')):
        os.remove(osp.join(root, 'img', name))
    wrapper = SkipBadSamplesDataset(
        coco_dataset(root, ann, 'abc'), max_consecutive_failures=5)
    with pytest.raises(
            SampleError,
            match='5 training samples in a row '
            'failed to load; the data is broken'):
        wrapper[0]
    assert wrapper.num_skipped == 5


# ----------------------------------------------------------------------
# annotation files
# ----------------------------------------------------------------------
def _coco_cfg(root, ann, **kwargs):
    return dict(
        type='CocoDataset',
        data_root=root,
        ann_file=ann,
        data_prefix=dict(img='img/'),
        metainfo=dict(classes=('class1', 'class2', 'class3')),
        pipeline=[],
        **kwargs)


@pytest.mark.parametrize('lazy', [False, True])
def test_unparsable_json_names_the_file(tmp_path, lazy):
    root = str(tmp_path)
    ann = make_tiny_coco(root, num_images=2)
    with open(ann) as f:
        text = f.read()
    with open(ann, 'w') as f:
        f.write(text[:len(text) // 2])  # cut in the middle
    with pytest.raises(DatasetBuildError) as info:
        SkipBadSamplesDataset(_coco_cfg(root, ann, lazy_init=lazy))
    msg = str(info.value)
    assert f'CocoDataset ({ann})' in msg and 'is not valid JSON' in msg
    assert 'line 1 column' in msg


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetBuildError, match='a file is missing'):
        SkipBadSamplesDataset(_coco_cfg(str(tmp_path), 'nope.json'))


def test_unknown_category_id_names_the_file(tmp_path, synthetic):
    # the synthetic panoptic JSON read with the default COCO class names:
    # its category ids are unknown to the dataset
    cfg = _panoptic_cfg(synthetic['coco_root'])
    cfg.pop('metainfo')
    with pytest.raises(DatasetBuildError) as info:
        SkipBadSamplesDataset(cfg)
    msg = str(info.value)
    assert osp.join(synthetic['coco_root'],
                    'annotations/panoptic_train2017.json') in msg
    assert 'key 3 is unknown: an annotation refers to a category id' in msg


# ----------------------------------------------------------------------
# panoptic and semantic label files
# ----------------------------------------------------------------------
def _panoptic_cfg(coco_root):
    """The synthetic panoptic training set at ``coco_root``, loaded as
    its config loads, without augmentation."""
    cfg = copy.deepcopy(
        dataset_base('synthetic_common.py').synthetic_panoptic_train_data)
    cfg.update(
        type='CocoPanopticDataset',
        data_root=coco_root,
        pipeline=loading_steps('synthetic_common.py',
                               'synthetic_panoptic_train_pipeline'))
    return cfg


def _panoptic_dataset(coco_root):
    return DATASETS.build(_panoptic_cfg(coco_root))


def test_panoptic_png_not_matching_its_json(tmp_path, synthetic):
    root = _copy_tree(synthetic['coco_root'], tmp_path / 'coco')
    dataset = _panoptic_dataset(root)
    info = dataset.get_data_info(1)
    check_data_info(info, 5)  # the generated data is consistent
    png_path = info['seg_map_path']
    png = cv2.imread(png_path).astype(np.int64)  # BGR: B is the high byte
    ids = png[..., 2] + 256 * png[..., 1] + 65536 * png[..., 0]
    # a PNG whose ids are all shifted by one (e.g. from another export)
    shifted = np.where(ids > 0, ids + 1, 0)
    out = np.stack([shifted // 65536, shifted // 256 % 256, shifted % 256],
                   -1).astype(np.uint8)
    cv2.imwrite(png_path, out)
    wanted = sorted(s['id'] for s in info['segments_info'])
    with pytest.raises(AnnotationError) as err:
        check_data_info(info, 5)
    msg = str(err.value)
    assert msg.startswith(f'{png_path}: segment ids {wanted}')
    assert 'of the JSON are not in the PNG' in msg
    assert str(sorted(i + 1 for i in wanted)[:10]) in msg
    # through the wrapper: strict raises, otherwise the sample is skipped
    with pytest.raises(SampleError, match='segment ids'):
        SkipBadSamplesDataset(dataset, strict=True)[1]
    wrapper = SkipBadSamplesDataset(dataset)
    np.random.seed(1)
    assert wrapper[1]['data_samples'].img_path != info['img_path']
    assert wrapper.num_skipped >= 1


def test_semantic_label_outside_the_class_range(tmp_path):
    label = np.full((32, 40), 5, dtype=np.uint8)
    label[:4] = 201  # ADE has 150 classes: 201 -> label 200
    dataset = ade_dataset(str(tmp_path), label)
    with pytest.raises(SampleError) as info:
        SkipBadSamplesDataset(dataset, strict=True)[0]
    msg = str(info.value)
    assert osp.join(str(tmp_path), 'img', 'a.jpg') in msg
    assert osp.join(str(tmp_path), 'ann', 'a.png') in msg
    assert 'semantic labels [200] outside [0, 150)' in msg
    # without the wrapper the model refuses it too, naming the image
    model = build_tiny('semantic')  # 5 classes
    sample = dataset[0]['data_samples']
    sample.set_metainfo(dict(batch_input_shape=(32, 40)))
    with pytest.raises(ValueError) as err:
        model.panoptic_head.preprocess_gt([sample])
    assert str(err.value).startswith(
        f'gt_sem_seg of {osp.join(str(tmp_path), "img", "a.jpg")} holds '
        'labels [200] outside [0, num_classes=5)')


# ----------------------------------------------------------------------
# instance annotations
# ----------------------------------------------------------------------
def test_rle_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, 2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(mask))
        runs = rle_string_counts(rle['counts'].decode())
        # brute force: run lengths of the column-major flattened mask
        flat = mask.flatten(order='F')
        expected, value, n = [], 0, 0
        for v in flat:
            if v != value:
                expected.append(n)
                value, n = v, 0
            n += 1
        expected.append(n)
        assert runs == expected and sum(runs) == h * w


@pytest.mark.parametrize('mask,message', [
    ([[0, 0, float('nan'), 0, 5, 5]], 'non-finite polygon coordinate'),
    ([[0, 0, 1e9, 0, 5, 5]], 'polygon far outside the 64x48 image'),
    ([[0, 0, 'x', 0, 5, 5]], 'a polygon must be a list of numbers'),
    (dict(size=[32, 32], counts=[1024]), 'RLE size [32, 32] differs from '
     'the image size [48, 64]'),
    (dict(size=[48, 64], counts=[10, 20]), 'RLE runs (sum 30) do not cover'),
    (dict(size=[48, 64], counts=''), 'RLE runs (sum 0) do not cover'),
    (dict(size=[48, 64], counts=[-5, 3077]), 'RLE runs'),
    (dict(size=[48, 64], counts='0'), 'RLE runs'),
    (dict(size=[48, 64], counts='a'), 'truncated RLE string'),
    ('polygon', 'expected polygons or an RLE'),
])
def test_malformed_masks_are_refused_before_rasterising(mask, message):
    """pycocotools hangs on NaN / huge polygon coordinates and reads
    uninitialised memory for RLEs whose runs do not cover the image."""
    with pytest.raises(AnnotationError) as info:
        check_mask_annotation(mask, 48, 64, 'x.jpg: instances[0]')
    assert str(info.value).startswith('x.jpg: instances[0].mask')
    assert message in str(info.value)


def test_valid_masks_pass():
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[3:9, 5:60] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    check_mask_annotation(
        dict(size=[48, 64], counts=rle['counts'].decode()), 48, 64, 'x')
    check_mask_annotation(
        dict(size=[48, 64], counts=[100, 2970, 2]), 48, 64, 'x')
    # slightly outside, and polygons mmdet drops itself (too short)
    check_mask_annotation([[-2, -2, 65, 0, 30, 49], [1, 2, 3]], 48, 64, 'x')


@pytest.mark.parametrize('field,value,message', [
    ('bbox', [0, 0, float('inf'), 4], 'bbox must be 4 finite numbers'),
    ('bbox', [10, 0, 5, 4], 'has x2 < x1'),
    ('bbox_label', 3, 'bbox_label 3 is outside [0, 3)'),
    ('bbox_label', -1, 'bbox_label -1 is outside'),
])
def test_malformed_instances_name_the_field(field, value, message):
    info = dict(
        img_path='im.jpg',
        height=48,
        width=64,
        instances=[
            dict(bbox=[0, 0, 4, 4], bbox_label=0, mask=[[0, 0, 4, 0, 4, 4]]),
            dict(bbox=[0, 0, 4, 4], bbox_label=0)
        ])
    info['instances'][1][field] = value
    with pytest.raises(AnnotationError) as err:
        check_data_info(info, 3)
    assert str(err.value).startswith(f'im.jpg: instances[1].{field}')
    assert message in str(err.value)


# ----------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------
def test_semantic_ce_with_two_stage_head_is_refused():
    cfg = tiny_cfg('panoptic')
    head = cfg.panoptic_head
    head.semantic_ce = True
    head.initialize_box_type = 'no'
    with pytest.raises(ValueError) as info:
        MODELS.build(cfg)
    msg = str(info.value)
    assert msg.startswith('semantic_ce=True (softmax CE with a no-object '
                          'class) cannot be combined with two_stage=True')


def test_classification_loss_must_match_semantic_ce():
    # focal-loss panoptic criterion with a C + 1 softmax head
    cfg = tiny_cfg('panoptic')
    cfg.panoptic_head.update(
        semantic_ce=True, two_stage=False, initialize_box_type='no')
    with pytest.raises(
            ValueError,
            match=r'criterion.loss_cls \(FocalLoss, '
            r'use_sigmoid=True\) does not match semantic_ce=True'):
        MODELS.build(cfg)
    # the semantic softmax CE with a sigmoid head
    cfg = tiny_cfg('semantic')
    cfg.panoptic_head.semantic_ce = False
    with pytest.raises(
            ValueError,
            match=r'CrossEntropyLoss, use_sigmoid='
            r'False\) does not match semantic_ce=False'):
        MODELS.build(cfg)


def test_test_cfg_semantic_ce_mismatch_is_a_clear_error():
    cfg = tiny_cfg()
    cfg.test_cfg.semantic_ce = True  # the head is focal (3 logits)
    with pytest.raises(ValueError,
                       match='test_cfg.semantic_ce=True contradicts'):
        MODELS.build(cfg)
    # a fusion head built on its own still checks its input
    cfg = tiny_cfg()
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    model.panoptic_fusion_head.test_cfg.semantic_ce = True
    samples = [make_sample(32, 32, [], [])]
    with pytest.raises(ValueError, match='semantic_ce'), torch.no_grad():
        model.predict(torch.randn(1, 3, 32, 32), samples)


@pytest.mark.integration  # full-size R50 heads
def test_released_configs_still_build():
    for name in ('maskdino_r50_coco_instance.py',
                 'maskdino_r50_coco_panoptic.py',
                 'maskdino_r50_ade20k_semantic.py'):
        cfg = load_config(name)
        head = MODELS.build(cfg.model.panoptic_head)
        assert head.semantic_ce == (name == 'maskdino_r50_ade20k_semantic.py')
