"""Task configs: they resolve, carry the official settings (spec section 6)
and, pointed at the standard dataset layouts (a generated dataset), their
pipelines yield correct ``DetDataSample``s that the model trains on."""
import copy
import json
import os.path as osp
from collections import Counter

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import REPO, load_config, tiny_cfg
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from pycocotools.coco import COCO

from projects.mask_dino.testing import synthetic_dataset as generator

CONFIGS = osp.join(REPO, 'configs')


THING_CLASSES = generator.THING_CLASSES
STUFF_CLASSES = generator.STUFF_CLASSES
ALL_CLASSES = generator.ALL_CLASSES
R50_CONFIGS = [
    'maskdino_r50_coco_instance.py', 'maskdino_r50_coco_panoptic.py',
    'maskdino_r50_ade20k_semantic.py', 'maskdino_r50_cityscapes_semantic.py'
]
SWIN_CONFIGS = [
    'maskdino_swin-l_coco_instance.py', 'maskdino_swin-l_coco_panoptic.py'
]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')

# Official values (spec section 6.2 / the released yamls).
COCO_TASK = dict(
    max_iters=368750,
    milestones=[327778, 355092],
    amp=True,
    queries=300,
    two_stage=True,
    semantic_ce=False,
    mask_thr=0.25,
    test_scale=(1333, 800),
    data_root='data/coco/',
    things=80,
    levels=4)
COCO_INSTANCE = dict(
    COCO_TASK,
    stuff=0,
    box_init='mask2box',
    on=(True, False, False),
    dataset='CocoDataset',
    metrics=['CocoMetric'])
COCO_PANOPTIC = dict(
    COCO_TASK,
    stuff=53,
    box_init='no',
    on=(True, True, True),
    dataset='CocoPanopticDataset',
    metrics=['MaskDINOCocoPanopticMetric', 'CocoMetric',
             'MaskDINOSemSegMetric'])
SEMANTIC = dict(
    amp=False,
    queries=100,
    two_stage=False,
    levels=3,
    box_init='no',
    semantic_ce=True,
    mask_thr=0.8,
    on=(False, False, True))
EXPECTED = {
    'maskdino_r50_coco_instance.py': COCO_INSTANCE,
    'maskdino_r50_coco_panoptic.py': COCO_PANOPTIC,
    # Swin-L: res2-res5 + one extra level
    'maskdino_swin-l_coco_instance.py':
    dict(COCO_INSTANCE, levels=5, box_init='bitmask'),
    'maskdino_swin-l_coco_panoptic.py': dict(COCO_PANOPTIC, levels=5),
    'maskdino_r50_ade20k_semantic.py':
    dict(
        SEMANTIC,
        things=0,
        stuff=150,
        max_iters=160000,
        milestones=[135000, 150000],
        dataset='ADE20KSegDataset',
        data_root='data/ade/ADEChallengeData2016/',
        metrics=['MaskDINOSemSegMetric'],
        test_scale=(2048, 512),
        crop=(512, 512),
        # int(0.1 * 512 * k), k = 5..20 (Base-ADE20K yaml MIN_SIZE_TRAIN)
        short_sides=[
            256, 307, 358, 409, 460, 512, 563, 614, 665, 716, 768, 819, 870,
            921, 972, 1024
        ],
        max_side=2048),
    'maskdino_r50_cityscapes_semantic.py':
    dict(
        SEMANTIC,
        things=0,
        stuff=19,
        max_iters=90000,
        milestones=[80000, 87000],
        dataset='mmseg.CityscapesDataset',
        data_root='data/cityscapes/',
        metrics=['MaskDINOSemSegMetric'],
        test_scale=(2048, 1024),
        crop=(512, 1024),
        # int(0.1 * 1024 * k), k = 5..20
        short_sides=[
            512, 614, 716, 819, 921, 1024, 1126, 1228, 1331, 1433, 1536, 1638,
            1740, 1843, 1945, 2048
        ],
        max_side=4096),
}


def _transform(pipeline, type_name):
    found = [t for t in pipeline if t['type'] == type_name]
    assert len(found) == 1, (type_name, [t['type'] for t in pipeline])
    return found[0]


# ----------------------------------------------------------------------
# Config values
# ----------------------------------------------------------------------
@pytest.mark.parametrize('name', R50_CONFIGS + SWIN_CONFIGS)
def test_config_resolves_with_official_values(name):
    exp = EXPECTED[name]
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    # --- solver (shared by all released configs)
    ow = cfg.optim_wrapper
    assert ow.type == ('AmpOptimWrapper' if exp['amp'] else 'OptimWrapper')
    assert ow.optimizer == dict(
        type='AdamW', lr=1e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999))
    assert ow.clip_grad == dict(max_norm=0.01, norm_type=2)
    pw = ow.paramwise_cfg
    assert pw.norm_decay_mult == 0.0 and pw.bypass_duplicate
    assert pw.custom_keys['backbone'] == dict(lr_mult=0.1, decay_mult=1.0)
    for key in ('query_feat', 'query_embed', 'label_embedding'):
        assert pw.custom_keys[key] == dict(lr_mult=1.0, decay_mult=0.0)
    assert not any('level_embed' in k for k in pw.custom_keys)
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    # --- schedule
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == exp['max_iters']
    assert cfg.train_cfg.val_interval == 5000
    assert len(cfg.param_scheduler) == 1
    sched = cfg.param_scheduler[0]
    assert sched.type == 'MultiStepLR' and not sched.by_epoch
    assert sched.milestones == exp['milestones'] and sched.gamma == 0.1
    assert cfg.default_hooks.checkpoint.interval == 5000
    # --- model
    head = cfg.model.panoptic_head
    num_classes = exp['things'] + exp['stuff']
    assert head.num_things_classes == exp['things']
    assert head.num_stuff_classes == exp['stuff']
    # the class counts are stated on the head only (it passes them down)
    for part in (head.criterion, head.criterion.assigner,
                 cfg.model.panoptic_fusion_head):
        assert 'num_classes' not in part and 'num_things_classes' not in part
    assert head.num_queries == exp['queries']
    assert head.two_stage == exp['two_stage']
    assert head.initialize_box_type == exp['box_init']
    assert head.semantic_ce == exp['semantic_ce']
    assert head.dn_cfg == dict(dn_num=100, noise_scale=0.4)
    assert head.decoder.num_layers == 9
    assert head.pixel_decoder.encoder.num_layers == 6
    levels = exp['levels']
    pixel_decoder = head.pixel_decoder
    assert (len(pixel_decoder.encoder_in_indices) +
            pixel_decoder.num_extra_levels == levels)
    # the width is stated on the head only, the levels nowhere: the head
    # and its pixel decoder pass them down
    assert head.embed_dims == 256
    assert 'feat_channels' not in pixel_decoder
    assert 'out_channels' not in pixel_decoder
    assert 'num_feats' not in pixel_decoder.positional_encoding
    for part in (pixel_decoder.encoder.layer_cfg, head.decoder.layer_cfg):
        for attn_or_ffn in part.values():
            assert 'embed_dims' not in attn_or_ffn
            assert 'num_levels' not in attn_or_ffn
    if exp['semantic_ce']:
        # softmax CE over C + 1 outputs, no-object weight 0.1
        assert head.criterion.loss_cls.type == 'CrossEntropyLoss'
        assert not head.criterion.loss_cls.use_sigmoid
        assert (head.criterion.loss_cls.class_weight == [1.0] * num_classes +
                [0.1])
        assert head.pixel_decoder.encoder.layer_cfg.ffn_cfg \
            .feedforward_channels == 1024
    else:
        assert head.criterion.loss_cls.type == 'FocalLoss'
    test_cfg = cfg.model.test_cfg
    assert (test_cfg.instance_on, test_cfg.panoptic_on,
            test_cfg.semantic_on) == exp['on']
    assert test_cfg.object_mask_thr == exp['mask_thr']
    assert test_cfg.iou_thr == 0.8 and test_cfg.max_per_image == 100
    backbone = cfg.model.backbone
    if 'swin' in name:
        assert backbone.type == 'SwinTransformer'
        assert backbone.embed_dims == 192 and backbone.depths == [2, 2, 18, 2]
    elif 'cityscapes' in name:
        assert backbone.norm_cfg == dict(type='SyncBN', requires_grad=True)
        assert not backbone.norm_eval
    else:  # detectron2 FrozenBN
        assert backbone.norm_cfg == dict(type='BN', requires_grad=False)
        assert backbone.norm_eval
    # --- data
    for loader in LOADERS:
        assert cfg[loader].dataset.type == exp['dataset']
        assert cfg[loader].dataset.data_root == exp['data_root']
    for evaluator in EVALUATORS:
        metrics = cfg[evaluator]
        metrics = metrics if isinstance(metrics, list) else [metrics]
        assert [m.type for m in metrics] == exp['metrics']
        for m in metrics:
            if m.type == 'CocoMetric':
                assert m.metric == ['bbox', 'segm']
                # instance AP of the panoptic model: things-only json
                assert m.ann_file == ('data/coco/annotations/'
                                      'instances_val2017.json')
            if m.type == 'MaskDINOSemSegMetric':
                assert m.iou_metrics == ['mIoU']
    train = cfg.train_dataloader.dataset.pipeline
    test = cfg.test_dataloader.dataset.pipeline
    assert _transform(test, 'Resize').scale == exp['test_scale']
    assert _transform(test, 'Resize').keep_ratio
    if 'coco' in name:
        # LSJ: ResizeScale 0.1-2.0 of 1024^2, fixed 1024^2 crop padded with
        # 128, boxes recomputed from the cropped masks (the steps are
        # tests/test_datasets/test_large_scale_jitter.py's)
        lsj = _transform(train, 'LargeScaleJitter')
        assert lsj.scale == (1024, 1024)
        assert lsj.ratio_range == (0.1, 2.0)
        assert lsj.get('pad_val', 128) == 128
        assert lsj.get('boxes_from_masks', True)
    else:
        assert _transform(train, 'RandomFlip').prob == 0.5
        resize = _transform(train, 'RandomChoiceResize')
        assert resize.keep_ratio
        assert [min(s) for s in resize.scales] == exp['short_sides']
        assert {max(s) for s in resize.scales} == {exp['max_side']}
        crop = _transform(train, 'SemSegRandomCrop')
        assert crop.crop_size == exp['crop']
        assert crop.cat_max_ratio == 1.0  # SINGLE_CATEGORY_MAX_AREA
        _transform(train, 'mmseg.PhotoMetricDistortion')  # ColorAugSSD
        names = [t['type'] for t in train]
        # official order: resize, crop, colour, flip
        assert names.index('SemSegRandomCrop') < names.index(
            'mmseg.PhotoMetricDistortion') < names.index('RandomFlip')
        if 'ade' in name:
            # SIZE_DIVISIBILITY 512: pad to 512^2 (image 128, label 255)
            pad = _transform(train, 'Pad')
            assert pad.size == (512, 512)
            assert pad.pad_val == dict(img=(128, 128, 128), seg=255)
            for pipeline in (train, test):
                assert _transform(pipeline, 'LoadAnnotations') \
                    .reduce_zero_label
        else:  # SIZE_DIVISIBILITY -1
            assert 'Pad' not in names


# ----------------------------------------------------------------------
# Optimizer parameter groups
# ----------------------------------------------------------------------
NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm,
              nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
              nn.LocalResponseNorm)


def _official_param_groups(model, base_lr=1e-4, base_wd=0.05):
    """(lr, weight decay) per parameter by the official rule
    (train_net.py ``build_optimizer``; spec section 6.1)."""
    expected = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in expected:
                continue
            lr = base_lr * (0.1 if 'backbone' in module_name else 1.0)
            wd = base_wd
            if ('relative_position_bias_table' in param_name
                    or 'absolute_pos_embed' in param_name):
                wd = 0.0
            if isinstance(module, NORM_TYPES):
                wd = 0.0
            if isinstance(module, nn.Embedding):
                wd = 0.0
            expected[id(param)] = (f'{module_name}.{param_name}', lr, wd)
    return expected


def _task(name):
    """The task of a config: its tiny config's name in tests/conftest.py."""
    for task in ('instance', 'panoptic'):
        if task in name:
            return task
    return 'semantic'


def _small_model_cfg(name):
    """The tiny model of the config's task (module names unchanged) with
    the config's own backbone at test width: parameter groups depend on
    the backbone's norm layers (frozen BN, SyncBN, Swin's LN)."""
    cfg = tiny_cfg(_task(name))
    if 'swin' in name:  # all 24 blocks, tiny widths
        cfg.backbone = dict(
            type='SwinTransformer',
            embed_dims=8,
            depths=[2, 2, 18, 2],
            num_heads=[1, 1, 1, 1],
            window_size=7,
            out_indices=(0, 1, 2, 3),
            init_cfg=None)
    else:
        cfg.backbone = dict(
            load_config(name).model.backbone,
            depth=cfg.backbone.depth,
            base_channels=cfg.backbone.base_channels)
    return cfg


@pytest.mark.parametrize('name', [
    'maskdino_r50_coco_instance.py', 'maskdino_r50_ade20k_semantic.py',
    'maskdino_r50_cityscapes_semantic.py', 'maskdino_swin-l_coco_instance.py'
])
def test_param_groups_follow_official_rule(name):
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    model = MODELS.build(_small_model_cfg(name))
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    optimizer = build_optim_wrapper(model, optim_cfg).optimizer
    expected = _official_param_groups(model)
    seen = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in seen, 'parameter in two groups'
            seen[id(param)] = (group['lr'], group['weight_decay'])
    assert seen.keys() == expected.keys()
    wrong = [(n, (lr, wd), seen[k]) for k, (n, lr, wd) in expected.items()
             if not np.allclose(seen[k], (lr, wd), rtol=0, atol=1e-12)]
    assert not wrong, wrong[:5]
    # the rule's cases are all exercised
    kinds = {(lr, wd) for _, lr, wd in expected.values()}
    assert (1e-4, 0.05) in kinds and (1e-4, 0.0) in kinds
    assert any(np.isclose(lr, 1e-5) and wd == 0.05 for lr, wd in kinds)
    if 'cityscapes' in name or 'swin' in name:  # trainable backbone norms
        assert any(np.isclose(lr, 1e-5) and wd == 0.0 for lr, wd in kinds)
    # level_embed (a Parameter) is decayed, nn.Embeddings are not
    names = {n: (lr, wd) for n, lr, wd in expected.values()}
    level_embed = [n for n in names if n.endswith('level_embed')]
    assert len(level_embed) == 1 and names[level_embed[0]] == (1e-4, 0.05)
    embeds = {
        n: v
        for n, v in names.items() if any(
            k in n for k in ('query_feat', 'query_embed', 'label_embedding'))
    }
    assert any('label_embedding' in n for n in embeds)
    if 'semantic' in name:  # learned queries and anchors
        assert sum('query' in n for n in embeds) == 2
    assert set(embeds.values()) == {(1e-4, 0.0)}


# ----------------------------------------------------------------------
# Data: generated dataset in the standard layouts
# ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'synthetic')
    generator.make_dataset(out=root, num_train=4, num_val=2)
    return root


def _subdir(name):
    if 'coco' in name:
        return 'coco/'
    if 'ade' in name:
        return 'ade/ADEChallengeData2016/'
    return 'cityscapes/'


def data_options(name, root):
    """The ``--cfg-options`` that point a task config at ``root`` (standard
    layout) with the synthetic classes; no worker processes."""
    data_root = osp.join(root, _subdir(name))
    opts = {}
    for loader in LOADERS:
        opts[f'{loader}.dataset.data_root'] = data_root
        opts[f'{loader}.num_workers'] = 0
        opts[f'{loader}.persistent_workers'] = False
        if 'instance' in name:
            opts[f'{loader}.dataset.metainfo'] = dict(classes=THING_CLASSES)
        elif 'panoptic' in name:
            opts[f'{loader}.dataset.metainfo'] = dict(
                classes=ALL_CLASSES,
                thing_classes=THING_CLASSES,
                stuff_classes=STUFF_CLASSES)
    ann = data_root + 'annotations/'
    for evaluator in EVALUATORS:
        if 'instance' in name:
            opts[f'{evaluator}.ann_file'] = ann + 'instances_val2017.json'
        elif 'panoptic' in name:
            opts[f'{evaluator}.0.ann_file'] = ann + 'panoptic_val2017.json'
            opts[f'{evaluator}.0.seg_prefix'] = ann + 'panoptic_val2017/'
            opts[f'{evaluator}.1.ann_file'] = ann + 'instances_val2017.json'
    return opts


def tiny_task_model(name):
    """The tiny model of the config's task: it has the synthetic class
    counts."""
    return tiny_cfg(_task(name))


def tight_boxes(masks):
    """(N, H, W) bool -> (N, 4) xyxy with exclusive x2/y2, by brute force."""
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def _upscale(array, factor, flip):
    """Nearest upscaling by an integer factor, then an optional h-flip."""
    out = array.repeat(factor, axis=-2).repeat(factor, axis=-1)
    return out[..., ::-1].copy() if flip else out


def _panoptic_ids(png_path):
    rgb = cv2.imread(png_path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def expected_instances(ann_file, img_id):
    """Non-crowd labels and masks, and crowd labels, straight from the
    instance json (polygons and RLEs decoded by pycocotools)."""
    coco = COCO(ann_file)
    names = {c['id']: c['name'] for c in coco.loadCats(coco.getCatIds())}
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
    labels, masks, crowd = [], [], []
    for ann in anns:
        label = THING_CLASSES.index(names[ann['category_id']])
        if ann['iscrowd']:
            crowd.append(label)
        else:
            labels.append(label)
            masks.append(coco.annToMask(ann).astype(bool))
    return labels, np.asarray(masks), crowd


def expected_panoptic(ann_file, seg_dir, img_id):
    """Thing labels / masks (non-crowd) and the semantic map (VOID = 255,
    crowd pixels keep their class) from the panoptic json + PNG."""
    with open(ann_file) as f:
        dataset = json.load(f)
    info = next(a for a in dataset['annotations'] if a['image_id'] == img_id)
    names = {c['id']: c['name'] for c in dataset['categories']}
    ids = _panoptic_ids(osp.join(seg_dir, info['file_name']))
    sem = np.full(ids.shape, 255, dtype=np.int64)
    labels, masks = [], []
    for seg in info['segments_info']:
        label = ALL_CLASSES.index(names[seg['category_id']])
        sem[ids == seg['id']] = label
        if label < len(THING_CLASSES) and not seg['iscrowd']:
            labels.append(label)
            masks.append(ids == seg['id'])
    return labels, np.asarray(masks), sem


def expected_semantic(png_path, reduce_zero_label):
    sem = cv2.imread(png_path, cv2.IMREAD_UNCHANGED).astype(np.int64)
    if reduce_zero_label:  # ADE: 0 = other -> ignore, k -> k - 1
        sem = np.where(sem == 0, 255, sem - 1)
    return sem


def _label_path(img_path):
    """Label map of an ADE20K / Cityscapes image (standard layouts)."""
    if img_path.endswith('_leftImg8bit.png'):
        return img_path.replace('/leftImg8bit/', '/gtFine/').replace(
            '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
    return img_path.replace('/images/', '/annotations/')[:-4] + '.png'


def _fixed_scale_pipeline(name, pipeline):
    """The config's train pipeline with the random scale pinned so that a
    128 px image fills the crop exactly (flip and the rest unchanged)."""
    pipeline = copy.deepcopy(pipeline)
    if 'coco' in name:
        _transform(pipeline, 'LargeScaleJitter').ratio_range = (1.0, 1.0)
        return pipeline, 8  # 128 -> 1024
    resize = _transform(pipeline, 'RandomChoiceResize')
    resize.scales = [(max(resize.scales[0]), 512)]
    return pipeline, 4  # 128 -> 512


def check_targets(head, samples):
    """The head's targets: one per instance / per class present, each with
    the tight box of its mask; no target covers an ignored pixel."""
    targets = head.preprocess_gt(samples)
    for sample, target in zip(samples, targets):
        masks = target.masks.numpy()
        assert masks.shape[1:] == tuple(sample.metainfo['batch_input_shape'])
        assert masks.reshape(len(masks), -1).any(1).all()  # none empty
        np.testing.assert_array_equal(target.bboxes.numpy(),
                                      tight_boxes(masks))
        if 'gt_sem_seg' not in sample:
            continue
        sem = sample.gt_sem_seg.sem_seg[0].long().numpy()
        if head.num_stuff_classes == 0:
            continue
        is_stuff = target.labels >= head.num_things_classes
        stuff_labels = target.labels[is_stuff].numpy()
        present = np.unique(sem[(sem >= head.num_things_classes)
                                & (sem < head.num_classes)])
        np.testing.assert_array_equal(stuff_labels, present)
        for label, mask in zip(stuff_labels, masks[is_stuff.numpy()]):
            np.testing.assert_array_equal(mask, sem == label)
        assert not masks[:, sem == 255].any()
    return targets


@pytest.mark.integration  # a Runner on 512-1024 px batches
@pytest.mark.parametrize('name', R50_CONFIGS)
def test_runner_builds_loaders_and_trains_one_batch(name, synthetic_root,
                                                    tmp_path):
    """`Runner.from_cfg` on the task config pointed at the standard layout:
    a jittered train batch and a val batch come out right, and the (tiny)
    model computes finite losses on the train batch."""
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.merge_from_dict(data_options(name, synthetic_root))
    cfg.model = tiny_task_model(name)
    cfg.work_dir = str(tmp_path)
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    batch = next(iter(runner.train_dataloader))
    for img, sample in zip(batch['inputs'], batch['data_samples']):
        h, w = sample.img_shape
        assert tuple(img.shape) == (3, h, w)
        if 'coco' in name:
            # canvas padded in the pipeline: boxes normalised by 1024 as
            # the official FixedSizeCrop output
            assert (h, w) == (1024, 1024)
            ann = osp.join(synthetic_root, 'coco/annotations')
            if 'instance' in name:
                labels, _, crowd = expected_instances(
                    osp.join(ann, 'instances_train2017.json'), sample.img_id)
            else:
                labels, _, _ = expected_panoptic(
                    osp.join(ann, 'panoptic_train2017.json'),
                    osp.join(ann, 'panoptic_train2017'), sample.img_id)
                crowd = []  # crowd segments are not instances at all
            gt = sample.gt_instances
            masks = gt.masks.to_ndarray().astype(bool)
            assert masks.shape[1:] == (1024, 1024)
            assert masks.reshape(len(masks), -1).any(1).all()
            # boxes recomputed from the cropped masks
            np.testing.assert_array_equal(gt.bboxes.numpy(),
                                          tight_boxes(masks))
            # targets: a sub-multiset of the non-crowd annotations
            assert not Counter(gt.labels.tolist()) - Counter(labels)
            assert not Counter(
                sample.ignored_instances.labels.tolist()) - Counter(crowd)
        elif 'ade' in name:
            assert (h, w) == (512, 512)
        else:
            assert h == 512 and 512 <= w <= 1024
        if 'coco' not in name or 'panoptic' in name:
            values = set(sample.gt_sem_seg.sem_seg.unique().tolist())
            assert values <= set(range(len(ALL_CLASSES))) | {255}
    model = runner.model
    model.train()
    data = model.data_preprocessor(batch, True)
    check_targets(model.panoptic_head, data['data_samples'])
    losses = model.loss(data['inputs'], data['data_samples'])
    # 105 / 95 terms with 9 decoder layers; 6 fewer aux sets of 5 terms,
    # matching and dn, with the tiny model's 3
    expected_terms = 105 if EXPECTED[name]['two_stage'] else 95
    assert len(losses) == expected_terms - 2 * 6 * 5
    assert all(torch.isfinite(v).all() for v in losses.values())

    val = next(iter(runner.val_dataloader))
    sample = val['data_samples'][0]
    scale = EXPECTED[name]['test_scale']
    assert sample.ori_shape == (128, 128)
    assert sample.img_shape == (min(scale), ) * 2  # short side of 128^2
    if 'coco' not in name or 'panoptic' in name:
        # GT semantic map at the original size, where mIoU is computed
        assert tuple(sample.gt_sem_seg.sem_seg.shape) == (1, 128, 128)


@pytest.mark.parametrize('name', R50_CONFIGS)
def test_pipelines_give_exact_targets(name, synthetic_root):
    """With the random scale pinned (128 px -> the crop size), every
    training sample equals the annotation files upscaled (and flipped when
    the sample says so): masks, labels, boxes from masks, crowd excluded,
    semantic maps with ignore; the val pipeline keeps GT at 128 px."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.merge_from_dict(data_options(name, synthetic_root))
    data_root = cfg.train_dataloader.dataset.data_root
    ann = osp.join(data_root, 'annotations')
    train_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    train_cfg.pipeline, factor = _fixed_scale_pipeline(name,
                                                       train_cfg.pipeline)
    train_set = DATASETS.build(train_cfg)
    val_set = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(train_set) == 4 and len(val_set) == 2
    head = MODELS.build(tiny_task_model(name)).panoptic_head
    np.random.seed(0)
    flips = []
    for i in range(len(train_set)):
        sample = train_set[i]['data_samples']
        flip = sample.flip
        flips.append(flip)
        if 'instance' in name:
            labels, masks, crowd = expected_instances(
                osp.join(ann, 'instances_train2017.json'), sample.img_id)
        elif 'panoptic' in name:
            labels, masks, sem = expected_panoptic(
                osp.join(ann, 'panoptic_train2017.json'),
                osp.join(ann, 'panoptic_train2017'), sample.img_id)
        else:
            sem = expected_semantic(
                _label_path(sample.img_path), reduce_zero_label='ade' in name)
        if 'coco' in name:
            gt = sample.gt_instances
            np.testing.assert_array_equal(gt.labels.numpy(), labels)
            exp_masks = _upscale(masks, factor, flip)
            np.testing.assert_array_equal(gt.masks.to_ndarray(), exp_masks)
            np.testing.assert_array_equal(gt.bboxes.numpy(),
                                          tight_boxes(exp_masks))
            if 'instance' in name:  # crowd kept out of the targets
                assert sorted(sample.ignored_instances.labels.tolist()) == \
                    sorted(crowd)
        if 'instance' not in name:
            np.testing.assert_array_equal(sample.gt_sem_seg.sem_seg[0].numpy(),
                                          _upscale(sem, factor, flip))
        # the head's targets, at the padded batch size
        h, w = sample.img_shape
        sample.set_metainfo(dict(batch_input_shape=(h, w)))
        targets = check_targets(head, [sample])[0]
        if 'coco' not in name:  # semantic: one target per class present
            present = np.unique(sem[sem != 255])
            np.testing.assert_array_equal(targets.labels.numpy(), present)
    assert len(set(flips)) == 2  # both branches seen (seeded)
    # val: deterministic test pipeline, GT at the original 128 px
    sample = val_set[0]['data_samples']
    assert sample.ori_shape == (128, 128)
    if 'coco' not in name or 'panoptic' in name:
        if 'panoptic' in name:
            _, _, sem = expected_panoptic(
                osp.join(ann, 'panoptic_val2017.json'),
                osp.join(ann, 'panoptic_val2017'), sample.img_id)
        else:
            sem = expected_semantic(
                _label_path(sample.img_path), reduce_zero_label='ade' in name)
        np.testing.assert_array_equal(sample.gt_sem_seg.sem_seg[0].numpy(),
                                      sem)
        assert (sem == 255).any()  # the ignore path is exercised
