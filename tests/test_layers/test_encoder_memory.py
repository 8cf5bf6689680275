"""The pixel decoder's ``EncoderMemory``: the encoder output flattened
once, levels in the decoder's order (the reverse of the encoder's)."""
import pytest
import torch
from conftest import tiny_cfg
from mmdet.registry import MODELS

from projects.mask_dino.layers.pixel_decoder import (EncoderMemory,
                                                     level_start_index)


def _feats(batch=2, size=(64, 64), seed=0):
    """Backbone maps of an input of ``size`` (h, w), strides 4 to 32."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    return [
        torch.randn(batch, c, h // s, w // s, generator=gen)
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


# (h, w) of the decoder's levels for a 64 x 96 input: the reverse of the
# encoder order, which is 1/8, 1/16, 1/32 then the extra 1/64 level
# ('low2high', instance configs) or 1/32, 1/16, 1/8 ('high2low', semantic
# configs, no extra level)
DECODER_LEVELS = dict(
    instance=[(1, 2), (2, 3), (4, 6), (8, 12)],
    semantic=[(8, 12), (4, 6), (2, 3)])


@pytest.mark.parametrize('task', ['instance', 'semantic'])
def test_pixel_decoder_memory_in_decoder_order(task):
    """The memory of the pixel decoder's forward holds the levels in the
    reverse of the encoder's order, for both feature orders, and its
    tokens are the encoder's output (no copy changes a value). The encoder
    output is read with a forward hook on the ``encoder`` submodule."""
    pixel_decoder = MODELS.build(tiny_cfg(task).panoptic_head.pixel_decoder)
    pixel_decoder.init_weights()
    pixel_decoder.eval()
    seen = {}

    def hook(module, args, kwargs, output):
        seen.update(output=output, shapes=kwargs['spatial_shapes'])

    handle = pixel_decoder.encoder.register_forward_hook(
        hook, with_kwargs=True)
    with torch.no_grad():
        _, memory = pixel_decoder(_feats(size=(64, 96)))
    handle.remove()
    expected = DECODER_LEVELS[task]
    assert memory.level_shapes == expected
    assert memory.spatial_shapes.tolist() == [list(s) for s in expected]
    assert seen['shapes'].tolist() == [list(s) for s in expected[::-1]]
    sizes = [h * w for h, w in expected]
    starts = [sum(sizes[:lvl]) for lvl in range(len(sizes))]
    assert memory.level_start_index.tolist() == starts
    # decoder level l holds the tokens of encoder level L - 1 - l
    encoded = seen['output'].split(sizes[::-1], 1)
    for lvl, size in enumerate(sizes):
        assert torch.equal(memory.memory[:, starts[lvl]:starts[lvl] + size],
                           encoded[len(sizes) - 1 - lvl])


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
