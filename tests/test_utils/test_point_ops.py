import pytest
import torch
from mmcv.ops import point_sample

from projects.mask_dino.utils import point_sample_rows
from projects.mask_dino.utils.point_ops import BatchMasks


def reference(masks, rows, points):
    return point_sample(masks[rows].float()[:, None], points)[:, 0]


@pytest.mark.parametrize('dtype', [torch.bool, torch.uint8, torch.float32])
def test_equals_point_sample_of_indexed_rows(dtype):
    torch.manual_seed(0)
    masks = torch.rand(5, 13, 21) > 0.5
    masks = masks.to(dtype) if dtype != torch.float32 else torch.rand(
        5, 13, 21)
    rows = torch.tensor([3, 0, 3, 4, 1, 1, 2])
    points = torch.rand(7, 50, 2)
    # borders, pixel centres and exact corners
    points[:, 0] = torch.tensor([0.0, 0.0])
    points[:, 1] = torch.tensor([1.0, 1.0])
    points[:, 2] = torch.tensor([0.5 / 21, 0.5 / 13])
    points[:, 3] = torch.tensor([1.0, 0.0])
    points[:, 4] = torch.tensor([3.5 / 21, 12.5 / 13])
    # outside the map (zero padding): far out, and half a pixel beyond
    points[:, 5] = torch.tensor([-0.3, 1.2])
    points[:, 6] = torch.tensor([1.0 + 0.5 / 21, 1.0 + 0.5 / 13])
    points[:, 7] = torch.tensor([1.0 + 0.25 / 21, -0.25 / 13])
    out = point_sample_rows(masks, rows, points)
    assert out.shape == (7, 50) and out.dtype == torch.float32
    torch.testing.assert_close(
        out, reference(masks, rows, points), atol=1e-6, rtol=0)
    # half-pixel outside reads half zeros; a pixel centre reads the pixel
    assert torch.equal(out[:, 2], masks[rows, 0, 0].float())
    torch.testing.assert_close(out[:, 0], masks[rows, 0, 0].float() / 4)
    assert torch.equal(out[:, 5:7], torch.zeros(7, 2))


def test_empty_and_mismatched_rows():
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    out = point_sample_rows(masks, torch.zeros(0, dtype=torch.long),
                            torch.zeros(0, 8, 2))
    assert out.shape == (0, 8)
    with pytest.raises(ValueError, match='3 rows for 2 point sets'):
        point_sample_rows(masks, torch.tensor([0, 1, 1]), torch.rand(2, 8, 2))


@pytest.mark.parametrize('same_size', [True, False])
def test_batch_masks_equal_point_sample_rows_per_image(same_size):
    """One bordered stack for a batch (or one per image when the sizes
    differ) gives the values of sampling each image's masks."""
    torch.manual_seed(1)
    shapes = [(3, 12, 20), (2, 12, 20)] if same_size else [(3, 12, 20),
                                                            (2, 9, 16)]
    masks = [torch.rand(*shape) > 0.5 for shape in shapes]
    batch = BatchMasks(masks)
    assert len(batch.stacks) == (1 if same_size else 2)
    blocks = [(1, torch.tensor([1, 0, 1])), (0, torch.tensor([2])),
              (1, torch.tensor([0])), (0, torch.tensor([0, 1]))]
    points = torch.rand(7, 30, 2)
    expected = torch.cat([
        point_sample_rows(masks[b], rows, pts) for (b, rows), pts in zip(
            blocks, points.split([len(r) for _, r in blocks]))
    ])
    assert torch.equal(batch.sample(blocks, points), expected)
    image_points = torch.rand(40, 2)
    for b, m in enumerate(masks):
        assert torch.equal(
            batch.sample_image(b, image_points),
            point_sample_rows(m, torch.arange(len(m)),
                              image_points[None].expand(len(m), -1, -1)))
