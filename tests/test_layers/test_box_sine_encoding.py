"""The decoder's box sine encoding equals mmdet's coordinate_to_encoding."""
import pytest
import torch
from mmdet.models.layers.transformer import coordinate_to_encoding

from projects.mask_dino.layers.transformer_decoder import box_sine_encoding


@pytest.mark.parametrize('shape,num_feats', [((2, 300, 4), 128),
                                             ((1, 17, 4), 16),
                                             ((3, 1, 4), 64)])
def test_equals_mmdet_coordinate_to_encoding(shape, num_feats):
    torch.manual_seed(0)
    boxes = torch.rand(*shape)
    boxes[0, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    expected = coordinate_to_encoding(boxes, num_feats=num_feats)
    out = box_sine_encoding(boxes, num_feats=num_feats)
    assert out.shape == (*shape[:-1], 4 * num_feats)
    assert torch.equal(out, expected)
