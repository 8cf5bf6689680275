"""The training targets contract, checked once where the targets enter
the head (``MaskDINOHead.loss`` -> ``heads/targets.check_targets``)."""
import pytest
import torch
from conftest import make_sample, tiny_cfg
from mmdet.registry import MODELS
from mmengine.structures import BaseDataElement, InstanceData

from projects.mask_dino.heads.targets import check_targets


def _gt(num=2, size=8, with_mask=True):
    gt = InstanceData(
        labels=torch.arange(num),
        bboxes=torch.tensor([[0., 0., 4., 4.]]).repeat(num, 1))
    if with_mask:
        gt.masks = torch.zeros(num, size, size, dtype=torch.bool)
    return gt


META = dict(img_shape=(8, 8), img_path='a.jpg')


def test_valid_targets_pass():
    check_targets([_gt(), _gt(0)], [META, META], num_classes=3)
    check_targets([_gt(with_mask=False)], [META], 3, with_mask=False)


@pytest.mark.parametrize('labels, match', [
    ([0, 3], r'\[0, num_classes=3\), got values in \[0, 3\]'),
    ([-1, 0], r'got values in \[-1, 0\]'),
])
def test_labels_out_of_range(labels, match):
    gt = _gt()
    gt.labels = torch.tensor(labels)
    with pytest.raises(ValueError, match=match):
        check_targets([gt], [META], num_classes=3)


def test_missing_or_malformed_fields_name_the_image_and_field():
    gt = _gt()
    del gt.masks
    with pytest.raises(ValueError, match='gt_instances.masks of a.jpg'):
        check_targets([gt], [META], 3)
    # box-only targets need no masks
    check_targets([gt], [META], 3, with_mask=False)
    bad = BaseDataElement(labels=torch.arange(2), bboxes=torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r'bboxes of a.jpg must be \(2, 4\)'):
        check_targets([bad], [META], 3, with_mask=False)
    bad = BaseDataElement(labels=torch.arange(2), bboxes=torch.zeros(2, 4),
                          masks=torch.zeros(2, 8))
    with pytest.raises(ValueError, match=r'masks of a.jpg must be \(2, H, W'):
        check_targets([bad], [META], 3)
    with pytest.raises(ValueError, match='lacks `img_shape`'):
        check_targets([_gt()], [dict()], 3)
    with pytest.raises(ValueError, match='2 img_metas'):
        check_targets([_gt()], [META, META], 3)


def test_head_loss_checks_the_targets():
    """A label beyond the class count stops training at the head's entry
    with the message, before any part reads the targets."""
    cfg = tiny_cfg()
    model = MODELS.build(cfg)
    head = model.panoptic_head
    sample = make_sample(64, 64, [[4, 4, 30, 20]], [head.num_classes])
    feats = model.extract_feat(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='num_classes=3'):
        head.loss(feats, [sample])


def test_box_frame_warning_once(monkeypatch):
    from mmengine.logging import MMLogger

    from projects.mask_dino.heads import targets
    monkeypatch.setattr(targets, '_warned_box_frame', False)
    messages = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'warning',
                        lambda msg, *a, **k: messages.append(msg))
    monkeypatch.setattr(
        logger, 'log', lambda level, msg, *a, **k: messages.append(msg))
    padded = dict(META, batch_input_shape=(8, 8))
    check_targets([_gt()], [padded], 3)
    assert messages == []
    unpadded = dict(META, img_shape=(6, 8), batch_input_shape=(8, 8))
    check_targets([_gt()], [unpadded], 3)
    check_targets([_gt()], [unpadded], 3)
    assert len(messages) == 1 and 'a.jpg has img_shape (6, 8)' in \
        messages[0]
