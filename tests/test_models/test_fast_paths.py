"""The fast paths give the straightforward results: deformable attention
against mmcv's PyTorch fallback (module and whole model, values and
gradients; the function is tested in tests/test_layers/test_msda.py), the
layers that build the fast modules, the blockwise FFN, the inference-mode
predict, and mask resizing limited to the queries a task uses."""
import copy
from contextlib import contextmanager

import pytest
import torch
from conftest import make_sample, tiny_cfg
from mmcv.cnn.bricks.transformer import FFN
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.layers.transformer import (
    DeformableDetrTransformerEncoder, DinoTransformerDecoder)
from mmdet.registry import MODELS

from projects.mask_dino.layers import blockwise_ffn
from projects.mask_dino.layers.blockwise_ffn import BlockwiseFFN
from projects.mask_dino.layers.msda import FastMultiScaleDeformableAttention
from projects.mask_dino.layers.transformer_decoder import \
    MaskDINOTransformerDecoder
from projects.mask_dino.layers.transformer_layers import \
    MaskDINOTransformerEncoder


# ----------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------
def _module_pair(batch_first=True):
    torch.manual_seed(0)
    cfg = dict(embed_dims=16, num_heads=2, num_levels=2, num_points=3,
               dropout=0.0, batch_first=batch_first)
    ref = MultiScaleDeformableAttention(**cfg)
    ref.init_weights()
    # non-trivial offsets and attention weights
    for p in ref.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    fast = FastMultiScaleDeformableAttention(**cfg)
    fast.load_state_dict(ref.state_dict())
    return ref.eval(), fast.eval()


@pytest.mark.parametrize('batch_first', [True, False])
@pytest.mark.parametrize('ref_dims', [2, 4])
def test_module_equals_mmcv_module(batch_first, ref_dims):
    ref, fast = _module_pair(batch_first)
    assert type(fast) is FastMultiScaleDeformableAttention
    assert type(ref) is MultiScaleDeformableAttention
    assert list(fast.state_dict()) == list(ref.state_dict())
    shapes = torch.tensor([[6, 5], [3, 3]])
    keys, queries, batch = 39, 11, 2
    g = torch.Generator().manual_seed(1)
    query = torch.randn(batch, queries, 16, generator=g)
    value = torch.randn(batch, keys, 16, generator=g)
    pos = torch.randn(batch, queries, 16, generator=g)
    refs = torch.rand(batch, queries, 2, ref_dims, generator=g)
    padding = torch.zeros(batch, keys, dtype=torch.bool)
    padding[1, -5:] = True
    if not batch_first:
        query, value, pos = (t.transpose(0, 1) for t in (query, value, pos))
    kwargs = dict(
        query=query,
        value=value,
        query_pos=pos,
        key_padding_mask=padding,
        reference_points=refs,
        spatial_shapes=shapes,
        level_start_index=torch.tensor([0, 30]))
    out = fast(**kwargs)
    expected = ref(**kwargs)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # self-attention call (value = query, no identity) as in the encoder
    kwargs.update(value=None, key_padding_mask=None)
    if batch_first:
        kwargs.update(query=value[:, :keys], query_pos=None,
                      reference_points=torch.rand(batch, keys, 2, ref_dims))
        torch.testing.assert_close(fast(**kwargs), ref(**kwargs), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize('ref_dims', [2, 4])
def test_module_projecting_samples_equals_mmcv_module(ref_dims):
    """Few queries over many keys (decoder cross-attention): the raw values
    are sampled and the samples projected (``value_proj`` is not run on the
    keys), as many queries as keys (encoder) project first; values and
    gradients equal mmcv's project-then-sample."""
    ref, fast = _module_pair()
    shapes = torch.tensor([[20, 30], [10, 15]])
    keys, queries, batch = 750, 3, 2
    value_proj_calls = []
    fast.value_proj.register_forward_hook(
        lambda module, args, out: value_proj_calls.append(args[0].shape[1]))
    g = torch.Generator().manual_seed(2)
    query = torch.randn(batch, queries, 16, generator=g)
    value = torch.randn(batch, keys, 16, generator=g)
    padding = torch.zeros(batch, keys, dtype=torch.bool)
    padding[0, 600:] = True
    kwargs = dict(
        key_padding_mask=padding,
        reference_points=torch.rand(batch, queries, 2, ref_dims,
                                    generator=g),
        spatial_shapes=shapes,
        level_start_index=torch.tensor([0, 600]))
    grads = []
    for module in (fast, ref):
        module.zero_grad()
        q, v = query.clone().requires_grad_(), value.clone().requires_grad_()
        out = module(q, value=v, **kwargs)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() \
            .backward()
        grads.append([out, q.grad, v.grad] +
                     [p.grad for p in module.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the padded keys get no gradient
    assert (grads[0][2][0, 600:] == 0).all()
    # the decoder-like call sampled before projecting; an encoder-like call
    # (a query per key) projects the keys first
    assert value_proj_calls == []
    with torch.no_grad():
        fast(value, value=value, **dict(
            kwargs, reference_points=torch.rand(batch, keys, 2, ref_dims,
                                                generator=g)))
    assert value_proj_calls == [keys]


def test_module_rejects_bad_reference_points():
    _, fast = _module_pair()
    with pytest.raises(ValueError, match='reference_points'):
        fast(torch.randn(1, 2, 16), value=torch.randn(1, 39, 16),
             reference_points=torch.rand(1, 2, 2, 3),
             spatial_shapes=torch.tensor([[6, 5], [3, 3]]),
             level_start_index=torch.tensor([0, 30]))


# ----------------------------------------------------------------------
# the blockwise FFN
# ----------------------------------------------------------------------
@pytest.mark.parametrize('batch_first', [True, False])
def test_blockwise_ffn_equals_ffn(monkeypatch, batch_first):
    torch.manual_seed(0)
    cfg = dict(embed_dims=8, feedforward_channels=16, ffn_drop=0.0)
    ref = FFN(**cfg)
    fast = BlockwiseFFN(**cfg)
    fast.load_state_dict(ref.state_dict())
    assert type(fast) is BlockwiseFFN
    assert list(fast.state_dict()) == list(ref.state_dict())
    monkeypatch.setattr(blockwise_ffn, 'BLOCK_TOKENS', 4)
    x = torch.randn(2, 11, 8) if batch_first else torch.randn(11, 2, 8)
    identity = torch.randn_like(x)
    blocks = []
    orig = fast.layers.forward
    fast.layers.forward = lambda t: (blocks.append(t.shape), orig(t))[1]
    with torch.no_grad():
        for args in ((x, ), (x, identity)):
            torch.testing.assert_close(fast(*args), ref(*args))
    token_dim = 1 if batch_first else 0
    assert [b[token_dim] for b in blocks] == [4, 4, 3] * 2
    # with autograd: one call, as mmcv
    blocks.clear()
    torch.testing.assert_close(fast(x), ref(x))
    assert len(blocks) == 1


# ----------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------
def _tiny_model():
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg())
    model.init_weights()
    return model


@contextmanager
def _mmcv_fallback(monkeypatch, enabled=True):
    """Every fast module runs mmcv's own forward (on CPU:
    ``multi_scale_deformable_attn_pytorch``) inside the context."""
    with monkeypatch.context() as patch:
        if enabled:
            patch.setattr(FastMultiScaleDeformableAttention, 'forward',
                          MultiScaleDeformableAttention.forward)
        yield


def _samples():
    return [
        make_sample(64, 64, [[4, 4, 30, 40], [30, 10, 60, 30]], [1, 2]),
        make_sample(64, 64, [[0, 0, 64, 32]], [0]),
    ]


def test_encoder_and_decoder_use_the_fast_module():
    model = _tiny_model()
    head = model.panoptic_head
    encoder = [m for m in head.pixel_decoder.modules()
               if isinstance(m, MultiScaleDeformableAttention)]
    decoder = [m for m in head.decoder.modules()
               if isinstance(m, MultiScaleDeformableAttention)]
    assert len(encoder) == head.pixel_decoder.encoder.num_layers
    assert len(decoder) == head.decoder.num_layers
    assert all(
        type(m) is FastMultiScaleDeformableAttention
        for m in encoder + decoder)
    ffns = [
        m for m in head.pixel_decoder.encoder.modules()
        if isinstance(m, BlockwiseFFN)
    ]
    assert len(ffns) == head.pixel_decoder.encoder.num_layers


def _same_modules(ours, theirs):
    """Same state dict (keys, order and values) and same module names."""
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (key, a), b in zip(ours.state_dict().items(),
                           theirs.state_dict().values()):
        assert torch.equal(a, b), key
    assert [n for n, _ in ours.named_modules()] == \
        [n for n, _ in theirs.named_modules()]


def test_fast_layers_build_like_mmdet_layers():
    """The encoder / decoder that build the fast modules have mmdet's
    state-dict keys (checkpoints and the converter keep working) and, for
    a given seed, its initial values; only the module types differ."""
    head = tiny_cfg().panoptic_head
    built = MODELS.build(head)
    encoder_cfg = head.pixel_decoder.encoder.to_dict()
    decoder_cfg = head.decoder.to_dict()
    decoder_cfg.pop('type')
    decoder_cfg.pop('with_cp')
    # the layer configs with the width and levels the head passed down
    encoder_cfg['layer_cfg'] = built.pixel_decoder.encoder.layer_cfg
    decoder_cfg['layer_cfg'] = built.decoder.layer_cfg
    pairs = [(MaskDINOTransformerEncoder, DeformableDetrTransformerEncoder,
              encoder_cfg),
             (MaskDINOTransformerDecoder, DinoTransformerDecoder,
              decoder_cfg)]
    for ours_cls, mmdet_cls, cfg in pairs:
        torch.manual_seed(0)
        ours = ours_cls(**copy.deepcopy(cfg))
        torch.manual_seed(0)
        theirs = mmdet_cls(**copy.deepcopy(cfg))
        _same_modules(ours, theirs)
    layer = ours.layers[0]
    assert type(layer.cross_attn) is FastMultiScaleDeformableAttention
    assert type(layer.ffn) is FFN
    with pytest.raises(ValueError, match='num_cp'):
        MaskDINOTransformerEncoder(**encoder_cfg, num_cp=1)


def test_fast_types_are_registered():
    for name in ('FastMultiScaleDeformableAttention', 'BlockwiseFFN',
                 'MaskDINOEncoderLayer', 'MaskDINODecoderLayer',
                 'MaskDINOTransformerEncoder'):
        assert MODELS.get(name).__name__ == name


def test_model_predict_and_loss_equal_mmcv_path(monkeypatch):
    fast = _tiny_model()
    ref = copy.deepcopy(fast)
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator()
                         .manual_seed(3))
    fast.eval(), ref.eval()
    with torch.no_grad():
        out_fast = fast.predict(inputs, _samples())
        with _mmcv_fallback(monkeypatch):
            out_ref = ref.predict(inputs, _samples())
    for a, b in zip(out_fast, out_ref):
        a, b = a.pred_instances, b.pred_instances
        assert len(a) == len(b) > 0
        assert torch.equal(a.labels, b.labels)
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.bboxes, b.bboxes, rtol=0, atol=1e-4)
        assert (a.masks != b.masks).float().mean() < 1e-3

    fast.train(), ref.train()
    losses = {}
    for name, model in (('fast', fast), ('ref', ref)):
        torch.manual_seed(5)  # same denoising noise and point samples
        with _mmcv_fallback(monkeypatch, enabled=name == 'ref'):
            loss_dict = model.loss(inputs, _samples())
            total, _ = model.parse_losses(loss_dict)
            total.backward()
        losses[name] = (loss_dict, {
            k: p.grad.clone()
            for k, p in model.named_parameters() if p.grad is not None
        })
    (loss_fast, grad_fast), (loss_ref, grad_ref) = losses['fast'], losses[
        'ref']
    assert loss_fast.keys() == loss_ref.keys()
    for key in loss_ref:
        torch.testing.assert_close(
            loss_fast[key], loss_ref[key], rtol=1e-5, atol=1e-5, msg=key)
    assert grad_fast.keys() == grad_ref.keys()
    sampling = 'pixel_decoder.encoder.layers.0.self_attn.sampling_offsets'
    assert any(sampling in k for k in grad_ref)
    for key in grad_ref:
        scale = max(grad_ref[key].abs().max().item(), 1e-3)
        torch.testing.assert_close(
            grad_fast[key], grad_ref[key], rtol=0, atol=1e-4 * scale,
            msg=key)


def test_predict_runs_in_inference_mode_only_without_grad():
    model = _tiny_model().eval()
    inputs = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast = model.predict(inputs, _samples()[:1])[0].pred_instances
    assert fast.scores.is_inference() and fast.masks.is_inference()
    plain = model.predict(inputs, _samples()[:1])[0].pred_instances
    assert not plain.scores.is_inference()
    torch.testing.assert_close(fast.scores, plain.scores.detach())
    assert torch.equal(fast.masks, plain.masks)
    assert torch.equal(fast.labels, plain.labels)


@contextmanager
def _count_resized_maps(monkeypatch):
    """Record the number of maps of every ``F.interpolate`` call."""
    counts = []
    interpolate = torch.nn.functional.interpolate

    def counting(input, *args, **kwargs):
        counts.append(input.shape[0])
        return interpolate(input, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.functional, 'interpolate', counting)
        yield counts


def _fusion_head(**test_cfg):
    cfg = dict(instance_on=False, panoptic_on=False, semantic_on=False)
    cfg.update(test_cfg)
    return MODELS.build(
        dict(type='MaskDINOFusionHead', num_things_classes=2,
             num_stuff_classes=0, test_cfg=cfg))


def test_only_used_masks_are_resized(monkeypatch):
    """Instance results resize the masks of the selected queries only
    (official: all of them) and equal those of a run that resizes all;
    the semantic map resizes every query's mask."""
    torch.manual_seed(0)
    num_queries, top_k = 20, 7
    # classes: queries 3..9 score high for class 0, every other pair low
    cls = torch.full((1, num_queries, 2), -6.0)
    cls[0, 3:3 + top_k, 0] = torch.linspace(4, 2, top_k)
    masks = torch.randn(1, num_queries, 16, 16) * 3
    boxes = torch.rand(1, num_queries, 4)
    metas = [dict(batch_input_shape=(64, 64), img_shape=(60, 56),
                  ori_shape=(30, 28), scale_factor=(2.0, 2.0))]

    def run(**test_cfg):
        head = _fusion_head(max_per_image=top_k, **test_cfg)
        with _count_resized_maps(monkeypatch) as counts:
            out = head.predict(cls, masks, boxes, metas)[0]
        return out, counts

    alone, counts = run(instance_on=True)
    # one upsampling to the canvas, one rescaling to ori_shape
    assert counts == [top_k, top_k]
    # the semantic map needs every mask resized, for both tasks
    both, counts = run(instance_on=True, semantic_on=True)
    assert counts[0] == num_queries
    ins, ins_all = alone['ins_results'], both['ins_results']
    assert sorted(ins.labels.tolist()) == [0] * top_k
    assert torch.equal(ins.scores, ins_all.scores)
    assert torch.equal(ins.masks, ins_all.masks)
    assert torch.equal(ins.bboxes, ins_all.bboxes)
    _, counts = run(semantic_on=True)
    assert counts[0] == num_queries
