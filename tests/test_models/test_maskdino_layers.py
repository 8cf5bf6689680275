"""Pixel decoder, transformer decoder and head internals, checked on
values with tiny widths."""
import math

import pytest
import torch
from conftest import tiny_cfg
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample



def _feats(batch=2, size=64, channels=(8, 16, 32, 64)):
    return [
        torch.randn(batch, c, size // s, size // s)
        for c, s in zip(channels, (4, 8, 16, 32))
    ]


def _identity_encoder(pixel_decoder):
    """Replace the deformable encoder by the identity to expose the
    level order and projections."""

    def forward(query, **kwargs):
        return query

    pixel_decoder.encoder.forward = forward


def _encoder_order_maps(memory):
    """The (B, C, h, w) maps of an ``EncoderMemory``, in encoder order."""
    maps = []
    for (h, w), start in zip(memory.level_shapes,
                             memory.level_start_index.tolist()):
        tokens = memory.memory[:, start:start + h * w]
        maps.append(tokens.transpose(1, 2).reshape(len(tokens), -1, h, w))
    return maps[::-1]


@pytest.mark.parametrize('order', ['low2high', 'high2low'])
def test_pixel_decoder_level_order(seed, order):
    cfg = tiny_cfg().panoptic_head
    cfg.pixel_decoder.feature_order = order
    pd = MODELS.build(cfg).pixel_decoder  # the head passes its width
    pd.init_weights()
    pd.eval()
    feats = _feats()
    # Official input_proj index mapping.
    first_in = pd.input_proj[0].conv.in_channels
    assert first_in == (16 if order == 'low2high' else 64)
    assert pd.input_proj[3].conv.in_channels == 64  # extra on raw res5
    assert pd.input_proj[3].conv.stride == (2, 2)
    _identity_encoder(pd)
    pd.level_embed.data.zero_()
    with torch.no_grad():
        mask_features, memory = pd(feats)
        outs = _encoder_order_maps(memory)
        res3 = pd.input_proj[0 if order == 'low2high' else 2](feats[1])
        res5 = pd.input_proj[2 if order == 'low2high' else 0](feats[3])
        extra = pd.input_proj[3](feats[3])
    sizes = [o.shape[-1] for o in outs]
    if order == 'low2high':
        assert sizes == [8, 4, 2, 1]
        torch.testing.assert_close(outs[0], res3)
        torch.testing.assert_close(outs[3], extra)
    else:
        assert sizes == [1, 2, 4, 8]
        torch.testing.assert_close(outs[0], extra)
        torch.testing.assert_close(outs[1], res5)
    # FPN: res2 lateral + upsampled highest-resolution encoder map.
    high = outs[0] if order == 'low2high' else outs[-1]
    with torch.no_grad():
        y = pd.lateral_convs[0](feats[0]) + torch.nn.functional.interpolate(
            high, size=(16, 16), mode='bilinear', align_corners=False)
        expected = pd.mask_feature(pd.output_convs[0](y))
    torch.testing.assert_close(mask_features, expected)
    assert mask_features.shape == (2, 32, 16, 16)


def test_pixel_decoder_rejects_level_mismatch():
    cfg = tiny_cfg().panoptic_head
    cfg.pixel_decoder.num_extra_levels = 0  # 3 levels
    cfg.pixel_decoder.encoder.layer_cfg.self_attn_cfg.num_levels = 4
    with pytest.raises(ValueError, match='num_levels'):
        MODELS.build(cfg)


def test_decoder_look_forward_twice_and_eps(seed):
    decoder = MODELS.build(tiny_cfg().panoptic_head).decoder
    decoder.init_weights()
    decoder.eval()
    bbox = torch.nn.Linear(32, 4)
    torch.nn.init.normal_(bbox.weight, std=0.1)
    memory = torch.randn(1, 8 * 8 + 4 * 4 + 2 * 2 + 1, 32)
    shapes = torch.tensor([[1, 1], [2, 2], [4, 4], [8, 8]])
    start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    # An anchor at the edge of (0, 1): eps 1e-5 (official) vs 1e-3 (DINO).
    ref = torch.tensor([[[0.5, 0.5, 0.2, 0.3], [1 - 1e-6, 0.5, 0.1, 0.1]]])
    raw = []
    for layer in decoder.layers:
        layer.register_forward_hook(lambda m, i, o: raw.append(o))
    query = torch.randn(1, 2, 32)
    with torch.no_grad():
        hidden, refs = decoder(query, memory, None, ref, shapes, start, bbox)
    assert hidden.shape == (3, 1, 2, 32) and refs.shape == (4, 1, 2, 4)
    torch.testing.assert_close(refs[0], ref)
    prev = ref
    for lid in range(3):
        expected = (bbox(raw[lid]) + inverse_sigmoid(prev, eps=1e-5)).sigmoid()
        torch.testing.assert_close(refs[lid + 1], expected)
        torch.testing.assert_close(hidden[lid], decoder.norm(raw[lid]))
        prev = expected
    # With DINO's eps 1e-3 the edge anchor would move by a visible amount.
    assert abs(inverse_sigmoid(ref, 1e-5)[0, 1, 0] -
               inverse_sigmoid(ref, 1e-3)[0, 1, 0]) > 4


def _build_head(**kwargs):
    cfg = tiny_cfg().panoptic_head
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def test_gen_proposals_values():
    memory = torch.ones(1, 4 * 4 + 2 * 2, 3)
    out_memory, proposals = MODELS.get('MaskDINOHead').gen_proposals(
        memory, [(4, 4), (2, 2)])
    p = proposals[0].sigmoid()
    # Level 0: 4x4 grid, w = h = 0.05; level 1: 2x2 grid, w = h = 0.1.
    torch.testing.assert_close(p[0], torch.tensor([0.125, 0.125, .05, .05]))
    torch.testing.assert_close(p[16], torch.tensor([0.25, 0.25, 0.1, 0.1]))
    assert torch.isfinite(proposals).all()
    # A token whose box leaves (0.01, 0.99) is invalid: +inf, zero memory.
    big = torch.ones(1, 100 * 100, 3)
    out_memory, proposals = MODELS.get('MaskDINOHead').gen_proposals(
        big, [(100, 100)])
    assert torch.isinf(proposals[0, 0]).all()  # centre 0.005 < 0.01
    assert (out_memory[0, 0] == 0).all()
    assert (out_memory[0, 5050] == 1).all()


def _normalised_token(score: float, dims: int, gen) -> torch.Tensor:
    """A (dims, ) token with zero mean and unit variance (a LayerNorm
    without affine leaves it as it is) whose entry 0 is ``score``."""
    rest = torch.randn(dims - 2, generator=gen)
    rest -= rest.mean()
    rest *= (dims - 2 * score**2)**0.5 / rest.norm()
    return torch.cat([torch.tensor([score, -score]), rest])


def _scored_memory(head, shapes, chosen, scores):
    """Encoder memory (1, sum HW, D) in which the class score of the
    selection (with the head set up by :func:`_score_by_entry0`) is
    ``scores[i]`` for token ``chosen[i]`` and 0 for every other token."""
    gen = torch.Generator().manual_seed(0)
    dims = head.embed_dims
    num_tokens = sum(h * w for h, w in shapes)
    memory = torch.stack(
        [_normalised_token(-1.0, dims, gen) for _ in range(num_tokens)])
    for token, score in zip(chosen, scores):
        memory[token] = _normalised_token(score, dims, gen)
    return memory[None]


def _score_by_entry0(head, decoder_norm_scale):
    """Encoder projection and norm without effect, every class logit 0
    but class 0's, which is the token's entry 0; ``decoder.norm`` scales
    its input by ``decoder_norm_scale``."""
    dims = head.embed_dims
    with torch.no_grad():
        head.enc_output.weight.copy_(torch.eye(dims))
        head.enc_output.bias.zero_()
        head.enc_output_norm.weight.fill_(1)
        head.enc_output_norm.bias.zero_()
        head.cls_embed.weight.zero_()
        head.cls_embed.weight[0, 0] = 1
        head.cls_embed.bias.zero_()
        head.decoder.norm.weight.fill_(decoder_norm_scale)
        head.decoder.norm.bias.zero_()


def test_query_selection_takes_the_top_k_tokens(seed):
    """The K tokens with the largest class score become the queries, in
    score order, with their grid proposals as anchors; selection scores
    use no ``decoder.norm``, the interm set's classes use it once."""
    head = _build_head(initialize_box_type='no')
    head.eval()
    with torch.no_grad():
        shapes = head.pixel_decoder(_feats(batch=1))[1].level_shapes
    # Decoder order is the reverse of the encoder order.
    assert shapes == [(1, 1), (2, 2), (4, 4), (8, 8)]
    num_tokens = sum(h * w for h, w in shapes)
    k = head.num_queries
    chosen = torch.randperm(num_tokens)[:k]
    scores = 0.2 + 0.05 * torch.rand(k).argsort().float()  # distinct
    # a negative decoder.norm scale would reverse the ranking if the
    # selection used it
    _score_by_entry0(head, decoder_norm_scale=-2.0)
    memory = _scored_memory(head, shapes, chosen.tolist(), scores.tolist())
    mask_features = torch.randn(1, head.embed_dims, 16, 16)
    with torch.no_grad():
        query, anchors, interm = head.select_queries(memory, shapes,
                                                     mask_features)
        proposals = head.gen_proposals(memory, shapes)[1]
    order = scores.argsort(descending=True)
    expected_tokens = chosen[order]
    torch.testing.assert_close(
        query[0], memory[0, expected_tokens], rtol=0, atol=1e-4)
    # the box head's last layer starts at zero: anchors are the proposals
    torch.testing.assert_close(anchors[0], proposals[0, expected_tokens])
    torch.testing.assert_close(interm['bbox_preds'][0],
                               proposals[0, expected_tokens].sigmoid())
    cls = interm['cls_scores'][0]
    torch.testing.assert_close(
        cls[:, 0], -2.0 * scores[order], rtol=0, atol=1e-4)
    assert (cls[:, 1:] == 0).all()
    assert interm['mask_preds'].shape == (1, k, 16, 16)


def test_selected_queries_and_anchors_are_detached(seed):
    """The encoder's output projection learns through the interm set
    only: the decoder gets detached queries and anchors."""
    head = _build_head(initialize_box_type='no')
    head.eval()
    out = head(_feats(batch=1), [_sample()])
    grads = torch.autograd.grad(
        out['cls_scores'].sum() + out['bbox_preds'].sum() +
        out['mask_preds'].sum(),
        [head.enc_output.weight, head.cls_embed.weight],
        allow_unused=True)
    assert grads[0] is None
    assert grads[1].abs().sum() > 0
    interm = out['interm_outputs']
    grad = torch.autograd.grad(interm['cls_scores'].sum(),
                               head.enc_output.weight)[0]
    assert grad.abs().sum() > 0


def _all_sets(out):
    """Every prediction set of a head output: interm, initial and the
    decoder layers'."""
    return [out['interm_outputs'], *out['aux_outputs'], out]


def test_one_class_and_one_mask_head_serve_every_set(seed):
    """Shifting the class head's bias shifts the class logits of every set
    (interm, initial, each layer) by the same amount; doubling the mask
    head's last layer doubles every mask; the boxes do not move."""
    head = _build_head()
    head.eval()
    feats = _feats(batch=1)
    with torch.no_grad():
        before = head(feats, [_sample()])
        head.cls_embed.bias.add_(0.5)
        head.mask_embed.layers[-1].weight.mul_(2)
        head.mask_embed.layers[-1].bias.mul_(2)
        after = head(feats, [_sample()])
    sets_before, sets_after = _all_sets(before), _all_sets(after)
    assert len(sets_after) == head.decoder.num_layers + 2
    for a, b in zip(sets_after, sets_before):
        torch.testing.assert_close(a['cls_scores'], b['cls_scores'] + 0.5)
        torch.testing.assert_close(a['bbox_preds'], b['bbox_preds'])
        if b['mask_preds'] is not None:
            torch.testing.assert_close(a['mask_preds'], 2 * b['mask_preds'])
    # the masks checked: the interm and the final set's
    assert sum(s['mask_preds'] is not None for s in sets_before) == 2


def _sample():
    return DetDataSample(metainfo=dict(batch_input_shape=(64, 64)))


def test_mask_enhanced_anchor_init(seed):
    head = _build_head(initialize_box_type='mask2box')
    masks = torch.full((1, 2, 6, 8), -1.0)
    masks[0, 0, 1:3, 2:6] = 1.0  # rows 1-2, cols 2-5
    anchors = head.mask_enhanced_anchors(masks)
    box = anchors[0, 0].sigmoid()
    # mask2box: inclusive corners (2, 1, 5, 2) -> cxcywh / (w, h).
    torch.testing.assert_close(
        box, torch.tensor([3.5 / 8, 1.5 / 6, 3 / 8, 1 / 6]))
    # Empty mask: the official inverted box (1e8, 1e8, 0, 0), clamped to
    # centre (1, 1), size (0, 0), inverse-sigmoided with eps 1e-5.
    edge = math.log(1e5)
    torch.testing.assert_close(anchors[0, 1],
                               torch.tensor([edge, edge, -edge, -edge]))


def test_forward_sets_double_norm_and_eval_masks(seed):
    head = _build_head(initialize_box_type='mask2box')
    head.eval()
    feats = _feats(batch=1)
    captured = {}
    orig = head.decoder.forward

    def spy(*args, **kwargs):
        captured['out'] = orig(*args, **kwargs)
        captured['ref0'] = kwargs['reference_points']
        return captured['out']

    head.decoder.forward = spy
    with torch.no_grad():
        out = head(feats, [_sample()])
    hidden, refs = captured['out']
    # Final class logits: class head on decoder_norm(decoder.norm(x)).
    torch.testing.assert_close(out['cls_scores'],
                               head.cls_embed(head.decoder.norm(hidden[-1])))
    torch.testing.assert_close(
        out['bbox_preds'],
        (head.bbox_embed(hidden[-1]) +
         inverse_sigmoid(refs[-2], eps=1e-5)).sigmoid())
    # Initial set: boxes are the anchors; at eval only the last set and the
    # interm set carry masks.
    aux = out['aux_outputs']
    assert len(aux) == head.decoder.num_layers
    torch.testing.assert_close(aux[0]['bbox_preds'], captured['ref0'])
    assert all(a['mask_preds'] is None for a in aux)
    assert out['mask_preds'].shape == (1, 20, 16, 16)
    assert out['interm_outputs']['mask_preds'] is not None
    assert out['dn_outputs'] is None


def test_heads_are_shared():
    head = _build_head()
    names = [n for n, _ in head.named_modules()]
    # One class / box / mask head; no per-layer copies.
    assert sum(n.endswith('cls_embed') for n in names) == 1
    assert sum(n.endswith('bbox_embed') for n in names) == 1
    assert sum(n.endswith('mask_embed') for n in names) == 1
    assert not any('reg_branches' in n or 'cls_branches' in n for n in names)


def test_small_image_error():
    head = _build_head()
    with pytest.raises(ValueError, match='too small'):
        head.select_queries(torch.zeros(1, 5, 32), [(1, 5)],
                            torch.zeros(1, 32, 4, 4))
