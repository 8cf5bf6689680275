"""Helpers shared by the robustness tests (tiny models, checks, tiny COCO
datasets written on the fly)."""
import copy
import functools
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import torch
from conftest import CONFIGS, REPO, set_num_classes, tiny_cfg
from data_helpers import lsj_steps
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config

from projects.mask_dino.testing import synthetic_dataset


def build_tiny(task: str = 'instance', seed: int = 0, **head_cfg):
    """The tiny Mask DINO of ``configs/maskdino_tiny_synthetic_{task}.py``
    (instance: 3 classes; panoptic: 3 things + 2 stuff; semantic: 5) with
    initialised weights, in train mode; ``head_cfg`` overrides head fields.
    """
    torch.manual_seed(seed)
    cfg = tiny_cfg(task)
    cfg.panoptic_head.update(head_cfg)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    return model


def assert_finite_losses(losses: Dict[str, torch.Tensor]) -> None:
    bad = {k: float(v) for k, v in losses.items() if not torch.isfinite(v)}
    assert not bad, f'non-finite losses: {bad}'


def backward_and_check(
    model, losses: Dict[str, torch.Tensor],
    must_have_grad: Sequence[str] = ()) -> None:
    """Backpropagate the total loss; every gradient must be finite and the
    named parameters must get a non-zero one."""
    assert_finite_losses(losses)
    model.zero_grad()
    sum(losses.values()).backward()
    params = dict(model.named_parameters())
    for name, p in params.items():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), f'non-finite grad: {name}'
    for name in must_have_grad:
        grad = params[name].grad
        assert grad is not None and grad.abs().sum() > 0, \
            f'no gradient reaches {name}'


def check_instance_predictions(results, num_classes: int) -> None:
    """Instance results lie in the original image and are well formed."""
    for r in results:
        ori_h, ori_w = r.metainfo['ori_shape'][:2]
        pred = r.pred_instances
        assert pred.masks.shape[-2:] == (ori_h, ori_w)
        assert pred.masks.dtype == torch.bool
        assert torch.isfinite(pred.bboxes).all()
        assert torch.isfinite(pred.scores).all()
        assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
        assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()
        b = pred.bboxes
        assert (b[:, 0::2] >= 0).all() and (b[:, 0::2] <= ori_w).all()
        assert (b[:, 1::2] >= 0).all() and (b[:, 1::2] <= ori_h).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()


def predict(model, inputs: torch.Tensor, samples):
    model.eval()
    try:
        with torch.no_grad():
            return model.predict(inputs, samples)
    finally:
        model.train()


# ----------------------------------------------------------------------
# Tiny COCO-format datasets written by the tests
# ----------------------------------------------------------------------
def box_to_polygon(x0: float, y0: float, x1: float, y1: float) -> list:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def encode_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode()
    return rle


def write_coco(root: str,
               images: List[dict],
               categories: Sequence[dict],
               ann_name: str = 'instances.json') -> str:
    """Write images and a COCO instance json under ``root``.

    Args:
        images: dicts with ``file_name``, ``array`` (written with cv2 unless
            ``raw`` bytes are given), optional ``height``/``width`` (default
            the array's) and ``anns`` (COCO annotations without ids).
        categories: COCO categories (``id``, ``name``).

    Returns:
        str: Path of the annotation file (``root/ann_name``).
    """
    os.makedirs(osp.join(root, 'img'), exist_ok=True)
    coco = dict(
        info={},
        licenses=[],
        images=[],
        annotations=[],
        categories=list(categories))
    ann_id = 1
    for img_id, img in enumerate(images, start=1):
        path = osp.join(root, 'img', img['file_name'])
        if img.get('raw') is not None:
            with open(path, 'wb') as f:
                f.write(img['raw'])
        elif img.get('array') is not None:
            assert cv2.imwrite(path, img['array']), path
        height = img.get('height', None)
        width = img.get('width', None)
        if img.get('array') is not None:
            height = height or img['array'].shape[0]
            width = width or img['array'].shape[1]
        coco['images'].append(
            dict(
                id=img_id,
                file_name=img['file_name'],
                height=height,
                width=width))
        for ann in img.get('anns', []):
            ann = dict(ann)
            ann.setdefault('iscrowd', 0)
            if 'area' not in ann:
                ann['area'] = float(ann['bbox'][2] * ann['bbox'][3])
            ann.update(id=ann_id, image_id=img_id)
            coco['annotations'].append(ann)
            ann_id += 1
    ann_file = osp.join(root, ann_name)
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return ann_file


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def coco_dataset(root: str,
                 ann_file: str,
                 classes: Sequence[str],
                 pipeline: Optional[list] = None,
                 **kwargs):
    """An mmdet ``CocoDataset`` over the files of :func:`write_coco`."""
    from mmdet.datasets import CocoDataset
    if pipeline is None:
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='PackDetInputs')
        ]
    kwargs.setdefault('filter_cfg', None)
    return CocoDataset(
        data_root=root,
        ann_file=ann_file,
        data_prefix=dict(img='img/'),
        metainfo=dict(classes=tuple(classes)),
        pipeline=pipeline,
        **kwargs)


@functools.lru_cache(maxsize=None)
def dataset_base(name: str) -> Config:
    """``configs/_base_/datasets/{name}`` (shared: copy what you change)."""
    return Config.fromfile(osp.join(CONFIGS, '_base_', 'datasets', name))


def loading_steps(base: str, pipeline: str = 'train_pipeline') -> list:
    """The loading steps (image, annotations: the first two) of a pipeline
    of ``configs/_base_/datasets/{base}``, then ``PackDetInputs``: the
    samples as the files give them, without augmentation."""
    steps = copy.deepcopy(dataset_base(base)[pipeline][:2])
    return [*steps, dict(type='PackDetInputs')]


def instance_train_pipeline(scale: Tuple[int, int],
                            ratio_range: Tuple[float, float] = (0.8, 1.25),
                            crop_size: Optional[Tuple[int, int]] = None,
                            pad_size: Optional[Tuple[int, int]] = None
                            ) -> list:
    """The synthetic instance configs' training pipeline (load; flip,
    random resize, crop, pad, drop the emptied masks; pack) at another
    size; crop and pad default to ``scale``."""
    *loading, _, pack = copy.deepcopy(
        dataset_base('synthetic_common.py').synthetic_instance_train_pipeline)
    return [
        *loading, *lsj_steps(scale, ratio_range, crop_size, pad_size), pack
    ]


def image_test_pipeline(scale: Tuple[int, int]) -> list:
    """The synthetic configs' test pipeline, without annotations, resizing
    to ``scale``."""
    base = dataset_base('synthetic_common.py')
    return [
        dict(type='LoadImageFromFile'),
        dict(copy.deepcopy(base.synthetic_test_resize), scale=scale),
        copy.deepcopy(base.synthetic_test_pack)
    ]


def ade_dataset(root: str, label: Optional[np.ndarray] = None):
    """An ``ADE20KSegDataset`` over ``root/img`` and ``root/ann``, loaded
    as ``configs/_base_/datasets/ade20k_semantic.py`` loads (label 0
    ignored, k -> k - 1). With ``label``, one textured image of its size
    (``a.jpg``) and the label map (``a.png``) are written first."""
    if label is not None:
        for d in ('img', 'ann'):
            os.makedirs(osp.join(root, d), exist_ok=True)
        assert cv2.imwrite(
            osp.join(root, 'img', 'a.jpg'), textured_image(*label.shape))
        assert cv2.imwrite(osp.join(root, 'ann', 'a.png'), label)
    return DATASETS.build(
        dict(
            type='ADE20KSegDataset',
            data_root=root,
            data_prefix=dict(img_path='img', seg_map_path='ann'),
            pipeline=loading_steps('ade20k_semantic.py')))


def make_synthetic(tmp_path_factory, num_train: int) -> dict:
    """A small synthetic dataset (every layout, 64 px, one validation
    image) in a new temporary folder (see ``make_dataset``)."""
    root = str(tmp_path_factory.mktemp('synthetic'))
    return synthetic_dataset.make_dataset(
        root, num_train=num_train, num_val=1, size=(64, 64), seed=0)


def loss_on_batch(model, items: list) -> Dict[str, torch.Tensor]:
    """Collate packed dataset items, preprocess and compute the losses."""
    from mmengine.dataset import pseudo_collate
    data = model.data_preprocessor(pseudo_collate(items), True)
    return model(**data, mode='loss')


def predict_on_batch(model, items: list):
    """Predict on packed items (training pipelines set no scale factor:
    the image is then its own original)."""
    from mmengine.dataset import pseudo_collate
    for item in items:
        sample = item['data_samples']
        if 'scale_factor' not in sample.metainfo:
            sample.set_metainfo(dict(scale_factor=(1.0, 1.0)))
    model.eval()
    try:
        with torch.no_grad():
            data = model.data_preprocessor(pseudo_collate(items), False)
            return model(**data, mode='predict')
    finally:
        model.train()


# ----------------------------------------------------------------------
# Tiny end-to-end training setups (Runner / tools/train.py)
# ----------------------------------------------------------------------
DEFAULT_RUNTIME = osp.join(REPO, 'configs', '_base_', 'default_runtime.py')
TRAIN_PY = osp.join(REPO, 'tools', 'train.py')
# MMDetection's own (what `mim train` runs): the configs must work with it
MMDET_TRAIN_PY = osp.join(
    osp.dirname(osp.abspath(__import__('mmdet').__file__)), '.mim', 'tools',
    'train.py')


def make_tiny_coco(root: str,
                   num_images: int = 4,
                   num_classes: int = 3,
                   size: int = 32) -> str:
    """``size`` x ``size`` images with one or two coloured rectangles
    (polygon masks); 32 px keeps the runner tests fast."""
    images = []
    step = size // 32
    for i in range(num_images):
        img = np.full((size, size, 3), 40 + 10 * i, dtype=np.uint8)
        anns = []
        for k in range(1 + i % 2):
            x0, y0 = (2 + 14 * k) * step, (2 + 2 * i) * step
            x1, y1 = x0 + 10 * step, y0 + 12 * step
            cat = 1 + (i + k) % num_classes
            img[y0:y1, x0:x1] = (60 * cat) % 255, 200 - 40 * k, 90
            anns.append(
                dict(
                    bbox=[x0, y0, x1 - x0, y1 - y0],
                    segmentation=box_to_polygon(x0, y0, x1, y1),
                    category_id=cat))
        images.append(dict(file_name=f'{i:04d}.png', array=img, anns=anns))
    categories = [
        dict(id=c, name=f'class{c}') for c in range(1, num_classes + 1)
    ]
    return write_coco(root, images, categories)


def tiny_instance_model(num_classes: int):
    """The tiny instance model for the ``num_classes`` of a dataset
    written by a test."""
    model = set_num_classes(tiny_cfg('instance'), num_classes)
    model.test_cfg.max_per_image = 10
    return model


def runner_config(work_dir: str,
                  data_root: str,
                  ann_file: str,
                  num_classes: int = 3,
                  max_iters: int = 4,
                  checkpoint: Optional[dict] = None,
                  num_workers: int = 0,
                  pipeline: Optional[list] = None,
                  custom_imports: Sequence[str] = ()):
    """A full training config on the project's ``default_runtime.py``
    (its hooks included) with the tiny model and a tiny COCO dataset."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEFAULT_RUNTIME)
    if pipeline is None:
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='PackDetInputs')
        ]
    cfg.merge_from_dict(
        dict(
            custom_imports=dict(
                imports=[*cfg.custom_imports.imports, *custom_imports],
                allow_failed_imports=False),
            work_dir=work_dir,
            model=tiny_instance_model(num_classes).to_dict(),
            train_dataloader=dict(
                batch_size=2,
                num_workers=num_workers,
                persistent_workers=False,
                sampler=dict(type='InfiniteSampler', shuffle=False),
                dataset=dict(
                    type='CocoDataset',
                    data_root=data_root,
                    ann_file=ann_file,
                    data_prefix=dict(img='img/'),
                    metainfo=dict(
                        classes=tuple(f'class{c}'
                                      for c in range(1, num_classes + 1))),
                    filter_cfg=None,
                    pipeline=pipeline)),
            train_cfg=dict(
                type='IterBasedTrainLoop',
                max_iters=max_iters,
                val_interval=10**6),
            optim_wrapper=dict(
                type='OptimWrapper',
                optimizer=dict(type='AdamW', lr=1e-4),
                clip_grad=dict(max_norm=0.1)),
            randomness=dict(seed=0),
            default_hooks=dict(
                logger=dict(interval=1),
                checkpoint=dict(
                    checkpoint or dict(interval=10**6, save_last=False))),
            visualizer=dict(vis_backends=[]),
        ))
    return cfg


def run_train_py(cfg_path: str,
                 work_dir: str,
                 *args: str,
                 env: Optional[dict] = None,
                 cwd: Optional[str] = None,
                 timeout: int = 300,
                 train_py: str = TRAIN_PY):
    """``python TRAIN_PY CONFIG --work-dir DIR ...`` in a subprocess (the
    repo and ``cwd`` on PYTHONPATH); ``train_py`` defaults to this
    project's ``tools/train.py``."""
    import subprocess
    import sys
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env['PYTHONPATH'] = os.pathsep.join(
        p for p in (cwd, REPO, full_env.get('PYTHONPATH')) if p)
    return subprocess.run(
        [sys.executable, train_py, cfg_path, '--work-dir', work_dir, *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout)


def read_logs(work_dir: str) -> str:
    """The text of every ``*.log`` file under ``work_dir``."""
    texts = []
    for dirpath, _, files in os.walk(work_dir):
        for name in sorted(files):
            if name.endswith('.log'):
                with open(osp.join(dirpath, name)) as f:
                    texts.append(f.read())
    return '\n'.join(texts)
