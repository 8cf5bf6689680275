"""The width and the level count are stated once: ``MaskDINOHead`` passes
``embed_dims`` to its pixel decoder and decoder, the pixel decoder passes
its width and levels to the encoder layers and the positional encoding,
and the head passes the levels to the decoder's cross-attention."""
import pytest
from conftest import tiny_cfg
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

from projects.mask_dino.utils.config_ops import pass_down_at

# (config path under panoptic_head, attention / FFN key) pairs of every
# part whose width the head sets
ENCODER_PARTS = ('self_attn_cfg', 'ffn_cfg')
DECODER_PARTS = ('self_attn_cfg', 'cross_attn_cfg', 'ffn_cfg')


def _build(cfg):
    init_default_scope('mmdet')
    return MODELS.build(cfg)


def _widths(head):
    """Every width the head's parts were built with, by name."""
    pixel_decoder = head.pixel_decoder
    widths = {
        'level_embed': pixel_decoder.level_embed.shape[1],
        'positional_encoding': 2 * pixel_decoder.positional_encoding.num_feats,
        'decoder.norm': head.decoder.norm.normalized_shape[0],
    }
    for i, proj in enumerate(pixel_decoder.input_proj):
        widths[f'input_proj.{i}'] = proj.conv.out_channels
    if head.with_mask:
        widths['mask_feature'] = pixel_decoder.mask_feature.out_channels
    for i, layer in enumerate(pixel_decoder.encoder.layers):
        widths[f'encoder.{i}.self_attn'] = layer.self_attn.embed_dims
        widths[f'encoder.{i}.ffn'] = layer.ffn.embed_dims
    for i, layer in enumerate(head.decoder.layers):
        widths[f'decoder.{i}.self_attn'] = layer.self_attn.embed_dims
        widths[f'decoder.{i}.cross_attn'] = layer.cross_attn.embed_dims
        widths[f'decoder.{i}.ffn'] = layer.ffn.embed_dims
    return widths


def test_pass_down_at_sets_nested_keys_and_refuses():
    cfg = dict(layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64)))
    out = pass_down_at(cfg, 'layer_cfg.ffn_cfg', 'Owner', 'encoder',
                       embed_dims=32)
    assert out == dict(
        layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64, embed_dims=32)))
    assert cfg == dict(layer_cfg=dict(ffn_cfg=dict(feedforward_channels=64)))
    # missing configs along the path are created; None passes nothing
    assert pass_down_at({}, 'a.b', 'Owner', 'x', c=1) == dict(a=dict(b=dict(
        c=1)))
    assert pass_down_at({}, 'a.b', 'Owner', 'x', c=None) == {}
    with pytest.raises(
            ValueError,
            match=r'encoder\.layer_cfg\.ffn_cfg\.embed_dims=32 contradicts '
            r'embed_dims=16 of Owner, which passes it down'):
        pass_down_at(out, 'layer_cfg.ffn_cfg', 'Owner', 'encoder',
                     embed_dims=16)


@pytest.mark.parametrize('task,levels', [('instance', 4), ('panoptic', 4),
                                         ('semantic', 3)])
def test_tiny_configs_state_the_width_once_and_build_it(task, levels):
    cfg = tiny_cfg(task)
    head_cfg = cfg.panoptic_head
    assert head_cfg.embed_dims == 32
    pixel_decoder = head_cfg.pixel_decoder
    assert 'feat_channels' not in pixel_decoder
    assert 'out_channels' not in pixel_decoder
    assert 'positional_encoding' not in pixel_decoder or \
        'num_feats' not in pixel_decoder.positional_encoding
    for key in ENCODER_PARTS:
        part = pixel_decoder.encoder.layer_cfg[key]
        assert 'embed_dims' not in part and 'num_levels' not in part
    for key in DECODER_PARTS:
        part = head_cfg.decoder.layer_cfg[key]
        assert 'embed_dims' not in part and 'num_levels' not in part

    head = _build(cfg).panoptic_head
    widths = _widths(head)
    assert set(widths.values()) == {32}, widths
    assert head.num_levels == head.pixel_decoder.num_levels == levels
    for layer in head.pixel_decoder.encoder.layers:
        assert layer.self_attn.num_levels == levels
    for layer in head.decoder.layers:
        assert layer.cross_attn.num_levels == levels
    assert head.pixel_decoder.level_embed.shape == (levels, 32)


def test_one_embed_dims_resizes_every_part():
    cfg = tiny_cfg('instance')
    cfg.panoptic_head.embed_dims = 64
    head = _build(cfg).panoptic_head
    widths = _widths(head)
    assert set(widths.values()) == {64}, widths
    assert head.cls_embed.in_features == 64
    assert head.decoder.ref_point_head.layers[0].in_features == 2 * 64


def test_restating_the_same_width_and_levels_is_accepted():
    """Older configs (and converted checkpoints' configs) repeat them."""
    cfg = tiny_cfg('instance')
    head_cfg = cfg.panoptic_head
    head_cfg.pixel_decoder.update(feat_channels=32, out_channels=32)
    head_cfg.pixel_decoder.positional_encoding = dict(
        num_feats=16, normalize=True)
    for key in ENCODER_PARTS:
        head_cfg.pixel_decoder.encoder.layer_cfg[key].embed_dims = 32
    head_cfg.pixel_decoder.encoder.layer_cfg.self_attn_cfg.num_levels = 4
    for key in DECODER_PARTS:
        head_cfg.decoder.layer_cfg[key].embed_dims = 32
    head_cfg.decoder.layer_cfg.cross_attn_cfg.num_levels = 4
    restated = _build(cfg).state_dict()
    stated_once = _build(tiny_cfg('instance')).state_dict()
    assert list(restated) == list(stated_once)
    assert all(restated[k].shape == stated_once[k].shape for k in restated)


@pytest.mark.parametrize('path,value,message', [
    ('pixel_decoder.feat_channels', 64,
     r'pixel_decoder\.feat_channels=64 contradicts feat_channels=32 of '
     r'MaskDINOHead \(embed_dims\)'),
    ('pixel_decoder.out_channels', 64,
     r'pixel_decoder\.out_channels=64 contradicts out_channels=32 of '
     r'MaskDINOHead \(embed_dims\)'),
    ('pixel_decoder.positional_encoding.num_feats', 128,
     r'positional_encoding\.num_feats=128 contradicts num_feats=16 of '
     r'MaskDINOPixelDecoder \(feat_channels // 2\)'),
    ('pixel_decoder.encoder.layer_cfg.self_attn_cfg.embed_dims', 64,
     r'encoder\.layer_cfg\.self_attn_cfg\.embed_dims=64 contradicts '
     r'embed_dims=32 of MaskDINOPixelDecoder \(feat_channels\)'),
    ('pixel_decoder.encoder.layer_cfg.ffn_cfg.embed_dims', 64,
     r'encoder\.layer_cfg\.ffn_cfg\.embed_dims=64 contradicts '
     r'embed_dims=32'),
    ('pixel_decoder.encoder.layer_cfg.self_attn_cfg.num_levels', 3,
     r'encoder\.layer_cfg\.self_attn_cfg\.num_levels=3 contradicts '
     r'num_levels=4 of MaskDINOPixelDecoder'),
    ('decoder.embed_dims', 64,
     r'decoder\.embed_dims=64 contradicts embed_dims=32 of MaskDINOHead'),
    ('decoder.layer_cfg.self_attn_cfg.embed_dims', 64,
     r'layer_cfg\.self_attn_cfg\.embed_dims=64 contradicts embed_dims=32 '
     r'of MaskDINOTransformerDecoder \(embed_dims\)'),
    ('decoder.layer_cfg.cross_attn_cfg.embed_dims', 64,
     r'layer_cfg\.cross_attn_cfg\.embed_dims=64 contradicts embed_dims=32'),
    ('decoder.layer_cfg.ffn_cfg.embed_dims', 64,
     r'layer_cfg\.ffn_cfg\.embed_dims=64 contradicts embed_dims=32'),
    ('decoder.layer_cfg.cross_attn_cfg.num_levels', 5,
     r'layer_cfg\.cross_attn_cfg\.num_levels=5 contradicts num_levels=4 '
     r'of MaskDINOTransformerDecoder \(num_levels\)'),
])
def test_a_contradicting_width_or_level_count_is_a_build_error(
        path, value, message):
    cfg = tiny_cfg('instance')
    *parents, key = path.split('.')
    part = cfg.panoptic_head
    for parent in parents:
        part = part.setdefault(parent, {})
    part[key] = value
    with pytest.raises(ValueError, match=message):
        _build(cfg)
