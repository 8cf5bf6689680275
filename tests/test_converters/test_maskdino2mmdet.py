"""Tests of projects/mask_dino/converters/maskdino2mmdet.py and its
command line, tools/model_converters/maskdino2mmdet.py.

The official checkpoints are not downloaded: state dicts in the exact
official (detectron2) key layout are generated here from the layout facts
of the reference design (spec section 8: names, shapes, the 19 aliases of
the shared box MLP, ``decoder_norm`` = ``decoder.norm``, FrozenBN buffers,
``criterion.empty_weight``), at full size with zero-memory tensors for the
key/shape checks and at tiny widths with random values for value checks.
"""
import copy
import os.path as osp
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import REPO
from mmdet.models.layers import PatchMerging
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from projects.mask_dino.converters import maskdino2mmdet as conv

CONFIGS = osp.join(REPO, 'configs')
R50_INSTANCE = osp.join(CONFIGS, 'maskdino_r50_coco_instance.py')
R50_PANOPTIC = osp.join(CONFIGS, 'maskdino_r50_coco_panoptic.py')
R50_ADE = osp.join(CONFIGS, 'maskdino_r50_ade20k_semantic.py')
R50_CITYSCAPES = osp.join(CONFIGS, 'maskdino_r50_cityscapes_semantic.py')
SWINL_INSTANCE = osp.join(CONFIGS, 'maskdino_swin-l_coco_instance.py')
SWINL_PANOPTIC = osp.join(CONFIGS, 'maskdino_swin-l_coco_panoptic.py')
TOOL = osp.join(REPO, 'tools', 'model_converters', 'maskdino2mmdet.py')


# ----------------------------------------------------------------------
# Official layout generator (detectron2 names, spec section 8)
# ----------------------------------------------------------------------
class _Gen:
    """Fills an OrderedDict with tensors of given shapes.

    ``zeros=True`` gives zero-memory expanded tensors (full-size layout
    checks); otherwise seeded random values (value checks).
    """

    def __init__(self, zeros: bool, seed: int = 0):
        self.sd = OrderedDict()
        self.zeros = zeros
        self.g = torch.Generator().manual_seed(seed)

    def add(self, name, *shape, dtype=torch.float32):
        if self.zeros:
            t = torch.zeros((), dtype=dtype).expand(shape)
        elif dtype == torch.long:
            t = torch.randint(0, 5, shape, generator=self.g)
        else:
            t = torch.randn(shape, generator=self.g)
        self.sd[name] = t
        return t

    def norm(self, prefix, c, bn=None):
        self.add(prefix + 'weight', c)
        self.add(prefix + 'bias', c)
        if bn:  # detectron2 FrozenBN: 4 buffers; SyncBN adds the counter
            self.add(prefix + 'running_mean', c)
            self.add(prefix + 'running_var', c)
        if bn == 'SyncBN':
            self.add(prefix + 'num_batches_tracked', dtype=torch.long)

    def linear(self, prefix, out_c, in_c, bias=True):
        self.add(prefix + 'weight', out_c, in_c)
        if bias:
            self.add(prefix + 'bias', out_c)


def official_resnet(g, depth, base, bn='FrozenBN'):
    """detectron2 ResNet: stem + res2..res5 (FrozenBN or SyncBN). Returns
    the output channels of res2..res5."""
    p = 'backbone.'
    g.add(p + 'stem.conv1.weight', base, 3, 7, 7)
    g.norm(p + 'stem.conv1.norm.', base, bn)
    blocks = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}[depth]
    bottleneck = depth >= 50
    in_c, out_c, width = base, base * (4 if bottleneck else 1), base
    channels = []
    for s, n in enumerate(blocks):
        for b in range(n):
            q = f'{p}res{s + 2}.{b}.'
            if b == 0 and in_c != out_c:
                g.add(q + 'shortcut.weight', out_c, in_c, 1, 1)
                g.norm(q + 'shortcut.norm.', out_c, bn)
            if bottleneck:
                convs = [(width, in_c, 1), (width, width, 3),
                         (out_c, width, 1)]
            else:
                convs = [(out_c, in_c, 3), (out_c, out_c, 3)]
            for k, (o, i, ks) in enumerate(convs, 1):
                g.add(q + f'conv{k}.weight', o, i, ks, ks)
                g.norm(q + f'conv{k}.norm.', o, bn)
            in_c = out_c
        channels.append(out_c)
        out_c, width = out_c * 2, width * 2
    return channels


def official_swin(g, embed, depths, heads, window):
    """Original Swin names (as wrapped by ``D2SwinTransformer``)."""
    p = 'backbone.'
    g.add(p + 'patch_embed.proj.weight', embed, 3, 4, 4)
    g.add(p + 'patch_embed.proj.bias', embed)
    g.norm(p + 'patch_embed.norm.', embed)
    channels = []
    c = embed
    for i, (d, h) in enumerate(zip(depths, heads)):
        for j in range(d):
            q = f'{p}layers.{i}.blocks.{j}.'
            g.norm(q + 'norm1.', c)
            g.add(q + 'attn.relative_position_bias_table',
                  (2 * window - 1)**2, h)
            g.add(q + 'attn.relative_position_index', window**2, window**2,
                  dtype=torch.long)
            g.linear(q + 'attn.qkv.', 3 * c, c)
            g.linear(q + 'attn.proj.', c, c)
            g.norm(q + 'norm2.', c)
            g.linear(q + 'mlp.fc1.', 4 * c, c)
            g.linear(q + 'mlp.fc2.', c, 4 * c)
        if i < len(depths) - 1:
            g.add(f'{p}layers.{i}.downsample.reduction.weight', 2 * c,
                  4 * c)
            g.norm(f'{p}layers.{i}.downsample.norm.', 4 * c)
        channels.append(c)
        c *= 2
    for i, ch in enumerate(channels):
        g.norm(f'{p}norm{i}.', ch)
    return channels


def official_head(g, in_channels, encoder_in, num_extra, feature_order,
                  hidden, heads, points, enc_layers, enc_ffn, dec_layers,
                  dec_ffn, num_classes, num_queries, two_stage,
                  semantic_ce):
    """``sem_seg_head.pixel_decoder.*`` + ``sem_seg_head.predictor.*``."""
    p = 'sem_seg_head.pixel_decoder.'
    bb = sorted(encoder_in, reverse=feature_order == 'high2low')
    for i, idx in enumerate(bb):
        g.add(f'{p}input_proj.{i}.0.weight', hidden, in_channels[idx], 1, 1)
        g.add(f'{p}input_proj.{i}.0.bias', hidden)
        g.norm(f'{p}input_proj.{i}.1.', hidden)
    extra_in = in_channels[max(encoder_in)]
    for k in range(num_extra):
        i = len(bb) + k
        g.add(f'{p}input_proj.{i}.0.weight', hidden, extra_in, 3, 3)
        g.add(f'{p}input_proj.{i}.0.bias', hidden)
        g.norm(f'{p}input_proj.{i}.1.', hidden)
        extra_in = hidden
    levels = len(bb) + num_extra
    g.add(p + 'transformer.level_embed', levels, hidden)
    for lid in range(enc_layers):
        q = f'{p}transformer.encoder.layers.{lid}.'
        g.linear(q + 'self_attn.sampling_offsets.',
                 heads * levels * points * 2, hidden)
        g.linear(q + 'self_attn.attention_weights.', heads * levels * points,
                 hidden)
        g.linear(q + 'self_attn.value_proj.', hidden, hidden)
        g.linear(q + 'self_attn.output_proj.', hidden, hidden)
        g.norm(q + 'norm1.', hidden)
        g.linear(q + 'linear1.', enc_ffn, hidden)
        g.linear(q + 'linear2.', hidden, enc_ffn)
        g.norm(q + 'norm2.', hidden)
    g.add(p + 'mask_features.weight', hidden, hidden, 1, 1)
    g.add(p + 'mask_features.bias', hidden)
    g.add(p + 'adapter_1.weight', hidden, in_channels[0], 1, 1)
    g.norm(p + 'adapter_1.norm.', hidden)
    g.add(p + 'layer_1.weight', hidden, hidden, 3, 3)
    g.norm(p + 'layer_1.norm.', hidden)

    p = 'sem_seg_head.predictor.'
    if two_stage:
        g.linear(p + 'enc_output.', hidden, hidden)
        g.norm(p + 'enc_output_norm.', hidden)
    else:
        g.add(p + 'query_feat.weight', num_queries, hidden)
        g.add(p + 'query_embed.weight', num_queries, 4)
    g.linear(p + 'class_embed.', num_classes + int(semantic_ce), hidden)
    g.add(p + 'label_enc.weight', num_classes, hidden)
    for i in range(3):
        g.linear(f'{p}mask_embed.layers.{i}.', hidden, hidden)
    g.norm(p + 'decoder_norm.', hidden)
    # decoder.norm is the same LayerNorm object (alias)
    for k in ('weight', 'bias'):
        g.sd[p + 'decoder.norm.' + k] = g.sd[p + 'decoder_norm.' + k]
    for lid in range(dec_layers):
        q = f'{p}decoder.layers.{lid}.'
        g.linear(q + 'cross_attn.sampling_offsets.',
                 heads * levels * points * 2, hidden)
        g.linear(q + 'cross_attn.attention_weights.',
                 heads * levels * points, hidden)
        g.linear(q + 'cross_attn.value_proj.', hidden, hidden)
        g.linear(q + 'cross_attn.output_proj.', hidden, hidden)
        g.norm(q + 'norm1.', hidden)
        g.add(q + 'self_attn.in_proj_weight', 3 * hidden, hidden)
        g.add(q + 'self_attn.in_proj_bias', 3 * hidden)
        g.linear(q + 'self_attn.out_proj.', hidden, hidden)
        g.norm(q + 'norm2.', hidden)
        g.linear(q + 'linear1.', dec_ffn, hidden)
        g.linear(q + 'linear2.', hidden, dec_ffn)
        g.norm(q + 'norm3.', hidden)
    g.linear(p + 'decoder.ref_point_head.layers.0.', hidden, 2 * hidden)
    g.linear(p + 'decoder.ref_point_head.layers.1.', hidden, hidden)
    # one box MLP under 1 + 2 * dec_layers names
    box = [(hidden, hidden), (hidden, hidden), (4, hidden)]
    for i, shape in enumerate(box):
        g.linear(f'{p}_bbox_embed.layers.{i}.', *shape)
    for alias in [f'bbox_embed.{k}.' for k in range(dec_layers)] + \
            [f'decoder.bbox_embed.{k}.' for k in range(dec_layers)]:
        for i in range(3):
            for k in ('weight', 'bias'):
                g.sd[f'{p}{alias}layers.{i}.{k}'] = \
                    g.sd[f'{p}_bbox_embed.layers.{i}.{k}']
    g.add('criterion.empty_weight', num_classes + 1)


def r50_instance_layout(zeros=True, num_classes=80):
    g = _Gen(zeros)
    ch = official_resnet(g, 50, 64)
    official_head(g, ch, [1, 2, 3], 1, 'low2high', 256, 8, 4, 6, 2048, 9,
                  2048, num_classes, 300, True, False)
    return g.sd


def semantic_layout(zeros=True, num_classes=150, bn='FrozenBN'):
    g = _Gen(zeros)
    ch = official_resnet(g, 50, 64, bn)
    official_head(g, ch, [1, 2, 3], 0, 'high2low', 256, 8, 4, 6, 1024, 9,
                  2048, num_classes, 100, False, True)
    return g.sd


def swinl_layout(num_classes, zeros=True):
    g = _Gen(zeros)
    ch = official_swin(g, 192, [2, 2, 18, 2], [6, 12, 24, 48], 12)
    official_head(g, ch, [0, 1, 2, 3], 1, 'low2high', 256, 8, 4, 6, 2048, 9,
                  2048, num_classes, 300, True, False)
    return g.sd


# ----------------------------------------------------------------------
# Tiny models (the tiny base's sizes on a task config) and their official
# layouts (the sizes read back from the built model)
# ----------------------------------------------------------------------
TINY_BASE = osp.join(CONFIGS, '_base_', 'models', 'maskdino_tiny.py')
# The tests' tiny Swin (no config has one): stage widths 16 * 2**i.
TINY_SWIN = dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                 window_size=4)


def _dotted(prefix, value):
    """Nested dicts as ``{'prefix.a.b': leaf}`` config overrides."""
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for key, item in value.items():
        out.update(_dotted(f'{prefix}.{key}', item))
    return out


def tiny_options(backbone='resnet', **pixel_decoder):
    """Overrides that give a task config the head of
    ``configs/_base_/models/maskdino_tiny.py`` (``pixel_decoder`` entries
    added). Of the tiny ResNet only depth and width are taken: the task
    config's frozen BN stays, as in the official checkpoints (the tiny
    base's GN has no running statistics). ``backbone='swin'`` takes
    :data:`TINY_SWIN` instead."""
    tiny = Config.fromfile(TINY_BASE).tiny_model
    head = copy.deepcopy(tiny.panoptic_head)
    head.pixel_decoder.update(pixel_decoder)
    if backbone == 'swin':
        head.pixel_decoder.in_channels = [
            TINY_SWIN['embed_dims'] * 2**i for i in range(4)
        ]
        body = dict(TINY_SWIN, pretrain_img_size=64)
    else:
        body = dict(depth=tiny.backbone.depth,
                    base_channels=tiny.backbone.base_channels)
    return {
        **_dotted('model.panoptic_head', head),
        **_dotted('model.backbone', body)
    }


def official_layout(model, seed=0, backbone=None, **head):
    """Random official state dict with the sizes of ``model``; ``backbone``
    ('resnet' or 'swin', default: the model's) and ``head`` (arguments of
    :func:`official_head`) make a checkpoint that differs from it."""
    g = _Gen(False, seed)
    if backbone is None:
        backbone = 'swin' if hasattr(model.backbone, 'stages') else 'resnet'
    if backbone == 'swin':
        channels = official_swin(g, TINY_SWIN['embed_dims'],
                                 TINY_SWIN['depths'], TINY_SWIN['num_heads'],
                                 TINY_SWIN['window_size'])
    else:
        channels = official_resnet(g, model.backbone.depth,
                                   model.backbone.base_channels)
    mine = model.panoptic_head
    pd = mine.pixel_decoder
    enc, dec = pd.encoder.layers[0], mine.decoder.layers[0]
    args = dict(
        encoder_in=list(pd.encoder_in_indices),
        num_extra=pd.num_extra_levels,
        feature_order=pd.feature_order,
        hidden=mine.embed_dims,
        heads=enc.self_attn.num_heads,
        points=enc.self_attn.num_points,
        enc_layers=len(pd.encoder.layers),
        enc_ffn=enc.ffn.feedforward_channels,
        dec_layers=len(mine.decoder.layers),
        dec_ffn=dec.ffn.feedforward_channels,
        num_classes=mine.num_classes,
        num_queries=mine.num_queries,
        two_stage=mine.two_stage,
        semantic_ce=mine.semantic_ce)
    args.update(head)
    official_head(g, channels, **args)
    return g.sd


def build(config, options=None):
    model, _ = conv.build_target(config, options)
    return model


# ----------------------------------------------------------------------
# Full-size layouts: every key maps, strict load, counts
# ----------------------------------------------------------------------
@pytest.mark.integration  # full-size R50 / Swin-L models
@pytest.mark.parametrize(
    'config, layout, num_src, num_classes, num_filled',
    [(R50_INSTANCE, r50_instance_layout, 720, 80, 53),
     (R50_PANOPTIC, lambda: r50_instance_layout(num_classes=133), 720, 133,
      53),
     (R50_ADE, semantic_layout, 714, 150, 53),
     (R50_CITYSCAPES, lambda: semantic_layout(num_classes=19, bn='SyncBN'),
      767, 19, 0),
     (SWINL_PANOPTIC, lambda: swinl_layout(133), 816, 133, 0)],
    ids=[
        'r50_instance', 'r50_panoptic', 'ade_semantic',
        'cityscapes_semantic', 'swinl_panoptic'
    ])
def test_full_size_layouts(config, layout, num_src, num_classes,
                           num_filled):
    src = layout()
    assert len(src) == num_src
    model, cfg = conv.build_target(config)
    # class names for the checkpoint meta come from the test dataset
    meta = conv.dataset_meta_from_config(cfg, num_classes)
    assert len(meta['classes']) == num_classes
    state, report = conv.convert_state_dict(src, model)
    assert report.ok
    assert not report.unmapped and not report.missing
    assert list(state) == list(model.state_dict())
    model.load_state_dict(state, strict=True)
    # 6 box-MLP tensors x 19 names + 2 norm tensors x 2 names, written once
    tied = report.tied
    assert len(tied) == 8
    assert sum(len(v) for v in tied.values()) == 6 * 19 + 2 * 2
    assert len(tied['panoptic_head.bbox_embed.layers.2.weight']) == 19
    assert set(tied['panoptic_head.decoder.norm.weight']) == {
        'sem_seg_head.predictor.decoder_norm.weight',
        'sem_seg_head.predictor.decoder.norm.weight'
    }
    assert report.dropped == {
        'criterion.empty_weight': conv.DROPPED_KEYS['criterion.empty_weight']
    }
    assert report.permuted == {}
    semantic = config in (R50_ADE, R50_CITYSCAPES)
    assert model.panoptic_head.cls_embed.out_features == num_classes + int(
        semantic)
    # detectron2's FrozenBN has no num_batches_tracked (SyncBN has)
    assert len(report.filled) == num_filled


def test_r50_head_layout_matches_spec():
    """The generator reproduces the official head layout of spec 8.2:
    454 entries, 344 unique tensors, 28,603,092 head parameters."""
    src = r50_instance_layout()
    head = {k: v for k, v in src.items() if k.startswith('sem_seg_head.')}
    assert len(head) == 454
    unique = {id(v): v for v in head.values()}
    assert len(unique) == 344
    assert sum(v.numel() for v in unique.values()) == 28_603_092


# ----------------------------------------------------------------------
# Values at tiny widths
# ----------------------------------------------------------------------
# (official name, project name): one entry per kind of rule
EXPECTED_PAIRS = [
    ('backbone.stem.conv1.weight', 'backbone.conv1.weight'),
    ('backbone.stem.conv1.norm.running_var', 'backbone.bn1.running_var'),
    ('backbone.res3.0.conv2.norm.running_mean',
     'backbone.layer2.0.bn2.running_mean'),
    ('backbone.res4.0.shortcut.weight',
     'backbone.layer3.0.downsample.0.weight'),
    ('backbone.res5.0.shortcut.norm.bias',
     'backbone.layer4.0.downsample.1.bias'),
    ('backbone.res5.1.conv2.weight', 'backbone.layer4.1.conv2.weight'),
    ('sem_seg_head.pixel_decoder.input_proj.0.0.weight',
     'panoptic_head.pixel_decoder.input_proj.0.conv.weight'),
    ('sem_seg_head.pixel_decoder.input_proj.3.1.bias',
     'panoptic_head.pixel_decoder.input_proj.3.gn.bias'),
    ('sem_seg_head.pixel_decoder.transformer.level_embed',
     'panoptic_head.pixel_decoder.level_embed'),
    ('sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.'
     'sampling_offsets.weight', 'panoptic_head.pixel_decoder.encoder.'
     'layers.0.self_attn.sampling_offsets.weight'),
    ('sem_seg_head.pixel_decoder.transformer.encoder.layers.0.norm1.weight',
     'panoptic_head.pixel_decoder.encoder.layers.0.norms.0.weight'),
    ('sem_seg_head.pixel_decoder.transformer.encoder.layers.0.norm2.bias',
     'panoptic_head.pixel_decoder.encoder.layers.0.norms.1.bias'),
    ('sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight',
     'panoptic_head.pixel_decoder.encoder.layers.0.ffn.layers.0.0.weight'),
    ('sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear2.bias',
     'panoptic_head.pixel_decoder.encoder.layers.0.ffn.layers.1.bias'),
    ('sem_seg_head.pixel_decoder.mask_features.weight',
     'panoptic_head.pixel_decoder.mask_feature.weight'),
    ('sem_seg_head.pixel_decoder.adapter_1.weight',
     'panoptic_head.pixel_decoder.lateral_convs.0.conv.weight'),
    ('sem_seg_head.pixel_decoder.adapter_1.norm.weight',
     'panoptic_head.pixel_decoder.lateral_convs.0.gn.weight'),
    ('sem_seg_head.pixel_decoder.layer_1.weight',
     'panoptic_head.pixel_decoder.output_convs.0.conv.weight'),
    ('sem_seg_head.pixel_decoder.layer_1.norm.bias',
     'panoptic_head.pixel_decoder.output_convs.0.gn.bias'),
    ('sem_seg_head.predictor.enc_output.weight',
     'panoptic_head.enc_output.weight'),
    ('sem_seg_head.predictor.enc_output_norm.bias',
     'panoptic_head.enc_output_norm.bias'),
    ('sem_seg_head.predictor.class_embed.weight',
     'panoptic_head.cls_embed.weight'),
    ('sem_seg_head.predictor.label_enc.weight',
     'panoptic_head.dn_generator.label_embedding.weight'),
    ('sem_seg_head.predictor.mask_embed.layers.2.bias',
     'panoptic_head.mask_embed.layers.2.bias'),
    ('sem_seg_head.predictor.decoder_norm.weight',
     'panoptic_head.decoder.norm.weight'),
    ('sem_seg_head.predictor.decoder.layers.2.self_attn.in_proj_weight',
     'panoptic_head.decoder.layers.2.self_attn.attn.in_proj_weight'),
    ('sem_seg_head.predictor.decoder.layers.2.self_attn.out_proj.bias',
     'panoptic_head.decoder.layers.2.self_attn.attn.out_proj.bias'),
    ('sem_seg_head.predictor.decoder.layers.1.norm2.weight',
     'panoptic_head.decoder.layers.1.norms.0.weight'),
    ('sem_seg_head.predictor.decoder.layers.1.norm1.weight',
     'panoptic_head.decoder.layers.1.norms.1.weight'),
    ('sem_seg_head.predictor.decoder.layers.1.norm3.bias',
     'panoptic_head.decoder.layers.1.norms.2.bias'),
    ('sem_seg_head.predictor.decoder.layers.0.cross_attn.attention_weights.'
     'bias', 'panoptic_head.decoder.layers.0.cross_attn.attention_weights.'
     'bias'),
    ('sem_seg_head.predictor.decoder.layers.0.cross_attn.value_proj.weight',
     'panoptic_head.decoder.layers.0.cross_attn.value_proj.weight'),
    ('sem_seg_head.predictor.decoder.layers.0.linear1.weight',
     'panoptic_head.decoder.layers.0.ffn.layers.0.0.weight'),
    ('sem_seg_head.predictor.decoder.ref_point_head.layers.0.weight',
     'panoptic_head.decoder.ref_point_head.layers.0.weight'),
    ('sem_seg_head.predictor._bbox_embed.layers.2.weight',
     'panoptic_head.bbox_embed.layers.2.weight'),
]


@pytest.fixture(scope='module')
def tiny_instance():
    return build(R50_INSTANCE, tiny_options())


def test_tiny_instance_values(tiny_instance):
    src = official_layout(tiny_instance)
    state, report = conv.convert_state_dict(src, tiny_instance)
    tiny_instance.load_state_dict(state, strict=True)
    loaded = tiny_instance.state_dict()
    for official, mine in EXPECTED_PAIRS:
        assert torch.equal(loaded[mine], src[official]), (official, mine)
    # every converted tensor is some source tensor, unchanged
    for dst, sources in report.mapped.items():
        for name in sources:
            assert torch.equal(loaded[dst], src[name]), (dst, name)
    # filled BN counters are zero
    assert all(loaded[k].item() == 0 for k in report.filled)


def test_tied_tensors_are_one_module(tiny_instance):
    """All 19 box-MLP names land in the one shared head, which is the one
    the decoder refines anchors with; decoder_norm is decoder.norm."""
    src = official_layout(tiny_instance)
    state, report = conv.convert_state_dict(src, tiny_instance)
    names = report.tied['panoptic_head.bbox_embed.layers.0.weight']
    assert len(names) == 1 + 2 * 3
    assert 'sem_seg_head.predictor.decoder.bbox_embed.2.layers.0.weight' \
        in names
    head = tiny_instance.panoptic_head
    tiny_instance.load_state_dict(state, strict=True)
    # one parameter object for the box MLP in the whole model
    box_params = [n for n, _ in tiny_instance.named_parameters()
                  if 'bbox_embed' in n]
    assert len(box_params) == 6
    assert torch.equal(head.bbox_embed.layers[1].bias,
                       src['sem_seg_head.predictor.bbox_embed.1.layers.1.'
                           'bias'])


def test_differing_aliases_fail(tiny_instance):
    src = official_layout(tiny_instance)
    name = 'sem_seg_head.predictor.decoder.bbox_embed.1.layers.0.weight'
    src[name] = src[name].clone() + 1
    with pytest.raises(conv.ConversionError, match='tied entries that '
                       r'differ[\s\S]*decoder\.bbox_embed\.1\.layers\.0'):
        conv.convert_state_dict(src, tiny_instance)


def test_unmapped_missing_and_shape_errors(tiny_instance):
    src = official_layout(tiny_instance)
    src['sem_seg_head.predictor.foo.weight'] = torch.zeros(3)
    src['backbone.res2.0.conv9.weight'] = torch.zeros(3)
    del src['sem_seg_head.predictor.class_embed.bias']
    src['sem_seg_head.pixel_decoder.mask_features.bias'] = torch.zeros(7)
    with pytest.raises(conv.ConversionError) as err:
        conv.convert_state_dict(src, tiny_instance)
    msg = str(err.value)
    assert '2 source entries with no rule (unmapped)' in msg
    assert 'sem_seg_head.predictor.foo.weight' in msg
    assert 'backbone.res2.0.conv9.weight' in msg
    assert '1 model entries with no source (missing)' in msg
    assert 'panoptic_head.cls_embed.bias' in msg
    assert '1 shape mismatches' in msg
    assert 'mask_features.bias (7,) -> panoptic_head.pixel_decoder.' \
        'mask_feature.bias (32,)' in msg


def test_class_count_mismatch_is_a_shape_error(tiny_instance):
    src = official_layout(tiny_instance, num_classes=133)
    with pytest.raises(conv.ConversionError,
                       match=r'class_embed\.weight \(133, 32\)'):
        conv.convert_state_dict(src, tiny_instance)


def test_backbone_kind_mismatch(tiny_instance):
    src = official_layout(tiny_instance, backbone='swin')
    with pytest.raises(conv.ConversionError, match='Swin backbone but the '
                       'config builds ResNet'):
        conv.convert_state_dict(src, tiny_instance)


def test_tiny_swin_values():
    model = build(SWINL_INSTANCE, tiny_options(backbone='swin'))
    src = official_layout(model)
    state, report = conv.convert_state_dict(src, model)
    model.load_state_dict(state, strict=True)
    sd = model.state_dict()
    pairs = [('patch_embed.proj.weight', 'patch_embed.projection.weight'),
             ('layers.1.blocks.0.attn.qkv.bias',
              'stages.1.blocks.0.attn.w_msa.qkv.bias'),
             ('layers.2.blocks.1.attn.relative_position_bias_table',
              'stages.2.blocks.1.attn.w_msa.relative_position_bias_table'),
             ('layers.3.blocks.1.mlp.fc1.weight',
              'stages.3.blocks.1.ffn.layers.0.0.weight'),
             ('layers.0.blocks.1.mlp.fc2.bias',
              'stages.0.blocks.1.ffn.layers.1.bias'),
             ('norm3.weight', 'norm3.weight')]
    for official, mine in pairs:
        assert torch.equal(sd['backbone.' + mine],
                           src['backbone.' + official])
    # patch merging: channels reordered, same values
    red = src['backbone.layers.1.downsample.reduction.weight']
    mine = sd['backbone.stages.1.downsample.reduction.weight']
    assert not torch.equal(mine, red)
    assert torch.equal(mine.sort(1).values, red.sort(1).values)


def test_swin_patch_merging_reorder_is_exact():
    """Official PatchMerging (2x2 pixels concatenated as (0,0), (1,0),
    (0,1), (1,1)) with its weights equals mmdet's unfold-based
    PatchMerging with the converted weights."""
    torch.manual_seed(0)
    c, h, w = 6, 4, 6
    x = torch.randn(2, h * w, c)
    norm_w, norm_b = torch.randn(4 * c), torch.randn(4 * c)
    red = torch.randn(2 * c, 4 * c)

    xv = x.view(2, h, w, c)
    cat = torch.cat([xv[:, 0::2, 0::2], xv[:, 1::2, 0::2],
                     xv[:, 0::2, 1::2], xv[:, 1::2, 1::2]], -1)
    cat = cat.view(2, -1, 4 * c)
    official = torch.nn.functional.layer_norm(cat, (4 * c, ), norm_w,
                                              norm_b) @ red.t()

    merge = PatchMerging(c, 2 * c)
    merge.norm.weight.data = conv.swin_norm_to_unfold(norm_w)
    merge.norm.bias.data = conv.swin_norm_to_unfold(norm_b)
    merge.reduction.weight.data = conv.swin_reduction_to_unfold(red)
    mine, out_hw = merge(x, (h, w))
    assert out_hw == (h // 2, w // 2)
    torch.testing.assert_close(mine, official, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------
# Level orders
# ----------------------------------------------------------------------
def test_permute_msda_levels_brute_force():
    heads, levels, points, dim = 2, 3, 4, 5
    perm = [2, 0, 1]
    w = torch.randn(heads * levels * points * 2, dim)
    b = torch.randn(heads * levels * points)
    new_w = conv.permute_msda_levels(w, perm, heads, points, 2)
    new_b = conv.permute_msda_levels(b, perm, heads, points, 1)
    for h in range(heads):
        for j in range(levels):
            for p in range(points):
                for xy in range(2):
                    row = ((h * levels + j) * points + p) * 2 + xy
                    old = ((h * levels + perm[j]) * points + p) * 2 + xy
                    assert torch.equal(new_w[row], w[old])
                row = (h * levels + j) * points + p
                assert new_b[row] == b[(h * levels + perm[j]) * points + p]


def _ade_tiny(feature_order, num_extra_levels=0):
    opts = tiny_options(
        feature_order=feature_order, num_extra_levels=num_extra_levels)
    opts['model.panoptic_head.num_queries'] = 10
    # the pixel decoder passes its level count to the attention layers
    return build(R50_ADE, opts)


@pytest.mark.parametrize('num_extra', [0, 1])
def test_level_permutation_gives_the_same_model(num_extra):
    """A single-stage checkpoint ordered 'high2low' converted for a model
    ordered 'low2high': projections, level embeddings and every MSDA level
    axis are permuted, and both models predict the same."""
    same = _ade_tiny('high2low', num_extra)
    src = official_layout(same, seed=1)
    other = _ade_tiny('low2high', num_extra)
    state_same, rep_same = conv.convert_state_dict(src, same)
    state_other, rep_other = conv.convert_state_dict(src, other)
    assert rep_same.permuted == {}
    levels = 3 + num_extra
    # high2low [extra, 1/32, 1/16, 1/8] -> low2high [1/8, 1/16, 1/32, extra]
    expected = [levels - 1 - j for j in range(levels)]
    assert rep_other.permuted['level_embed, encoder MSDA'] == expected
    assert rep_other.permuted['decoder MSDA'] == expected
    same.load_state_dict(state_same, strict=True)
    other.load_state_dict(state_other, strict=True)

    pd = 'panoptic_head.pixel_decoder.'
    src_embed = src['sem_seg_head.pixel_decoder.transformer.level_embed']
    assert torch.equal(state_other[pd + 'level_embed'][0], src_embed[-1])
    # official input_proj.0 (high2low) projects res5 = input_proj.2 here
    assert torch.equal(
        state_other[pd + 'input_proj.2.conv.weight'],
        src['sem_seg_head.pixel_decoder.input_proj.0.0.weight'])

    torch.manual_seed(0)
    feats = [torch.randn(1, c, 64 // s, 64 // s)
             for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    with torch.no_grad():
        out_same = same.panoptic_head(feats, [_meta()])
        out_other = other.panoptic_head(feats, [_meta()])
    for k in ('cls_scores', 'mask_preds', 'bbox_preds'):
        torch.testing.assert_close(out_other[k], out_same[k], rtol=1e-4,
                                   atol=1e-4)
    # and the outputs depend on the level embeddings (not trivially equal)
    with torch.no_grad():
        other.panoptic_head.pixel_decoder.level_embed.data = \
            other.panoptic_head.pixel_decoder.level_embed.data.flip(0)
        out_flip = other.panoptic_head(feats, [_meta()])
    assert not torch.allclose(out_flip['cls_scores'], out_same['cls_scores'],
                              atol=1e-3)


def _meta():
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(
        img_shape=(64, 64), ori_shape=(64, 64), batch_input_shape=(64, 64),
        pad_shape=(64, 64), scale_factor=(1.0, 1.0)))


def test_two_stage_order_mismatch_is_refused():
    model = build(R50_INSTANCE, tiny_options())  # low2high, two-stage
    src = official_layout(model, feature_order='high2low')
    with pytest.raises(conv.ConversionError, match='feature_order'):
        conv.convert_state_dict(src, model)


# ----------------------------------------------------------------------
# Files and the command line
# ----------------------------------------------------------------------
def _run_tool(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    """tools/model_converters/maskdino2mmdet.py as a command."""
    return subprocess.run([sys.executable, TOOL, *args],
                          cwd=cwd,
                          capture_output=True,
                          text=True)


@pytest.mark.integration  # subprocess
def test_file_formats_and_cli(tmp_path, tiny_instance):
    src = official_layout(tiny_instance)
    pth = str(tmp_path / 'official.pth')
    torch.save(dict(model=src, iteration=5), pth)
    bare = str(tmp_path / 'bare.pth')
    torch.save(src, bare)
    pkl = str(tmp_path / 'official.pkl')
    with open(pkl, 'wb') as f:
        pickle.dump(dict(model={k: v.numpy() for k, v in src.items()},
                         __author__='IDEA'), f)

    opts = [f'{k}={v}' for k, v in tiny_options().items()]
    outs, text = [], ''
    for i, path in enumerate([pth, bare, pkl]):
        dst = str(tmp_path / f'converted{i}.pth')
        proc = _run_tool(path, dst, '--config', R50_INSTANCE, '--cfg-options',
                         *opts)
        assert proc.returncode == 0, proc.stderr
        text += proc.stdout
        outs.append(torch.load(dst, weights_only=True))
    assert 'unmapped: 0, missing: 0, shape mismatches: 0' in text
    assert 'strict load into the model: OK' in text
    for ckpt in outs[1:]:
        assert ckpt['state_dict'].keys() == outs[0]['state_dict'].keys()
        for k, v in ckpt['state_dict'].items():
            assert torch.equal(v, outs[0]['state_dict'][k])
    meta = outs[2]['meta']
    assert len(meta['dataset_meta']['classes']) == 80
    assert meta['dataset_meta']['classes'][0] == 'person'
    assert meta['converter']['source_format'] == 'pkl'
    assert meta['converter']['source_author'] == 'IDEA'
    assert meta['converter']['config'] == 'configs/' \
        'maskdino_r50_coco_instance.py'
    import hashlib
    with open(pkl, 'rb') as f:
        assert meta['converter']['source_sha256'] == hashlib.sha256(
            f.read()).hexdigest()

    # the output loads strictly with mmengine into a freshly built model
    model = build(R50_INSTANCE, tiny_options())
    ckpt = load_checkpoint(model, str(tmp_path / 'converted2.pth'),
                           map_location='cpu', strict=True)
    assert ckpt['meta']['dataset_meta']['classes'][-1] == 'toothbrush'
    assert torch.equal(model.panoptic_head.cls_embed.weight,
                       src['sem_seg_head.predictor.class_embed.weight'])


@pytest.mark.integration  # subprocess
def test_cli_reports_errors(tmp_path, tiny_instance):
    src = official_layout(tiny_instance)
    src['sem_seg_head.predictor.foo.weight'] = torch.zeros(1)
    path = str(tmp_path / 'bad.pth')
    torch.save(dict(model=src), path)
    dst = str(tmp_path / 'out.pth')
    opts = [f'{k}={v}' for k, v in tiny_options().items()]
    proc = _run_tool(path, dst, '--config', R50_INSTANCE, '--cfg-options',
                     *opts)
    assert proc.returncode == 1
    assert 'sem_seg_head.predictor.foo.weight' in proc.stderr
    assert not osp.exists(dst)


def test_bad_files(tmp_path):
    with pytest.raises(conv.ConversionError, match='not found'):
        conv.load_official_checkpoint(str(tmp_path / 'nope.pth'))
    evil = str(tmp_path / 'evil.pkl')
    with open(evil, 'wb') as f:
        pickle.dump(dict(model={'x': np.zeros(2)}, run=print), f)
    with pytest.raises(conv.ConversionError, match='refused global'):
        conv.load_official_checkpoint(evil)
    listed = str(tmp_path / 'list.pth')
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(conv.ConversionError, match='not a dict'):
        conv.load_official_checkpoint(listed)
    other = str(tmp_path / 'other.pth')
    torch.save(dict(optimizer=dict(lr=1.0), step=3), other)
    with pytest.raises(conv.ConversionError, match='has no state dict'):
        conv.load_official_checkpoint(other)


@pytest.mark.integration  # subprocess
def test_cli_help_from_another_directory(tmp_path):
    proc = _run_tool('--help', cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert '--config' in proc.stdout
