"""Shared helpers for the test-suite: the tiny Mask DINO configs and
samples."""
import copy
import functools
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

import projects.mask_dino  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')

register_all_modules()


def load_config(name: str) -> Config:
    """Load a project config with the backbone's pretrained init off."""
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.pop('batch_augments', None)
    return cfg


TINY_CONFIGS = dict(
    instance='maskdino_tiny_synthetic_instance.py',
    panoptic='maskdino_tiny_synthetic_panoptic.py',
    semantic='maskdino_tiny_synthetic_semantic.py')


@functools.lru_cache(maxsize=None)
def _tiny_config(task: str) -> Config:
    if task not in TINY_CONFIGS:
        raise ValueError(f'task must be one of {sorted(TINY_CONFIGS)}, '
                         f'got {task!r}')
    return load_config(TINY_CONFIGS[task])


def tiny_cfg(task: str = 'instance') -> ConfigDict:
    """The model of ``configs/maskdino_tiny_synthetic_{task}.py`` (a copy:
    tests may override fields)."""
    return copy.deepcopy(_tiny_config(task).model)


def set_num_classes(model_cfg: ConfigDict,
                    things: int,
                    stuff: int = 0) -> ConfigDict:
    """Set the class counts of a sigmoid-classifier (instance / panoptic)
    model config: on the head, which passes them to the criterion, the
    assigner and (through the detector) the fusion head."""
    model_cfg.panoptic_head.update(
        num_things_classes=things, num_stuff_classes=stuff)
    return model_cfg


def make_sample(h: int,
                w: int,
                boxes,
                labels,
                sem_seg=None,
                ori_shape=None,
                pad_shape=None) -> DetDataSample:
    """A data sample with rectangular instance masks (and a semantic map)."""
    pad_shape = pad_shape or (h, w)
    ori_shape = ori_shape or (h, w)
    scale = (w / ori_shape[1], h / ori_shape[0])
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=ori_shape,
            pad_shape=pad_shape,
            batch_input_shape=pad_shape,
            scale_factor=scale))
    masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = 1
    sample.gt_instances = InstanceData(
        labels=torch.as_tensor(labels, dtype=torch.long),
        bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        masks=BitmapMasks(masks, h, w))
    if sem_seg is not None:
        sample.gt_sem_seg = PixelData(
            sem_seg=torch.as_tensor(sem_seg, dtype=torch.long)[None])
    return sample


@pytest.fixture(scope='module', autouse=True)
def mmdet_default_scope():
    """Every test module (and its module fixtures) starts in mmdet's
    registry scope: a Runner built by an earlier module (e.g. with
    default_scope='mmengine') leaves its own scope current, and unscoped
    builds would then miss mmdet's modules."""
    init_default_scope('mmdet')


@pytest.fixture
def seed():
    torch.manual_seed(0)
    np.random.seed(0)
    return 0


def clone_samples(samples):
    return [copy.deepcopy(s) for s in samples]


def runtime_and_detector_results(onnx_file: str, detector):
    """``ORTMaskDINO`` and the PyTorch detector's ``test_step`` on one
    random 100x150 image through the same test pipeline: (runtime result,
    detector result)."""
    from projects.mask_dino.deploy import ORTMaskDINO
    model = ORTMaskDINO(onnx_file, num_threads=2)
    image = np.random.default_rng(0).integers(0, 255, (100, 150, 3),
                                              dtype=np.uint8)
    data = model._pipeline(True)(dict(img=image, img_id=0))
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    with torch.no_grad():
        expected = detector.test_step(batch)[0]
    return model(image), expected
