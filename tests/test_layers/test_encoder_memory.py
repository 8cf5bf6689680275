"""The pixel decoder's ``EncoderMemory``: the encoder output flattened
once, levels in the decoder's order (the reverse of the encoder's)."""
import pytest
import torch
from conftest import tiny_cfg
from mmdet.registry import MODELS

from projects.mask_dino.layers.pixel_decoder import (EncoderMemory,
                                                     level_start_index)


def _feats(batch=2, size=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, size // s, size // s, generator=gen)
        for c, s in zip((8, 16, 32, 64), (4, 8, 16, 32))
    ]


def test_from_encoder_order_reverses_level_blocks():
    shapes = [(4, 6), (2, 3), (1, 2)]
    sizes = [h * w for h, w in shapes]
    levels = [torch.full((2, n, 3), float(i)) for i, n in enumerate(sizes)]
    memory = EncoderMemory.from_encoder_order(
        torch.cat(levels, 1), torch.tensor(shapes), shapes)
    assert memory.level_shapes == [(1, 2), (2, 3), (4, 6)]
    assert memory.spatial_shapes.tolist() == [[1, 2], [2, 3], [4, 6]]
    assert memory.level_start_index.tolist() == [0, 2, 8]
    # tokens of decoder level l are those of encoder level L - 1 - l
    expected = torch.cat([torch.full((2, n, 3), float(i))
                          for i, n in reversed(list(enumerate(sizes)))], 1)
    assert torch.equal(memory.memory, expected)


def test_level_start_index():
    assert level_start_index(torch.tensor([[3, 4], [2, 2],
                                           [1, 5]])).tolist() == [0, 12, 16]


@pytest.mark.parametrize('task', ['instance', 'semantic'])
def test_pixel_decoder_memory_in_decoder_order(task):
    """Semantic configs order the encoder levels high-to-low ('high2low'),
    instance ones low-to-high: the decoder order is the reverse of either,
    and the tokens are the encoder's (no copy changes a value)."""
    pixel_decoder = MODELS.build(tiny_cfg(task).panoptic_head.pixel_decoder)
    pixel_decoder.init_weights()
    pixel_decoder.eval()
    feats = _feats()
    with torch.no_grad():
        _, memory = pixel_decoder(feats)
        encoded, _, enc_shapes = pixel_decoder._encode(
            pixel_decoder._project_levels(feats))
    assert memory.level_shapes == enc_shapes[::-1]
    assert memory.spatial_shapes.tolist() == [list(s) for s in
                                              memory.level_shapes]
    starts = memory.level_start_index.tolist()
    enc_starts = level_start_index(torch.tensor(enc_shapes)).tolist()
    num = len(enc_shapes)
    for lvl, (h, w) in enumerate(memory.level_shapes):
        enc_lvl = num - 1 - lvl
        assert torch.equal(
            memory.memory[:, starts[lvl]:starts[lvl] + h * w],
            encoded[:, enc_starts[enc_lvl]:enc_starts[enc_lvl] + h * w])


def test_checkpointed_encoder_gives_the_same_memory():
    cfg = tiny_cfg().panoptic_head.pixel_decoder
    torch.manual_seed(0)
    plain = MODELS.build(cfg).train()
    torch.manual_seed(0)
    checkpointed = MODELS.build(dict(cfg, with_cp=True)).train()
    checkpointed.load_state_dict(plain.state_dict())
    feats = [f.requires_grad_() for f in _feats()]
    mask_a, memory_a = plain(feats)
    mask_b, memory_b = checkpointed(feats)
    assert torch.equal(mask_a, mask_b)
    assert torch.equal(memory_a.memory, memory_b.memory)
    grads_a = torch.autograd.grad(memory_a.memory.sum() + mask_a.sum(),
                                  feats)
    grads_b = torch.autograd.grad(memory_b.memory.sum() + mask_b.sum(),
                                  feats)
    for a, b in zip(grads_a, grads_b):
        assert torch.equal(a, b)
