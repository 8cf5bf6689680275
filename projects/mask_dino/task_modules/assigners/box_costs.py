"""mmdet's box match costs computed without host-to-device copies (#15).

mmdet's ``BBoxL1Cost`` builds its normalisation factor with
``new_tensor([w, h, w, h])`` and ``IoUCost`` reaches ``bbox_overlaps``,
which builds ``new_tensor([eps])``: on CUDA each is a copy that waits for
the GPU, once per image and prediction set. :func:`row_match_cost` gives
the same matrices (bit for bit: same operations in the same order) with
the constants filled on the device, so the configs keep naming mmdet's
cost types.
"""
from typing import Optional

import torch
from mmdet.models.task_modules.assigners import BBoxL1Cost, IoUCost
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor

from ...utils.box_ops import box_overlaps, box_scale


def bbox_l1_cost(match_cost: BBoxL1Cost, pred_bboxes: Tensor,
                 gt_bboxes: Tensor, img_shape: tuple) -> Tensor:
    """``BBoxL1Cost``: L1 distance of image-normalised boxes.

    Args:
        match_cost (:obj:`BBoxL1Cost`): The configured cost (its
            ``box_format`` and ``weight``).
        pred_bboxes (Tensor): Pixel xyxy boxes (num_preds, 4).
        gt_bboxes (Tensor): Pixel xyxy boxes (num_gts, 4).
        img_shape (tuple): (h, w) of the frame of the boxes.

    Returns:
        Tensor: Weighted costs (num_preds, num_gts).
    """
    if match_cost.box_format == 'xywh':
        gt_bboxes = bbox_xyxy_to_cxcywh(gt_bboxes)
        pred_bboxes = bbox_xyxy_to_cxcywh(pred_bboxes)
    img_h, img_w = img_shape
    factor = box_scale(gt_bboxes, img_w, img_h)[None]
    cost = torch.cdist(pred_bboxes / factor, gt_bboxes / factor, p=1)
    return cost * match_cost.weight


def iou_cost(match_cost: IoUCost, pred_bboxes: Tensor,
             gt_bboxes: Tensor) -> Tensor:
    """``IoUCost``: minus the IoU (or GIoU) of every pair.

    Args:
        match_cost (:obj:`IoUCost`): The configured cost (its ``iou_mode``
            and ``weight``).
        pred_bboxes (Tensor): Pixel xyxy boxes (num_preds, 4).
        gt_bboxes (Tensor): Pixel xyxy boxes (num_gts, 4).

    Returns:
        Tensor: Weighted costs (num_preds, num_gts), in the dtype of
        ``pred_bboxes`` (fp16 boxes are compared in fp32, as mmdet does).
    """
    dtype = pred_bboxes.dtype
    if dtype == torch.float16:
        pred_bboxes = pred_bboxes.float()
    overlaps = box_overlaps(pred_bboxes, gt_bboxes, mode=match_cost.iou_mode)
    return -overlaps.to(dtype) * match_cost.weight


def row_match_cost(match_cost, preds: InstanceData, gts: InstanceData,
                   img_meta: Optional[dict]) -> Tensor:
    """Cost matrix of a cost that compares one prediction row with one GT.

    ``BBoxL1Cost`` and ``IoUCost`` (exactly these classes: a subclass may
    change the formula) run without host constants; any other cost is
    called as configured.

    Args:
        match_cost: A built mmdet match cost.
        preds (:obj:`InstanceData`): Predictions (``scores``, ``bboxes``).
        gts (:obj:`InstanceData`): Ground truth (``labels``, ``bboxes``).
        img_meta (dict, optional): Image information with ``img_shape``.

    Returns:
        Tensor: Weighted costs (num_preds, num_gts).
    """
    if type(match_cost) is BBoxL1Cost:
        return bbox_l1_cost(match_cost, preds.bboxes, gts.bboxes,
                            img_meta['img_shape'])
    if type(match_cost) is IoUCost:
        return iou_cost(match_cost, preds.bboxes, gts.bboxes)
    return match_cost(
        pred_instances=preds, gt_instances=gts, img_meta=img_meta)
