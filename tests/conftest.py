"""Shared helpers for the test-suite: tiny Mask DINO configs and samples."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
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


def tiny_model_cfg(name: str = 'maskdino_r50_coco_instance.py',
                   embed_dims: int = 32,
                   num_queries: int = 20,
                   dec_layers: int = 3,
                   num_points: int = 64):
    """A task config shrunk to test size (same wiring, tiny widths)."""
    cfg = load_config(name).model
    cfg.backbone.update(depth=18, base_channels=8)
    head = cfg.panoptic_head
    head.update(num_queries=num_queries, embed_dims=embed_dims)
    pd = head.pixel_decoder
    pd.update(
        in_channels=[8, 16, 32, 64],
        feat_channels=embed_dims,
        out_channels=embed_dims,
        norm_cfg=dict(type='GN', num_groups=8))
    pd.positional_encoding.num_feats = embed_dims // 2
    enc = pd.encoder
    enc.num_layers = 1
    enc.layer_cfg.self_attn_cfg.update(embed_dims=embed_dims, num_heads=4)
    enc.layer_cfg.ffn_cfg.update(
        embed_dims=embed_dims, feedforward_channels=64)
    dec = head.decoder
    dec.num_layers = dec_layers
    dec.layer_cfg.self_attn_cfg.update(embed_dims=embed_dims, num_heads=4)
    dec.layer_cfg.cross_attn_cfg.update(embed_dims=embed_dims, num_heads=4)
    dec.layer_cfg.ffn_cfg.update(
        embed_dims=embed_dims, feedforward_channels=64)
    head.dn_cfg = dict(dn_num=10, noise_scale=0.4)
    head.criterion.num_points = num_points
    head.criterion.assigner.num_points = num_points
    return cfg


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


@pytest.fixture
def seed():
    torch.manual_seed(0)
    np.random.seed(0)
    return 0


def clone_samples(samples):
    return [copy.deepcopy(s) for s in samples]
