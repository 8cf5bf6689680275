"""Set criterion of Mask DINO (matching + denoising losses)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmcv.ops import point_sample
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmdet.utils import ConfigType, InstanceList, OptConfigType, reduce_mean

from ..utils import point_sample_rows

# (pred_inds, gt_inds) of one image: prediction ``pred_inds[k]`` is
# supervised by ground truth ``gt_inds[k]``.
PairList = List[Tuple[Tensor, Tensor]]

LOSS_NAMES = ('loss_cls', 'loss_mask', 'loss_dice', 'loss_bbox', 'loss_iou')


@MODELS.register_module()
class MaskDINOCriterion(BaseModule):
    """Losses of Mask DINO for every prediction set of one forward pass.

    Every prediction set (final, auxiliary decoder sets, the two-stage
    "interm" set and their denoising twins) gets the same five losses:
    classification, point-sampled mask BCE, point-sampled dice, L1 on
    normalised cxcywh boxes and GIoU. Matching sets are assigned to the
    ground truth by Hungarian matching; denoising (dn) sets use the fixed
    assignment of the dn queries that were built from the ground truth.

    Normalisation follows the official implementation: the number of GT
    instances in the batch, averaged over ranks and clamped to >= 1, for
    every matching loss; that count times the number of dn groups for the
    dn losses. The softmax-CE classification variant (semantic configs)
    instead uses the class-weighted mean (as Mask2Former).

    Args:
        num_classes (int): Number of classes C (things + stuff).
        assigner (:obj:`ConfigDict` or dict): Hungarian assigner, built with
            ``TASK_UTILS``. Its ``assign`` receives ``scores`` (Q, C) logits,
            ``masks`` (Q, h, w) logits and ``bboxes`` (Q, 4) pixel xyxy.
        loss_cls (:obj:`ConfigDict` or dict): Classification loss, either a
            sigmoid focal loss over C logits or a softmax cross entropy over
            C + 1 logits (last = no-object, usually with class weights).
        loss_mask (:obj:`ConfigDict` or dict): Sigmoid BCE on mask points.
        loss_dice (:obj:`ConfigDict` or dict): Dice loss on mask points.
        loss_bbox (:obj:`ConfigDict` or dict): L1 loss on normalised cxcywh.
        loss_iou (:obj:`ConfigDict` or dict): GIoU loss on normalised xyxy.
        num_points (int): Number of points sampled per mask for the mask
            losses. Defaults to 12544.
        oversample_ratio (float): Oversampling ratio of the uncertainty
            point sampling. Defaults to 3.0.
        importance_sample_ratio (float): Fraction of the points taken from
            the most uncertain candidates. Defaults to 0.75.
        num_things_classes (int, optional): Number of thing classes; the
            first ``num_things_classes`` labels are things. Only needed with
            ``decouple_stuff_boxes``.
        decouple_stuff_boxes (bool): If True, box losses ignore matched
            pairs whose GT is a stuff class (the paper's decoupled box
            prediction; off in the released configs). The normaliser is not
            changed. Defaults to False.
        init_cfg (:obj:`ConfigDict` or dict, optional): Initialisation
            config. Defaults to None.
    """

    def __init__(
        self,
        num_classes: int,
        assigner: ConfigType,
        loss_cls: ConfigType = dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=4.0),
        loss_mask: ConfigType = dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=5.0),
        loss_dice: ConfigType = dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0),
        loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
        loss_iou: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        num_things_classes: Optional[int] = None,
        decouple_stuff_boxes: bool = False,
        init_cfg: OptConfigType = None
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if decouple_stuff_boxes and num_things_classes is None:
            raise ValueError('`num_things_classes` must be given when '
                             '`decouple_stuff_boxes` is True.')
        if num_things_classes is not None and not (0 <= num_things_classes
                                                   <= num_classes):
            raise ValueError(
                f'`num_things_classes` ({num_things_classes}) must be in '
                f'[0, num_classes={num_classes}].')
        self.num_classes = num_classes
        self.num_things_classes = num_things_classes
        self.decouple_stuff_boxes = decouple_stuff_boxes
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

        self.assigner = TASK_UTILS.build(assigner)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)

        # Sigmoid (focal) models predict C logits with an implicit
        # background; softmax models predict C + 1 (last = no-object).
        self.use_sigmoid_cls = getattr(self.loss_cls, 'use_sigmoid', False)
        self.cls_out_channels = (
            num_classes if self.use_sigmoid_cls else num_classes + 1)
        class_weight = getattr(self.loss_cls, 'class_weight', None)
        if class_weight is not None and (len(class_weight) !=
                                         self.cls_out_channels):
            raise ValueError(
                f'`loss_cls.class_weight` has {len(class_weight)} entries, '
                f'expected {self.cls_out_channels} (num_classes + 1).')
        self.class_weight = class_weight

    def forward(self, outputs: dict, batch_gt_instances: InstanceList,
                batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Compute the losses of all prediction sets.

        Args:
            outputs (dict): Head outputs: the final set (``cls_scores``
                (B, Q, C or C+1), ``mask_preds`` (B, Q, h, w), ``bbox_preds``
                (B, Q, 4) normalised cxcywh), ``aux_outputs`` (list of sets),
                ``interm_outputs`` (set or None), ``dn_outputs`` (None or a
                set with its own ``aux_outputs``) and ``dn_meta`` (None or
                dict with ``num_groups``, ``single_pad``, ``pad_size``).
            batch_gt_instances (list[:obj:`InstanceData`]): Per image
                ``labels`` (N,), ``masks`` (N, H, W) at the padded batch
                resolution and ``bboxes`` (N, 4) pixel xyxy.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.

        Returns:
            dict[str, Tensor]: Losses named ``loss_*`` (final set),
            ``d{i}.loss_*`` (aux), ``enc_loss_*`` (interm), ``dn_loss_*``
            and ``d{i}.dn_loss_*`` (denoising).
        """
        self._check_gt(batch_gt_instances, batch_img_metas)
        aux_outputs = outputs.get('aux_outputs') or []
        interm_outputs = outputs.get('interm_outputs')
        dn_outputs = outputs.get('dn_outputs')

        num_total_gt = self._get_num_total_gt(batch_gt_instances,
                                              outputs['cls_scores'])
        losses = dict()

        def match_and_loss(preds: dict, prefix: str) -> None:
            pairs = self.get_matched_pairs(preds, batch_gt_instances,
                                           batch_img_metas)
            losses.update(
                self._name(
                    prefix,
                    self.loss_by_set(preds, pairs, batch_gt_instances,
                                     batch_img_metas, num_total_gt)))

        match_and_loss(outputs, '')
        for i, aux_preds in enumerate(aux_outputs):
            match_and_loss(aux_preds, f'd{i}.')
        if interm_outputs is not None:
            match_and_loss(interm_outputs, 'enc_')

        # Official: the initial (pre-decoder) dn set is only supervised by
        # two-stage models.
        dn_aux_start = 0 if interm_outputs is not None else 1
        dn_aux_ids = range(dn_aux_start, len(aux_outputs))
        if dn_outputs is None:
            # DN was skipped this step; emit zeros so that every rank logs
            # the same keys.
            zeros = self._zero_losses(outputs)
            losses.update(self._name('dn_', zeros))
            for i in dn_aux_ids:
                losses.update(self._name(f'd{i}.dn_', zeros))
            return losses

        dn_meta = outputs.get('dn_meta')
        if dn_meta is None:
            raise ValueError('`dn_meta` is required when `dn_outputs` is '
                             'given.')
        dn_aux_outputs = dn_outputs.get('aux_outputs') or []
        if len(dn_aux_outputs) != len(aux_outputs):
            raise ValueError(
                f"`dn_outputs['aux_outputs']` has {len(dn_aux_outputs)} "
                f'sets, expected {len(aux_outputs)} like `aux_outputs`.')
        dn_pairs = self.get_dn_pairs(batch_gt_instances, dn_meta,
                                     dn_outputs['cls_scores'].size(1))
        dn_avg_factor = num_total_gt * dn_meta['num_groups']
        dn_sets = [('dn_', dn_outputs)] + [(f'd{i}.dn_', dn_aux_outputs[i])
                                            for i in dn_aux_ids]
        for prefix, preds in dn_sets:
            losses.update(
                self._name(
                    prefix,
                    self.loss_by_set(preds, dn_pairs, batch_gt_instances,
                                     batch_img_metas, dn_avg_factor)))
        return losses

    def loss_by_set(self, preds: dict, pairs: PairList,
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    avg_factor: float) -> Tuple[Tensor, ...]:
        """Compute the five losses of one prediction set.

        Args:
            preds (dict): ``cls_scores`` (B, Q, C or C+1), ``mask_preds``
                (B, Q, h, w) and ``bbox_preds`` (B, Q, 4) normalised cxcywh.
            pairs (list[tuple[Tensor, Tensor]]): Per image the indices of
                the supervised predictions and of their GT instances. The
                other predictions are background.
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.
            avg_factor (float): Normaliser of the focal, mask and box losses.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_mask``, ``loss_dice``,
            ``loss_bbox`` and ``loss_iou``.
        """
        cls_scores, mask_preds, bbox_preds = self._unpack(preds)
        loss_cls = self._loss_cls(cls_scores, pairs, batch_gt_instances,
                                  avg_factor)
        loss_mask, loss_dice = self._loss_masks(mask_preds, pairs,
                                                batch_gt_instances, avg_factor)
        loss_bbox, loss_iou = self._loss_boxes(bbox_preds, pairs,
                                               batch_gt_instances,
                                               batch_img_metas, avg_factor)
        return loss_cls, loss_mask, loss_dice, loss_bbox, loss_iou

    def get_matched_pairs(self, preds: dict, batch_gt_instances: InstanceList,
                          batch_img_metas: List[dict]) -> PairList:
        """Hungarian-match one prediction set to the GT, image by image.

        Args:
            preds (dict): Prediction set, see :meth:`loss_by_set`.
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image (pred_inds, gt_inds),
            both LongTensor (num_matched,).
        """
        cls_scores, mask_preds, bbox_preds = self._unpack(preds)
        pairs = []
        for b, (gt_instances, img_meta) in enumerate(
                zip(batch_gt_instances, batch_img_metas)):
            if len(gt_instances) == 0:
                empty = cls_scores.new_zeros((0, ), dtype=torch.long)
                pairs.append((empty, empty))
                continue
            img_h, img_w = img_meta['img_shape'][:2]
            factor = bbox_preds.new_tensor([img_w, img_h, img_w, img_h])
            pred_instances = InstanceData(
                scores=cls_scores[b].detach(),
                masks=mask_preds[b].detach(),
                bboxes=bbox_cxcywh_to_xyxy(bbox_preds[b].detach()) * factor)
            assign_result = self.assigner.assign(
                pred_instances=pred_instances,
                gt_instances=gt_instances,
                img_meta=img_meta)
            pred_inds = torch.nonzero(
                assign_result.gt_inds > 0, as_tuple=False).squeeze(1)
            gt_inds = assign_result.gt_inds[pred_inds] - 1
            pairs.append((pred_inds.to(cls_scores.device),
                          gt_inds.long().to(cls_scores.device)))
        return pairs

    @staticmethod
    def get_dn_pairs(batch_gt_instances: InstanceList, dn_meta: dict,
                     num_dn_queries: int) -> PairList:
        """Fixed assignment of the denoising queries.

        Group ``g`` occupies dn slots ``[g * single_pad, (g + 1) *
        single_pad)``; inside a group, slot ``t`` is the noised copy of GT
        ``t`` of the image. Slots beyond the image's GT count are padding
        (background).

        Args:
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            dn_meta (dict): ``num_groups``, ``single_pad`` and ``pad_size``.
            num_dn_queries (int): Number of dn predictions per image.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image (pred_inds, gt_inds).
        """
        for key in ('num_groups', 'single_pad', 'pad_size'):
            if key not in dn_meta:
                raise KeyError(f'`dn_meta` lacks the key `{key}`.')
        num_groups = dn_meta['num_groups']
        single_pad = dn_meta['single_pad']
        if dn_meta['pad_size'] != num_groups * single_pad or (
                num_dn_queries != dn_meta['pad_size']):
            raise ValueError(
                f"Inconsistent dn_meta {dict(dn_meta)}: expected pad_size = "
                f'num_groups * single_pad = number of dn predictions '
                f'({num_dn_queries}).')
        pairs = []
        for gt_instances in batch_gt_instances:
            num_gt = len(gt_instances)
            if num_gt > single_pad:
                raise ValueError(
                    f'An image has {num_gt} GT instances but '
                    f"dn_meta['single_pad'] is {single_pad}.")
            device = gt_instances.labels.device
            gt_inds = torch.arange(num_gt, dtype=torch.long, device=device)
            group_starts = torch.arange(
                num_groups, dtype=torch.long, device=device) * single_pad
            pred_inds = (group_starts[:, None] + gt_inds[None]).flatten()
            pairs.append((pred_inds, gt_inds.repeat(num_groups)))
        return pairs

    def _loss_cls(self, cls_scores: Tensor, pairs: PairList,
                  batch_gt_instances: InstanceList,
                  avg_factor: float) -> Tensor:
        """Classification loss of one set; unpaired queries are background.

        Args:
            cls_scores (Tensor): Logits (B, Q, C) or (B, Q, C + 1).
            pairs (list[tuple[Tensor, Tensor]]): Per image pairs.
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            avg_factor (float): Normaliser of the focal loss.

        Returns:
            Tensor: Scalar loss.
        """
        # Label C = background for both mmdet's FocalLoss and the C + 1 CE.
        labels = cls_scores.new_full(
            cls_scores.shape[:2], self.num_classes, dtype=torch.long)
        for b, (pred_inds, gt_inds) in enumerate(pairs):
            labels[b, pred_inds] = batch_gt_instances[b].labels[gt_inds]
        cls_scores = cls_scores.flatten(0, 1)
        labels = labels.flatten()
        if not self.use_sigmoid_cls:
            # Class-weighted mean as F.cross_entropy(weight=...) does.
            if self.class_weight is None:
                avg_factor = labels.numel()
            else:
                avg_factor = cls_scores.new_tensor(
                    self.class_weight)[labels].sum()
        return self.loss_cls(cls_scores, labels, avg_factor=avg_factor)

    def _loss_masks(self, mask_preds: Tensor, pairs: PairList,
                    batch_gt_instances: InstanceList,
                    avg_factor: float) -> Tuple[Tensor, Tensor]:
        """Point-sampled mask BCE and dice losses of the paired queries.

        The points are the mmdet/detectron2 uncertainty sampling on the
        predicted logits (chosen without gradient); targets are sampled from
        the full-resolution GT masks at the same normalised points.

        Args:
            mask_preds (Tensor): Mask logits (B, Q, h, w).
            pairs (list[tuple[Tensor, Tensor]]): Per image pairs.
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            avg_factor (float): Normaliser (number of masks).

        Returns:
            tuple[Tensor, Tensor]: ``loss_mask`` and ``loss_dice``.
        """
        src_masks = torch.cat(
            [mask_preds[b][pred_inds] for b, (pred_inds, _) in
             enumerate(pairs)])
        if src_masks.size(0) == 0:
            zero = mask_preds.sum() * 0
            return zero, zero
        with torch.no_grad():
            # (M, num_points, 2) in [0, 1], uncertainty = -|logit|
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks.unsqueeze(1), None, self.num_points,
                self.oversample_ratio, self.importance_sample_ratio)
            # GT masks are sampled image by image, so images whose masks
            # have different sizes are fine; only the sampled corners of
            # the matched GT masks are read (no per-pair mask copies).
            num_pairs = [len(pred_inds) for pred_inds, _ in pairs]
            point_targets = []
            for gt_instances, (_, gt_inds), coords in zip(
                    batch_gt_instances, pairs,
                    point_coords.split(num_pairs)):
                if len(gt_inds) == 0:
                    continue
                point_targets.append(
                    point_sample_rows(gt_instances.masks, gt_inds,
                                      coords.to(src_masks.dtype)))
            # (M, num_points)
            point_targets = torch.cat(point_targets)
        # (M, num_points)
        point_preds = point_sample(src_masks.unsqueeze(1),
                                   point_coords).squeeze(1)

        loss_dice = self.loss_dice(
            point_preds, point_targets, avg_factor=avg_factor)
        # Mean over points, summed over masks, divided by avg_factor.
        loss_mask = self.loss_mask(
            point_preds.reshape(-1),
            point_targets.reshape(-1),
            avg_factor=avg_factor * self.num_points)
        return loss_mask, loss_dice

    def _loss_boxes(self, bbox_preds: Tensor, pairs: PairList,
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    avg_factor: float) -> Tuple[Tensor, Tensor]:
        """L1 (normalised cxcywh) and GIoU losses of the paired queries.

        Args:
            bbox_preds (Tensor): Normalised cxcywh boxes (B, Q, 4).
            pairs (list[tuple[Tensor, Tensor]]): Per image pairs.
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.
            avg_factor (float): Normaliser (number of boxes).

        Returns:
            tuple[Tensor, Tensor]: ``loss_bbox`` and ``loss_iou``.
        """
        src_boxes, tgt_boxes = [], []
        for b, (pred_inds, gt_inds) in enumerate(pairs):
            gt_instances = batch_gt_instances[b]
            if self.decouple_stuff_boxes:
                # Stuff boxes are not supervised, the normaliser is kept.
                is_thing = gt_instances.labels[
                    gt_inds] < self.num_things_classes
                pred_inds, gt_inds = pred_inds[is_thing], gt_inds[is_thing]
            img_h, img_w = batch_img_metas[b]['img_shape'][:2]
            factor = bbox_preds.new_tensor([img_w, img_h, img_w, img_h])
            gt_bboxes = get_box_tensor(gt_instances.bboxes)[gt_inds]
            src_boxes.append(bbox_preds[b][pred_inds])
            tgt_boxes.append(
                bbox_xyxy_to_cxcywh(gt_bboxes.to(bbox_preds) / factor))
        src_boxes = torch.cat(src_boxes)
        tgt_boxes = torch.cat(tgt_boxes)
        if src_boxes.size(0) == 0:
            zero = bbox_preds.sum() * 0
            return zero, zero
        loss_bbox = self.loss_bbox(
            src_boxes, tgt_boxes, avg_factor=avg_factor)
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(src_boxes),
            bbox_cxcywh_to_xyxy(tgt_boxes),
            avg_factor=avg_factor)
        return loss_bbox, loss_iou

    def _unpack(self, preds: dict) -> Tuple[Tensor, Tensor, Tensor]:
        """Check one prediction set and return its tensors in fp32.

        Losses are computed in fp32 (the heads may run in fp16 with AMP).
        """
        for key in ('cls_scores', 'mask_preds', 'bbox_preds'):
            if preds.get(key) is None:
                raise ValueError(
                    f'Prediction set lacks `{key}`; every set needs class, '
                    'mask and box predictions to compute the losses.')
        cls_scores = preds['cls_scores']
        if cls_scores.size(-1) != self.cls_out_channels:
            raise ValueError(
                f'`cls_scores` has {cls_scores.size(-1)} channels, expected '
                f'{self.cls_out_channels} for num_classes={self.num_classes}'
                f" with {type(self.loss_cls).__name__}.")
        return (cls_scores.float(), preds['mask_preds'].float(),
                preds['bbox_preds'].float())

    def _get_num_total_gt(self, batch_gt_instances: InstanceList,
                          ref: Tensor) -> float:
        """Number of GT instances in the batch, averaged over ranks, >= 1."""
        num_gt = sum(len(gt_instances) for gt_instances in batch_gt_instances)
        num_gt = reduce_mean(ref.new_tensor([num_gt], dtype=torch.float))
        return torch.clamp(num_gt, min=1).item()

    @staticmethod
    def _zero_losses(preds: dict) -> Tuple[Tensor, ...]:
        """Zero losses that stay connected to the graph of ``preds``.

        Sums run in fp32: under fp16 autocast the sum of a (B, Q, C) or
        (B, Q, h, w) tensor of ordinary logits overflows to inf, and
        inf * 0 would be NaN.
        """
        zero_cls = preds['cls_scores'].float().sum() * 0
        zero_mask = (preds['mask_preds'].float().sum() * 0
                     if preds.get('mask_preds') is not None else zero_cls)
        zero_bbox = preds['bbox_preds'].float().sum() * 0
        return zero_cls, zero_mask, zero_mask, zero_bbox, zero_bbox

    @staticmethod
    def _name(prefix: str, values: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Name the five losses of one set, e.g. ``d3.dn_loss_cls``."""
        return {
            prefix + name: value
            for name, value in zip(LOSS_NAMES, values)
        }

    @staticmethod
    def _check_gt(batch_gt_instances: InstanceList,
                  batch_img_metas: List[dict]) -> None:
        """Fail early with a clear message on malformed ground truth."""
        if len(batch_gt_instances) != len(batch_img_metas):
            raise ValueError(
                f'Got {len(batch_gt_instances)} `batch_gt_instances` but '
                f'{len(batch_img_metas)} `batch_img_metas`.')
        for gt_instances, img_meta in zip(batch_gt_instances,
                                          batch_img_metas):
            for key in ('labels', 'masks', 'bboxes'):
                if key not in gt_instances:
                    raise ValueError(f'gt_instances lack the field `{key}`.')
            if not isinstance(gt_instances.masks, Tensor) or (
                    gt_instances.masks.dim() != 3):
                raise ValueError('gt_instances.masks must be a Tensor '
                                 '(N, H, W) at the padded batch size.')
            if 'img_shape' not in img_meta:
                raise ValueError('img_meta lacks `img_shape`.')
