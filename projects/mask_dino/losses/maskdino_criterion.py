"""Set criterion of Mask DINO (matching + denoising losses)."""
from typing import (Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
from mmcv.ops import point_sample
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.losses import CrossEntropyLoss, FocalLoss, GIoULoss, L1Loss
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh,
                                   get_box_tensor)
from mmdet.utils import ConfigType, InstanceList, OptConfigType, reduce_mean

from ..layers.denoising import DNLayout
from ..utils import pass_down
from ..utils.box_ops import box_overlaps
from ..utils.point_ops import BatchMasks
from .giou_loss import DETRGIoULoss
from .prediction_set import (PredictionSet, SetGroup, batched_mask_maps,
                             batched_point_logits, group_sets)

# (pred_inds, gt_inds) of one image: prediction ``pred_inds[k]`` is
# supervised by ground truth ``gt_inds[k]``.
PairList = List[Tuple[Tensor, Tensor]]

LOSS_NAMES = ('loss_cls', 'loss_mask', 'loss_dice', 'loss_bbox', 'loss_iou')
BOX_LOSS_NAMES = ('loss_cls', 'loss_bbox', 'loss_iou')
# Chunk sizes of the batched mask computations: large enough for few
# operators (GPU kernels), small enough to bound their temporaries. The
# matching's mask costs take 2**23 logits (two prediction sets of 300
# queries x 12544 points at R50 scale: operators 14866 -> 14386, time and
# peak memory unchanged within noise); the point-sampled losses 2**21
# points (167 masks), their fastest CPU size (2**22: +0.9 s per R50
# 512x512 batch-2 iteration, mostly in the uncertainty sampling).
POINTS_PER_CHUNK = 2**23
LOSS_POINTS_PER_CHUNK = 2**21
# mmdet's weight_reduce_loss divides a mean by (avg_factor + this)
FLOAT32_EPS = torch.finfo(torch.float32).eps


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

    Box-only criteria (``with_mask=False``, set by ``MaskDINOHead``) take
    sets without masks and ground truth without masks, and give three
    losses per set (classification, L1, GIoU): no mask or dice term is
    computed and no point is drawn. They need ``loss_mask=None``,
    ``loss_dice=None`` and an assigner without mask costs.

    Args:
        num_classes (int): Number of classes C (things + stuff).
        assigner (:obj:`ConfigDict` or dict): Hungarian assigner, built with
            ``TASK_UTILS``. Its ``assign`` receives ``scores`` (Q, C) logits,
            ``masks`` (Q, h, w) logits and ``bboxes`` (Q, 4) pixel xyxy.
            The criterion passes it ``num_things_classes``,
            ``decouple_stuff_boxes`` and (unless set) ``num_points``.
        loss_cls (:obj:`ConfigDict` or dict): Classification loss, either a
            sigmoid focal loss over C logits or a softmax cross entropy over
            C + 1 logits (last = no-object, usually with class weights).
        loss_mask (:obj:`ConfigDict` or dict, optional): Sigmoid BCE on mask
            points; None without masks.
        loss_dice (:obj:`ConfigDict` or dict, optional): Dice loss on mask
            points; None without masks.
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
        with_mask (bool): Compute the mask losses and match with the mask
            costs. Defaults to True.
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
        loss_mask: OptConfigType = dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=5.0),
        loss_dice: OptConfigType = dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0),
        loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
        loss_iou: ConfigType = dict(type='DETRGIoULoss', loss_weight=2.0),
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        num_things_classes: Optional[int] = None,
        decouple_stuff_boxes: bool = False,
        with_mask: bool = True,
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
        self.with_mask = with_mask
        self.loss_names = LOSS_NAMES if with_mask else BOX_LOSS_NAMES

        assigner = pass_down(
            assigner,
            'MaskDINOCriterion',
            'assigner',
            num_things_classes=num_things_classes,
            decouple_stuff_boxes=decouple_stuff_boxes)
        # Matching points default to the loss points (official); a config
        # may match on another number.
        assigner.setdefault('num_points', num_points)
        self.assigner = TASK_UTILS.build(assigner)
        self.loss_cls = MODELS.build(loss_cls)
        if with_mask:
            self.loss_mask = MODELS.build(loss_mask)
            self.loss_dice = MODELS.build(loss_dice)
        else:
            self._check_box_only(loss_mask, loss_dice)
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

    def _check_box_only(self, loss_mask: OptConfigType,
                        loss_dice: OptConfigType) -> None:
        """Raise if a box-only criterion is configured with mask terms."""
        for name, cfg in (('loss_mask', loss_mask), ('loss_dice', loss_dice)):
            if cfg is not None:
                raise ValueError(
                    f'criterion.{name} must be None without masks '
                    f'(with_mask=False), got {cfg}')
        mask_costs = [
            type(c).__name__ for c in self.assigner.mask_match_costs
        ]
        if mask_costs:
            raise ValueError(
                'criterion.assigner.match_costs has mask costs '
                f'{mask_costs}, but there are no masks to match '
                '(with_mask=False): keep the class cost only')

    def forward(self, outputs: dict, batch_gt_instances: InstanceList,
                batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Compute the losses of all prediction sets.

        All matching sets of an image are matched in one batched cost
        computation with one device-to-host copy for the Hungarian solver;
        the point-sampled mask losses of all sets (matching and dn) are one
        computation; the class and box losses are one computation per
        group of sets with the same query count and normaliser (matching;
        dn), reduced per set. The pairs and all indices reach the device in
        one copy. The random points are drawn up front with the same
        ``torch.rand`` calls, shapes and order as the official set-by-set
        computation (per matching set: the matching points of every image
        with GT, the uncertainty-sampling candidates and uniform points of
        its pairs, then those of its dn twin), so seeded losses equal the
        official ones (``tests/test_equivalence``). Box-only
        criteria read no mask entry of the outputs or the ground truth.

        Args:
            outputs (dict): Head outputs: the final set (``cls_scores``
                (B, Q, C or C+1), ``bbox_preds`` (B, Q, 4) normalised
                cxcywh, and ``mask_preds`` (B, Q, h, w) or ``mask_embed``
                (B, Q, D) with the top-level ``mask_features``
                (B, D, h, w)), ``aux_outputs`` (list of sets),
                ``interm_outputs`` (set or None), ``dn_outputs`` (None or a
                set with its own ``aux_outputs``) and ``dn_meta`` (None, a
                :class:`DNLayout`, or a dict with ``num_groups`` and
                ``single_pad``).
            batch_gt_instances (list[:obj:`InstanceData`]): Per image
                ``labels`` (N,), ``masks`` (N, H, W) at the padded batch
                resolution and ``bboxes`` (N, 4) pixel xyxy.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.

        Returns:
            dict[str, Tensor]: Losses named ``loss_*`` (final set),
            ``d{i}.loss_*`` (aux), ``enc_loss_*`` (interm), ``dn_loss_*``
            and ``d{i}.dn_loss_*`` (denoising).
        """
        mask_features = outputs.get('mask_features')

        def as_set(preds: dict) -> PredictionSet:
            pred_set = PredictionSet.from_dict(preds, mask_features,
                                               self.with_mask)
            self._check_channels(pred_set.cls_scores)
            return pred_set

        aux_outputs = outputs.get('aux_outputs') or []
        interm_outputs = outputs.get('interm_outputs')
        dn_outputs = outputs.get('dn_outputs')
        match_sets = [('', as_set(outputs))]
        match_sets += [(f'd{i}.', as_set(p))
                       for i, p in enumerate(aux_outputs)]
        if interm_outputs is not None:
            match_sets.append(('enc_', as_set(interm_outputs)))

        # Official: the initial (pre-decoder) dn set is only supervised by
        # two-stage models.
        dn_aux_start = 0 if interm_outputs is not None else 1
        dn_aux_ids = range(dn_aux_start, len(aux_outputs))
        dn_sets, dn_meta = [], outputs.get('dn_meta')
        if dn_outputs is not None:
            if dn_meta is None:
                raise ValueError('`dn_meta` is required when `dn_outputs` '
                                 'is given.')
            dn_layout = DNLayout.from_meta(dn_meta)
            dn_aux_outputs = dn_outputs.get('aux_outputs') or []
            if len(dn_aux_outputs) != len(aux_outputs):
                raise ValueError(
                    f"`dn_outputs['aux_outputs']` has {len(dn_aux_outputs)} "
                    f'sets, expected {len(aux_outputs)} like `aux_outputs`.')
            dn_sets = [('dn_', as_set(dn_outputs))] + [
                (f'd{i}.dn_', as_set(dn_aux_outputs[i])) for i in dn_aux_ids
            ]

        num_total_gt = self._get_num_total_gt(batch_gt_instances,
                                              match_sets[0][1].cls_scores)
        num_gts = [len(gt_instances) for gt_instances in batch_gt_instances]
        num_pairs = [[min(s.num_queries, n) for n in num_gts]
                     for _, s in match_sets]
        dn_host_pairs = []
        if dn_sets:
            dn_host_pairs = self._dn_pairs_host(
                num_gts, dn_layout, dn_sets[0][1].num_queries)
            num_pairs += [[len(p) for p, _ in dn_host_pairs]] * len(dn_sets)
        match_points = loss_draws = gt_masks = None
        if self.with_mask:
            gt_masks = BatchMasks([gt.masks for gt in batch_gt_instances])
            match_points, loss_draws = self._draw_points(
                [s for _, s in match_sets], num_gts, num_pairs,
                self._dn_twins(len(match_sets), dn_aux_ids, bool(dn_sets)),
                match_sets[0][1].mask_tensor.device)

        factors = self._box_factors(batch_img_metas,
                                    match_sets[0][1].bbox_preds)
        host_pairs = self._match_sets([s for _, s in match_sets],
                                      batch_gt_instances, batch_img_metas,
                                      factors, match_points, gt_masks)
        host_pairs += [dn_host_pairs] * len(dn_sets)

        sets = match_sets + dn_sets
        avg_factors = [num_total_gt] * len(match_sets)
        if dn_sets:
            avg_factors += [num_total_gt * dn_layout.num_groups] * len(
                dn_sets)
        box_gt_mask = None
        if self.decouple_stuff_boxes:
            # Stuff boxes are not supervised, the normaliser is kept.
            box_gt_mask = self._host_labels(
                batch_gt_instances) < self.num_things_classes
        groups = group_sets([s.num_queries for _, s in sets], avg_factors,
                            host_pairs, num_gts, box_gt_mask)
        pairs, groups = self._indices_to_device(
            host_pairs if self.with_mask else [], groups,
            match_sets[0][1].cls_scores.device)

        mask_losses = [()] * len(sets)
        if self.with_mask:
            mask_losses = self._loss_masks_all([s for _, s in sets], pairs,
                                               gt_masks, avg_factors,
                                               loss_draws)
        cls_box_losses = self._loss_cls_boxes([s for _, s in sets], groups,
                                              batch_gt_instances, factors)
        losses = dict()
        for (prefix, _), (loss_cls, loss_bbox, loss_iou), set_mask_losses in \
                zip(sets, cls_box_losses, mask_losses):
            # (loss_mask, loss_dice), or nothing without masks
            losses.update(
                self._name(prefix, (loss_cls, *set_mask_losses, loss_bbox,
                                    loss_iou)))
        if dn_outputs is None:
            # DN was skipped this step; emit zeros so that every rank logs
            # the same keys.
            zeros = self._zero_losses(match_sets[0][1])
            losses.update(self._name('dn_', zeros))
            for i in dn_aux_ids:
                losses.update(self._name(f'd{i}.dn_', zeros))
        return losses

    def _draw_points(self, match_sets: List[PredictionSet],
                     num_gts: List[int], num_pairs: List[List[int]],
                     dn_twins: List[Optional[int]], device: torch.device
                     ) -> Tuple[List[List[Optional[Tensor]]],
                                List[Optional[Tuple[Tensor, ...]]]]:
        """Draw every random point of the criterion up front.

        Same calls, shapes and order as the official criterion, which
        handles the sets one after the other: for each matching set,
        ``rand(P, 2)`` for every image with GT (matching), then
        ``rand(M, P * oversample, 2)`` and
        ``rand(M, P - int(P * importance), 2)`` (uncertainty sampling of
        its M pairs), then the latter two for its dn twin, if it has one
        (final set, aux sets; not the interm set, which comes last).

        Args:
            match_sets (list[PredictionSet]): The matching sets.
            num_gts (list[int]): GT count per image.
            num_pairs (list[list[int]]): Per set (matching, then dn) and
                image the number of pairs.
            dn_twins (list[int | None]): Per matching set the index of its
                dn twin among all sets (after the matching sets), or None.
            device (torch.device): Device of the mask predictions.

        Returns:
            tuple: per matching set and image the (P, 2) matching points
            (None without GT), and per set the (candidates, uniform points)
            of the loss sampling (None without pairs).
        """
        num_points = self.assigner.num_points
        num_candidates = int(self.num_points * self.oversample_ratio)
        num_random = self.num_points - int(
            self.importance_sample_ratio * self.num_points)

        def loss_draws(num_masks: int) -> Optional[Tuple[Tensor, ...]]:
            if num_masks == 0:
                return None
            candidates = torch.rand(
                num_masks, num_candidates, 2, device=device)
            uniform = torch.rand(
                num_masks, num_random, 2,
                device=device) if num_random > 0 else None
            return candidates, uniform

        match_points, draws = [], [None] * len(num_pairs)
        for s, (pred_set, dn_twin) in enumerate(zip(match_sets, dn_twins)):
            match_points.append([
                torch.rand((num_points, 2), device=device)
                if n > 0 and pred_set.num_queries > 0 else None
                for n in num_gts
            ])
            draws[s] = loss_draws(sum(num_pairs[s]))
            if dn_twin is not None:
                draws[dn_twin] = loss_draws(sum(num_pairs[dn_twin]))
        return match_points, draws

    @staticmethod
    def _dn_twins(num_match_sets: int, dn_aux_ids: range,
                  with_dn: bool) -> List[Optional[int]]:
        """Per matching set (final, aux..., [interm]) the index of its dn
        set among all sets (matching sets first, then ``dn_``, then
        ``d{i}.dn_`` for ``i`` in ``dn_aux_ids``), or None."""
        twins: List[Optional[int]] = [None] * num_match_sets
        if with_dn:
            twins[0] = num_match_sets
            for k, i in enumerate(dn_aux_ids):
                twins[1 + i] = num_match_sets + 1 + k
        return twins

    def _match_sets(self, sets: List[PredictionSet],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict], factors: Tensor,
                    points: Optional[List[List[Optional[Tensor]]]],
                    gt_masks: Optional[BatchMasks]
                    ) -> List[List[Tuple[np.ndarray, np.ndarray]]]:
        """Hungarian-match all matching sets, image by image.

        Args:
            sets (list[PredictionSet]): S matching sets (same Q).
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.
            factors (Tensor): Per image (w, h, w, h) of ``img_shape``,
                (B, 4).
            points (list[list[Tensor]], optional): Per set and image the
                (P, 2) matching points (None for images without GT); None
                without masks.
            gt_masks (:obj:`BatchMasks`, optional): The GT masks of the
                batch; None without masks.

        Returns:
            list[list[tuple]]: Per set and image (pred_inds, gt_inds) as
            int64 numpy arrays, sorted by prediction.
        """
        costs, matched_imgs = [], []
        for b, (gt_instances, img_meta) in enumerate(
                zip(batch_gt_instances, batch_img_metas)):
            if len(gt_instances) == 0 or sets[0].num_queries == 0:
                continue
            with torch.no_grad(), torch.autocast(
                    device_type=factors.device.type, enabled=False):
                costs.append(
                    self._cost_matrices(
                        sets, b, gt_instances, img_meta, factors[b],
                        None if points is None else torch.stack(
                            [set_points[b] for set_points in points]),
                        gt_masks))
            matched_imgs.append(b)
        solved = dict(zip(matched_imgs, self.assigner.solve(costs)))
        empty = np.zeros(0, dtype=np.int64)
        return [[
            tuple(a.astype(np.int64) for a in solved[b][s])
            if b in solved else (empty, empty)
            for b in range(len(batch_gt_instances))
        ] for s in range(len(sets))]

    def _cost_matrices(self, sets: List[PredictionSet], img_id: int,
                       gt_instances: InstanceData, img_meta: dict,
                       factor: Tensor, points: Optional[Tensor],
                       gt_masks: Optional[BatchMasks]) -> Tensor:
        """Matching costs of all sets of one image.

        The class and box costs and the GT point samples are one
        computation for all sets; the mask costs, whose inputs are
        (Q, P) per set, run in chunks of sets of about
        ``POINTS_PER_CHUNK`` logits.

        Args:
            sets (list[PredictionSet]): S matching sets (same Q).
            img_id (int): Image index in the batch.
            gt_instances (:obj:`InstanceData`): GT of the image.
            img_meta (dict): Meta of the image with ``img_shape``.
            factor (Tensor): (w, h, w, h) scaling the normalised boxes to
                pixels, (4, ).
            points (Tensor, optional): Per set its (x, y) matching points
                in [0, 1], (S, P, 2); None for class and box costs only.
            gt_masks (:obj:`BatchMasks`, optional): The GT masks of the
                batch (None without ``points``).

        Returns:
            Tensor: Sanitised costs (S, Q, G).
        """
        bboxes = torch.stack([s.bbox_preds[img_id] for s in sets]).float()
        bboxes = bbox_cxcywh_to_xyxy(bboxes) * factor
        scores = torch.stack([s.cls_scores[img_id] for s in sets])
        row_costs = self.assigner.get_row_costs(
            scores, bboxes, gt_instances.labels,
            get_box_tensor(gt_instances.bboxes), img_meta)
        if points is None:
            return self.assigner.add_mask_costs(row_costs, None, None,
                                                img_meta)
        num_sets, num_points = points.shape[:2]
        # (S, G, P): every GT at the points of every set
        gt_points = gt_masks.sample_image(img_id, points.reshape(
            -1, 2)).view(-1, num_sets, num_points).transpose(0, 1)
        step = max(1, POINTS_PER_CHUNK // (sets[0].num_queries * num_points))
        return torch.cat([
            self.assigner.add_mask_costs(
                row_costs,
                batched_point_logits(sets[i:i + step], img_id,
                                     points[i:i + step]),
                gt_points[i:i + step], img_meta, slice(i, i + step))
            for i in range(0, num_sets, step)
        ])

    @staticmethod
    def _arrays_to_device(arrays: List[np.ndarray],
                          device: torch.device) -> List[Tensor]:
        """Move int64 host arrays to ``device`` in one copy (non-blocking
        from pinned memory on GPUs)."""
        flat = torch.from_numpy(np.concatenate(arrays).astype(np.int64))
        if device.type == 'cuda':
            flat = flat.pin_memory().to(device, non_blocking=True)
        else:
            flat = flat.to(device)
        return list(flat.split([len(a) for a in arrays]))

    @classmethod
    def _indices_to_device(
            cls, host_pairs: List[List[Tuple[np.ndarray, np.ndarray]]],
            groups: List[SetGroup], device: torch.device
    ) -> Tuple[List[PairList], List[SetGroup]]:
        """Move all pairs and the index arrays of the groups to ``device``
        in one copy.

        Returns:
            tuple: per set and image the pairs as LongTensors, and the
            groups with device indices.
        """
        arrays = [a for set_pairs in host_pairs for pair in set_pairs
                  for a in pair]
        arrays += [a for group in groups for a in group.index_arrays()]
        chunks = iter(cls._arrays_to_device(arrays, device))
        pairs = [[(next(chunks), next(chunks)) for _ in set_pairs]
                 for set_pairs in host_pairs]
        num_fields = len(SetGroup.INDEX_FIELDS)
        groups = [
            group.with_indices([next(chunks) for _ in range(num_fields)])
            for group in groups
        ]
        return pairs, groups

    def get_matched_pairs(self, preds: dict, batch_gt_instances: InstanceList,
                          batch_img_metas: List[dict]) -> PairList:
        """Hungarian-match one prediction set to the GT, image by image.

        Args:
            preds (dict): One prediction set (see :meth:`forward`).
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            batch_img_metas (list[dict]): Per image meta with ``img_shape``.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image (pred_inds, gt_inds),
            both LongTensor (num_matched,).
        """
        pred_set = PredictionSet.from_dict(preds, preds.get('mask_features'),
                                           self.with_mask)
        num_gts = [len(gt_instances) for gt_instances in batch_gt_instances]
        points = None
        if self.with_mask:
            points, _ = self._draw_points([pred_set], num_gts,
                                          [[0] * len(num_gts)], [None],
                                          pred_set.mask_tensor.device)
        factors = self._box_factors(batch_img_metas, pred_set.bbox_preds)
        host_pairs = self._match_sets(
            [pred_set], batch_gt_instances, batch_img_metas, factors, points,
            BatchMasks([gt.masks for gt in batch_gt_instances])
            if self.with_mask else None)
        return self._indices_to_device(host_pairs, [],
                                       pred_set.cls_scores.device)[0][0]

    @staticmethod
    def _dn_pairs_host(num_gts: List[int],
                       dn_meta: Union[DNLayout, Mapping[str, int]],
                       num_dn_queries: int
                       ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Host version of :meth:`get_dn_pairs` (numpy arrays)."""
        layout = DNLayout.from_meta(dn_meta)
        if num_dn_queries != layout.pad_size:
            raise ValueError(
                f'dn_meta has pad_size = num_groups * single_pad = '
                f'{layout.pad_size} but there are {num_dn_queries} dn '
                'predictions.')
        return layout.pairs(num_gts)

    @staticmethod
    def get_dn_pairs(batch_gt_instances: InstanceList,
                     dn_meta: Union[DNLayout, Mapping[str, int]],
                     num_dn_queries: int) -> PairList:
        """Fixed assignment of the denoising queries (see
        :class:`DNLayout`: slot ``t`` of every group is the noised copy of
        GT ``t``; slots beyond the image's GT count are background).

        Args:
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            dn_meta (DNLayout or dict): The layout, or a mapping with
                ``num_groups``, ``single_pad`` (and ``pad_size``).
            num_dn_queries (int): Number of dn predictions per image.

        Returns:
            list[tuple[Tensor, Tensor]]: Per image (pred_inds, gt_inds).
        """
        host_pairs = MaskDINOCriterion._dn_pairs_host(
            [len(gt) for gt in batch_gt_instances], dn_meta, num_dn_queries)
        return [(torch.from_numpy(p).to(gt.labels.device),
                 torch.from_numpy(g).to(gt.labels.device))
                for (p, g), gt in zip(host_pairs, batch_gt_instances)]

    def _loss_masks_all(self, sets: List[PredictionSet],
                        pairs: List[PairList], gt_masks: BatchMasks,
                        avg_factors: List[float],
                        draws: List[Optional[Tuple[Tensor, ...]]]
                        ) -> List[Tuple[Tensor, Tensor]]:
        """Point-sampled mask BCE and dice losses of all sets at once.

        Only the paired queries get logit maps (one matrix product per
        image for all sets). Points are the mmdet/detectron2 uncertainty
        sampling on those maps (chosen without gradient) from the
        pre-drawn candidates; targets are sampled from the full-resolution
        GT masks at the same normalised points. The masks of all sets are
        processed together in chunks of about ``LOSS_POINTS_PER_CHUNK``
        points, which bounds the temporaries (memory on GPUs, cache on CPUs).

        Args:
            sets (list[PredictionSet]): All sets (matching, then dn).
            pairs (list[list[tuple[Tensor, Tensor]]]): Per set and image
                the pairs.
            gt_masks (:obj:`BatchMasks`): The GT masks of the batch.
            avg_factors (list[float]): Per set the normaliser (number of
                masks).
            draws (list[tuple[Tensor, ...]]): Per set the candidate and
                uniform points of :meth:`_draw_points` (None without pairs).

        Returns:
            list[tuple[Tensor, Tensor]]: Per set ``loss_mask`` and
            ``loss_dice``.
        """
        num_imgs = len(gt_masks.num_gts)
        # blocks (set s, image b) in the row order of the draws
        blocks = [(s, b) for s in range(len(sets)) for b in range(num_imgs)]
        maps = {}
        with torch.autocast(
                device_type=sets[0].cls_scores.device.type, enabled=False):
            for b in range(num_imgs):
                for s, block_maps in enumerate(
                        batched_mask_maps(
                            sets, b,
                            [set_pairs[b][0] for set_pairs in pairs])):
                    maps[s, b] = block_maps
        sizes = [len(pairs[s][b][0]) for s, b in blocks]
        # the pre-drawn points of every block: rows of its set's draws
        candidates_of, uniform_of = {}, {}
        for s, set_draws in enumerate(draws):
            if set_draws is None:
                continue
            set_sizes = sizes[s * num_imgs:(s + 1) * num_imgs]
            for set_points, blocks_of in zip(set_draws,
                                             (candidates_of, uniform_of)):
                if set_points is not None:
                    for b, block in enumerate(set_points.split(set_sizes)):
                        blocks_of[s, b] = block

        def rows(block_tensors: Dict[Tuple[int, int], Tensor],
                 chunk: List[Tuple[int, int, int]]) -> Tensor:
            """The rows of a chunk's pieces of ``block_tensors``."""
            return torch.cat([
                block_tensors[blocks[k]][start:stop]
                if stop - start < sizes[k] else block_tensors[blocks[k]]
                for k, start, stop in chunk
            ])

        bce, dice = [], []
        max_rows = max(1, LOSS_POINTS_PER_CHUNK // self.num_points)
        for chunk in self._chunk_rows(sizes, max_rows):
            chunk_maps = rows(maps, chunk).unsqueeze(1)
            with torch.no_grad():
                candidates = rows(candidates_of, chunk)
                # no uniform points at importance_sample_ratio 1
                uniform = rows(uniform_of, chunk) if uniform_of else None
                # (M, num_points, 2) in [0, 1], uncertainty = -|logit|
                point_coords = self._uncertain_points(chunk_maps, candidates,
                                                      uniform)
                point_targets = gt_masks.sample(
                    [(blocks[k][1], pairs[blocks[k][0]][blocks[k][1]][1]
                      [start:stop]) for k, start, stop in chunk],
                    point_coords.to(chunk_maps.dtype))
            # (M, num_points)
            point_preds = point_sample(chunk_maps, point_coords).squeeze(1)
            # per-mask losses (weighted, unreduced)
            dice.append(
                self.loss_dice(
                    point_preds, point_targets, reduction_override='none'))
            bce.append(
                self.loss_mask(
                    point_preds, point_targets,
                    reduction_override='none').sum(-1))
        num_masks = [sum(sizes[s * num_imgs:(s + 1) * num_imgs])
                     for s in range(len(sets))]
        if sum(num_masks) > 0:
            dice = torch.cat(dice).split(num_masks)
            bce = torch.cat(bce).split(num_masks)
        losses = []
        for s, (pred_set, avg_factor) in enumerate(zip(sets, avg_factors)):
            if num_masks[s] == 0:
                zero = pred_set.zero_mask_loss()
                losses.append((zero, zero))
                continue
            # mean over points, summed over masks, divided by avg_factor
            losses.append((bce[s].sum() / (avg_factor * self.num_points),
                           dice[s].sum() / avg_factor))
        return losses

    @staticmethod
    def _chunk_rows(sizes: List[int],
                    max_rows: int) -> List[List[Tuple[int, int, int]]]:
        """Split the rows of consecutive blocks into chunks of
        ``max_rows`` rows (the last one shorter); a block may straddle two
        chunks. Every row is computed on its own, so the chunking changes
        no value, only the number and size of the operations.

        Args:
            sizes (list[int]): Rows of every block.
            max_rows (int): Rows per chunk.

        Returns:
            list[list[tuple[int, int, int]]]: Per chunk its pieces
            (block index, first row, end row) in row order.
        """
        chunks, free = [], 0
        for k, size in enumerate(sizes):
            start = 0
            while start < size:
                if free == 0:
                    chunks.append([])
                    free = max_rows
                stop = min(size, start + free)
                chunks[-1].append((k, start, stop))
                free -= stop - start
                start = stop
        return chunks

    def _uncertain_points(self, mask_logits: Tensor, candidates: Tensor,
                          uniform: Optional[Tensor]) -> Tensor:
        """Uncertainty-based point sampling from pre-drawn points.

        mmdet's ``get_uncertain_point_coords_with_randomness`` with its
        random draws passed in: the ``int(importance_sample_ratio *
        num_points)`` candidates of largest uncertainty ``-|logit|``, then
        the uniform points.

        Args:
            mask_logits (Tensor): (M, 1, h, w).
            candidates (Tensor): (M, num_points * oversample_ratio, 2).
            uniform (Tensor, optional): (M, num_random, 2).

        Returns:
            Tensor: (M, num_points, 2) normalised (x, y) points.
        """
        num_uncertain = int(self.importance_sample_ratio * self.num_points)
        uncertainty = -point_sample(mask_logits, candidates)[:, 0].abs()
        # The set of points is mmdet's; their order only changes the float
        # rounding of the sums over points, and sorting them (mmdet's
        # sorted=True) was a third of the CPU time of the mask losses.
        idx = torch.topk(
            uncertainty, k=num_uncertain, dim=1, sorted=False)[1]
        # row-wise selection as one flat index (torch.gather with an
        # expanded index is several times slower on CPU)
        num_masks, num_candidates = candidates.shape[:2]
        idx = idx + num_candidates * torch.arange(
            num_masks, device=idx.device)[:, None]
        points = candidates.reshape(-1, 2)[idx.flatten()].view(
            num_masks, num_uncertain, 2)
        if uniform is not None:
            points = torch.cat((points, uniform), dim=1)
        return points

    def _loss_cls_boxes(
            self, sets: List[PredictionSet], groups: List[SetGroup],
            batch_gt_instances: InstanceList,
            factors: Tensor) -> List[Tuple[Tensor, Tensor, Tensor]]:
        """Classification, L1 and GIoU losses of all sets, group by group.

        Each loss is computed once for all sets of a group (see
        :class:`SetGroup`: one computation instead of one per set), then
        reduced per set.

        Args:
            sets (list[PredictionSet]): All sets (matching, then dn).
            groups (list[SetGroup]): The sets grouped by Q and normaliser,
                with device indices.
            batch_gt_instances (list[:obj:`InstanceData`]): Batch of GT.
            factors (Tensor): Per image (w, h, w, h) of ``img_shape``,
                (B, 4).

        Returns:
            list[tuple[Tensor, Tensor, Tensor]]: Per set ``loss_cls``,
            ``loss_bbox`` and ``loss_iou``.
        """
        gt_labels = torch.cat([gt.labels for gt in batch_gt_instances])
        gt_boxes = self._normalised_gt_boxes(batch_gt_instances, factors)
        losses = [None] * len(sets)
        for group in groups:
            group_sets = [sets[s] for s in group.set_ids]
            loss_cls = self._loss_cls_group(group_sets, group, gt_labels)
            loss_bbox, loss_iou = self._loss_boxes_group(
                group_sets, group, gt_boxes)
            for s, *values in zip(group.set_ids, loss_cls.unbind(),
                                  loss_bbox.unbind(), loss_iou.unbind()):
                losses[s] = tuple(values)
        return losses

    @staticmethod
    def _normalised_gt_boxes(batch_gt_instances: InstanceList,
                             factors: Tensor) -> Tensor:
        """float32 GT boxes (G, 4) of the batch, concatenated image by
        image, as cxcywh normalised by ``factors`` (B, 4) of their image."""
        boxes = [
            get_box_tensor(gt.bboxes).to(factors) / factors[b]
            for b, gt in enumerate(batch_gt_instances)
        ]
        return bbox_xyxy_to_cxcywh(torch.cat(boxes))

    def _loss_cls_group(self, sets: List[PredictionSet], group: SetGroup,
                        gt_labels: Tensor) -> Tensor:
        """Classification losses of the sets of a group; unpaired queries
        are background.

        Args:
            sets (list[PredictionSet]): The S sets, logits (B, Q, C) or
                (B, Q, C + 1) each.
            group (SetGroup): Their pairs.
            gt_labels (Tensor): Labels (G, ) of the batch's GT.

        Returns:
            Tensor: (S, ) the loss of every set.
        """
        # (S, B * Q, C') logits
        scores = torch.stack([s.cls_scores for s in sets]).float().flatten(
            1, 2)
        # Label C = background for both mmdet's FocalLoss and the C + 1 CE.
        labels = gt_labels.new_full(
            scores.shape[:2], self.num_classes, dtype=torch.long)
        labels.view(-1)[group.cls_rows] = gt_labels[group.cls_gts]
        avg_factors = self._cls_avg_factors(labels, group.avg_factor)
        if not self._cls_is_batched():
            if not isinstance(avg_factors, Tensor):
                avg_factors = [avg_factors] * group.num_sets
            return torch.stack([
                self.loss_cls(set_scores, set_labels, avg_factor=avg_factor)
                for set_scores, set_labels, avg_factor in zip(
                    scores, labels, avg_factors)
            ])
        # weighted elementwise loss: (S * B * Q, C) focal, (S * B * Q, ) CE
        loss = self.loss_cls(
            scores.flatten(0, 1), labels.flatten(), reduction_override='none')
        sums = loss.view(labels.shape + loss.shape[1:]).flatten(1).sum(1)
        # mmdet's weight_reduce_loss: sum / (avg_factor + float32 eps)
        return sums / (avg_factors + FLOAT32_EPS)

    def _cls_is_batched(self) -> bool:
        """Whether ``loss_cls`` is mmdet's sigmoid focal loss or softmax
        cross entropy with mean reduction: its unreduced loss summed per
        set and divided by the set's normaliser is then what a call per set
        computes. Any other loss is called set by set."""
        loss = self.loss_cls
        if self._is_mean(loss, FocalLoss):
            return loss.use_sigmoid and not loss.activated
        if self._is_mean(loss, CrossEntropyLoss):
            return not (loss.use_sigmoid or loss.use_mask)
        return False

    def _cls_avg_factors(self, labels: Tensor,
                         avg_factor: float) -> Union[float, Tensor]:
        """Normaliser of the classification loss of S sets with ``labels``
        (S, N), common or per set: ``avg_factor`` for sigmoid losses; for
        the softmax CE N without class weights, else the class-weighted
        count (S, ) as ``F.cross_entropy(weight=...)`` averages."""
        if self.use_sigmoid_cls:
            return avg_factor
        if self.class_weight is None:
            return labels.size(1)
        return labels.new_tensor(
            self.class_weight, dtype=torch.float)[labels].sum(1)

    def _loss_boxes_group(self, sets: List[PredictionSet], group: SetGroup,
                          gt_boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """L1 (normalised cxcywh) and GIoU losses of the sets of a group.

        Args:
            sets (list[PredictionSet]): The S sets, normalised cxcywh boxes
                (B, Q, 4) each.
            group (SetGroup): Their box pairs.
            gt_boxes (Tensor): Normalised cxcywh boxes (G, 4) of the
                batch's GT.

        Returns:
            tuple[Tensor, Tensor]: ``loss_bbox`` and ``loss_iou``, (S, )
            each.
        """
        # (S * B * Q, 4)
        boxes = torch.stack([s.bbox_preds for s in sets]).float().view(-1, 4)
        if sum(group.box_counts) == 0:
            zero = (boxes.sum() * 0).expand(group.num_sets)
            return zero, zero
        src_boxes = boxes[group.box_rows]
        tgt_boxes = gt_boxes[group.box_gts]
        if self._is_mean(self.loss_bbox, L1Loss):
            # weighted |src - tgt| per pair
            loss_bbox = self._set_means(
                self.loss_bbox(
                    src_boxes, tgt_boxes, reduction_override='none').sum(-1),
                group)
        else:
            loss_bbox = self._set_by_set(self.loss_bbox, src_boxes,
                                         tgt_boxes, group)
        src_boxes = bbox_cxcywh_to_xyxy(src_boxes)
        tgt_boxes = bbox_cxcywh_to_xyxy(tgt_boxes)
        if self._is_mean(self.loss_iou, GIoULoss) or self._is_mean(
                self.loss_iou, DETRGIoULoss):
            loss_iou = self._set_means(
                self._giou_terms(src_boxes, tgt_boxes), group)
        else:
            loss_iou = self._set_by_set(self.loss_iou, src_boxes, tgt_boxes,
                                        group)
        return loss_bbox, loss_iou

    @staticmethod
    def _is_mean(loss: torch.nn.Module, loss_type: type) -> bool:
        """Whether ``loss`` is exactly ``loss_type`` with mean reduction
        (then it is reduced here, set by set, from its unreduced form)."""
        return type(loss) is loss_type and loss.reduction == 'mean'

    def _giou_terms(self, pred: Tensor, target: Tensor) -> Tensor:
        """The unreduced ``GIoULoss`` or :class:`DETRGIoULoss` (n, ) of
        aligned xyxy boxes (n, 4), weighted.

        mmdet's own computation floors its areas with ``new_tensor([eps])``,
        a host copy that waits for the GPU; :func:`box_overlaps` floors on
        the device: equal values and gradients.
        """
        gious = box_overlaps(
            pred,
            target,
            mode='giou',
            is_aligned=True,
            eps=self.loss_iou.eps,
            eps_mode=getattr(self.loss_iou, 'eps_mode', 'floor'))
        return self.loss_iou.loss_weight * (1 - gious)

    @staticmethod
    def _set_means(terms: Tensor, group: SetGroup) -> Tensor:
        """Per-pair losses (K, ) summed per set and divided by the
        normaliser as mmdet's ``weight_reduce_loss`` does (sum /
        (avg_factor + float32 eps)): (S, )."""
        sums = terms.new_zeros(group.num_sets).index_add(
            0, group.box_sets, terms)
        return sums / (group.avg_factor + FLOAT32_EPS)

    @staticmethod
    def _set_by_set(loss: torch.nn.Module, pred: Tensor, target: Tensor,
                    group: SetGroup) -> Tensor:
        """``loss`` called on the (K, 4) box pairs of each set, for losses
        without a batched form here: (S, ); zero for sets without pairs."""
        return torch.stack([
            loss(set_pred, set_target, avg_factor=group.avg_factor)
            if len(set_pred) else set_pred.sum() * 0
            for set_pred, set_target in zip(
                pred.split(group.box_counts), target.split(group.box_counts))
        ])

    @staticmethod
    def _box_factors(batch_img_metas: List[dict], ref: Tensor) -> Tensor:
        """(B, 4) float32 (w, h, w, h) of every ``img_shape`` on the device
        of ``ref`` (one copy, non-blocking from pinned memory on GPUs)."""
        factors = torch.tensor([[m['img_shape'][1], m['img_shape'][0]] * 2
                                for m in batch_img_metas],
                               dtype=torch.float32)
        if ref.device.type == 'cuda':
            return factors.pin_memory().to(ref.device, non_blocking=True)
        return factors.to(ref.device)

    def _check_channels(self, cls_scores: Tensor) -> None:
        """Raise if the class logits do not fit the classification loss."""
        if cls_scores.size(-1) != self.cls_out_channels:
            raise ValueError(
                f'`cls_scores` has {cls_scores.size(-1)} channels, expected '
                f'{self.cls_out_channels} for num_classes={self.num_classes}'
                f" with {type(self.loss_cls).__name__}.")

    def _get_num_total_gt(self, batch_gt_instances: InstanceList,
                          ref: Tensor) -> float:
        """Number of GT instances in the batch, averaged over ranks, >= 1."""
        num_gt = sum(len(gt_instances) for gt_instances in batch_gt_instances)
        num_gt = reduce_mean(ref.new_tensor([num_gt], dtype=torch.float))
        return torch.clamp(num_gt, min=1).item()

    def _zero_losses(self, pred_set: PredictionSet) -> Tuple[Tensor, ...]:
        """Zero losses (one per name of ``loss_names``) that stay
        connected to the graph of ``pred_set``.

        Sums run in fp32: under fp16 autocast the sum of a (B, Q, C) or
        (B, Q, h, w) tensor of ordinary logits overflows to inf, and
        inf * 0 would be NaN.
        """
        zero_cls = pred_set.cls_scores.float().sum() * 0
        zero_bbox = pred_set.bbox_preds.float().sum() * 0
        if not self.with_mask:
            return zero_cls, zero_bbox, zero_bbox
        zero_mask = pred_set.zero_mask_loss()
        return zero_cls, zero_mask, zero_mask, zero_bbox, zero_bbox

    def _name(self, prefix: str,
              values: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Name the losses of one set (``loss_names``), e.g.
        ``d3.dn_loss_cls``."""
        if len(values) != len(self.loss_names):
            raise ValueError(f'{len(values)} losses for the names '
                             f'{self.loss_names}')
        return {
            prefix + name: value
            for name, value in zip(self.loss_names, values)
        }

    @staticmethod
    def _host_labels(batch_gt_instances: InstanceList) -> np.ndarray:
        """The GT labels of the batch on the host, concatenated image by
        image (G, ): one host synchronisation, only for the decoupled stuff
        boxes (off in the released configs). The targets themselves are
        checked where they enter the head (``heads/targets.py``)."""
        return torch.cat([gt.labels.flatten() for gt in batch_gt_instances
                          ]).cpu().numpy()
