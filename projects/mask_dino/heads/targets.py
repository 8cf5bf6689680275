"""The training targets contract of :class:`MaskDINOHead` and its parts.

``MaskDINOHead.preprocess_gt`` turns data samples into one
:obj:`InstanceData` per image, which the denoising generator, the
criterion and (through the criterion) the assigner read:

- ``labels`` (N, ) int64 in [0, num_classes);
- ``bboxes`` (N, 4) float pixel xyxy, in the frame of ``img_shape``;
- ``masks`` (N, H, W) bool at the padded batch size (``batch_input_shape``),
  not in box-only heads.

Each image's meta has ``img_shape``. :func:`check_targets` checks this
once, where the targets enter the head (``MaskDINOHead.loss``); the parts
downstream trust it.

Box frame: the target boxes are normalised by ``img_shape`` (official),
predictions are decoded on the padded canvas (``batch_input_shape``).
The two agree when every training image is padded to the batch size (all
pipelines here end at one fixed size); :func:`warn_box_frame` says so once
when they do not (docs/custom_dataset.md, "Keep the training images one
fixed size").
"""
import logging
from typing import List

import torch
from mmdet.utils import InstanceList
from mmengine.logging import print_log
from torch import Tensor

_warned_box_frame = False


def check_targets(batch_gt_instances: InstanceList,
                  batch_img_metas: List[dict], num_classes: int,
                  with_mask: bool = True) -> None:
    """Raise a clear error if the targets break the contract above.

    One host synchronisation for the label range of the whole batch.

    Args:
        batch_gt_instances (list[:obj:`InstanceData`]): Targets per image.
        batch_img_metas (list[dict]): Meta information per image.
        num_classes (int): Number of classes (things + stuff).
        with_mask (bool): Whether masks are part of the targets.

    Raises:
        ValueError: Naming the image (``img_path`` when known) and field.
    """
    if len(batch_gt_instances) != len(batch_img_metas):
        raise ValueError(f'Got {len(batch_gt_instances)} gt_instances but '
                         f'{len(batch_img_metas)} img_metas.')
    if len(batch_gt_instances) == 0:
        raise ValueError('The batch has no images.')
    for gt, meta in zip(batch_gt_instances, batch_img_metas):
        _check_image(gt, meta, with_mask)
    warn_box_frame(batch_img_metas)
    labels = torch.cat([gt.labels for gt in batch_gt_instances])
    if labels.numel() > 0:
        low, high = torch.stack([labels.min(), labels.max()]).tolist()
        if low < 0 or high >= num_classes:
            raise ValueError(
                f'gt_instances.labels must lie in [0, num_classes='
                f'{num_classes}), got values in [{low}, {high}]; check the '
                'annotations and the number of classes of the config.')


def _check_image(gt, meta: dict, with_mask: bool) -> None:
    """Fields, types and shapes of one image's targets."""
    where = f' of {meta["img_path"]}' if 'img_path' in meta else ''
    if 'img_shape' not in meta:
        raise ValueError(f'The img_meta{where} lacks `img_shape`.')
    fields = ('labels', 'bboxes', 'masks') if with_mask else ('labels',
                                                                'bboxes')
    for field in fields:
        if not isinstance(gt.get(field), Tensor):
            raise ValueError(
                f'gt_instances.{field}{where} must be a Tensor, got '
                f'{type(gt.get(field)).__name__}.')
    num = len(gt.labels)
    if gt.labels.dim() != 1:
        raise ValueError(f'gt_instances.labels{where} must be (N, ), got '
                         f'{tuple(gt.labels.shape)}.')
    if tuple(gt.bboxes.shape) != (num, 4):
        raise ValueError(f'gt_instances.bboxes{where} must be ({num}, 4) '
                         f'like the labels, got {tuple(gt.bboxes.shape)}.')
    if with_mask and (gt.masks.dim() != 3 or len(gt.masks) != num):
        raise ValueError(
            f'gt_instances.masks{where} must be ({num}, H, W) at the '
            f'padded batch size, got {tuple(gt.masks.shape)}.')


def warn_box_frame(batch_img_metas: List[dict]) -> None:
    """Warn once per process when an image's ``img_shape`` (the frame of
    its target boxes) differs from ``batch_input_shape`` (the frame in
    which predictions are decoded)."""
    global _warned_box_frame
    if _warned_box_frame:
        return
    for meta in batch_img_metas:
        canvas = meta.get('batch_input_shape')
        if canvas is not None and tuple(meta['img_shape'][:2]) != tuple(
                canvas[:2]):
            _warned_box_frame = True
            print_log(
                f'Training image {meta.get("img_path", "")} has img_shape '
                f'{tuple(meta["img_shape"][:2])} but the batch is padded '
                f'to {tuple(canvas[:2])}: target boxes are normalised by '
                'img_shape while predictions are decoded on the padded '
                'batch, so boxes learned this way come out scaled at '
                'inference. End the training pipeline at one fixed size '
                '(e.g. Pad(size=...)), see docs/custom_dataset.md.',
                logger='current',
                level=logging.WARNING)
            return
