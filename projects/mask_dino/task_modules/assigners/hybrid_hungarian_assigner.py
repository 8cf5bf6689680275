"""Hybrid bipartite matching of Mask DINO (class + box + mask costs)."""
from typing import List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.ops import point_sample
from mmdet.models.task_modules.assigners import (AssignResult,
                                                 CrossEntropyLossCost,
                                                 DiceCost, FocalLossCost,
                                                 HungarianAssigner)
from mmdet.registry import TASK_UTILS
from mmengine import ConfigDict
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .box_costs import row_match_cost

CostCfg = Union[dict, ConfigDict]


class RowCosts(NamedTuple):
    """The class and box costs of S prediction sets of one image.

    Attributes:
        match (list[Tensor | None]): Per entry of ``match_costs`` its
            weighted (S, Q, G) matrix; None for a mask cost (computed by
            :meth:`HybridHungarianAssigner.add_mask_costs`).
        box (Tensor, optional): The summed (and possibly stuff-decoupled)
            box costs (S, Q, G); None without box costs.
    """
    match: List[Optional[Tensor]]
    box: Optional[Tensor]


def _reads_masks(match_cost) -> bool:
    """Whether a match cost compares masks (so it needs the points of one
    set at a time) rather than one prediction row with one GT."""
    if isinstance(match_cost, FocalLossCost):
        return match_cost.binary_input
    return isinstance(match_cost, (CrossEntropyLossCost, DiceCost))


def batched_mask_cost(match_cost: Union[CrossEntropyLossCost, DiceCost],
                      pred_masks: Tensor, gt_masks: Tensor) -> Tensor:
    """mmdet's sigmoid-BCE or dice mask cost for S sets at once.

    Same formulas as ``CrossEntropyLossCost(use_sigmoid=True)`` and
    ``DiceCost``, with a set dimension. The products are ``bmm`` calls, not
    ``einsum``, which dispatches about ten reshaping operators around each.

    Args:
        match_cost: The configured cost (its weight, eps, ...).
        pred_masks (Tensor): Sampled logits (S, Q, P).
        gt_masks (Tensor): Sampled targets (S, G, P).

    Returns:
        Tensor: Weighted costs (S, Q, G).
    """
    if isinstance(match_cost, CrossEntropyLossCost):
        if not match_cost.use_sigmoid:
            raise NotImplementedError(
                'CrossEntropyLossCost supports use_sigmoid=True only.')
        # torch's BCE-with-logits is (1 - t) * x - logsigmoid(x): for the
        # targets 1 and 0 that is -logsigmoid(x) and x - logsigmoid(x),
        # bit for bit, from one logsigmoid and without the target tensors
        log_sig = F.logsigmoid(pred_masks)
        pos = log_sig.neg()
        neg = pred_masks - log_sig
        cost = (torch.bmm(pos, gt_masks.transpose(1, 2)) +
                torch.bmm(neg, (1 - gt_masks).transpose(1, 2)))
        cost = cost / pred_masks.size(-1)
    else:
        if match_cost.pred_act:
            pred_masks = pred_masks.sigmoid()
        numerator = 2 * torch.bmm(pred_masks, gt_masks.transpose(1, 2))
        if match_cost.naive_dice:
            denominator = (pred_masks.sum(-1)[:, :, None] +
                           gt_masks.sum(-1)[:, None, :])
        else:
            denominator = (pred_masks.pow(2).sum(-1)[:, :, None] +
                           gt_masks.pow(2).sum(-1)[:, None, :])
        cost = 1 - (numerator + match_cost.eps) / (
            denominator + match_cost.eps)
    return cost * match_cost.weight


@TASK_UTILS.register_module()
class HybridHungarianAssigner(HungarianAssigner):
    """One-to-one matching on a single class + box + mask cost matrix.

    This is the "hybrid bipartite matching" of `Mask DINO
    <https://arxiv.org/abs/2206.02777>`_: every prediction is compared with
    every ground truth through the sum of a classification cost, box costs
    and mask costs, and the Hungarian algorithm picks the assignment of
    minimum total cost. On top of :class:`HungarianAssigner` this class

    - point-samples the masks: one set of ``num_points`` uniform random
      points in ``[0, 1]^2`` per image, shared by all predictions (1/4
      resolution logits) and all ground truths (full resolution binary
      masks), as in the official matcher;
    - computes every cost in fp32 with autocast disabled, so fp16 logits
      cannot turn ``log(1 - p + eps)`` into ``-inf``;
    - sanitises the summed matrix (NaN -> ``+cost_clamp``, +-inf and large
      values clamped to ``+-cost_clamp``) so scipy never sees a non-finite
      cost; a prediction with NaN outputs is thus the least preferred one;
    - optionally decouples the boxes of stuff ground truths (the paper's
      "decoupled box prediction" for panoptic segmentation).

    The official cost (spec section 3) is reproduced by::

        match_costs=[
            dict(type='FocalLossCost', weight=4.0, eps=1e-8),
            dict(type='CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
            dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0),
        ],
        box_match_costs=[
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0),
        ],
        num_points=12544

    Note that the focal cost needs ``eps=1e-8`` explicitly (mmdet's default
    is 1e-12); the official formula is
    ``0.25 (1-p)^2 (-log(p+eps)) - 0.75 p^2 (-log(1-p+eps))`` at the GT
    class.

    Args:
        match_costs (list[dict | :obj:`ConfigDict`] | dict): Configs of the
            class and mask costs, built through ``TASK_UTILS``. Mask costs
            receive the point-sampled masks as ``masks`` of shape
            (num_preds, num_points) / (num_gts, num_points).
        box_match_costs (list[dict | :obj:`ConfigDict`] | dict): Configs of
            the box costs. They receive ``bboxes`` in pixel xyxy of the
            ``img_shape`` frame. Kept apart from ``match_costs`` so they can
            be decoupled for stuff ground truths. May be empty.
        num_points (int): Number of points sampled per image for the mask
            costs. Defaults to 12544 (= 112 * 112).
        num_things_classes (int, optional): Labels ``>= num_things_classes``
            are stuff. Only used when ``decouple_stuff_boxes`` is True.
            Defaults to None.
        decouple_stuff_boxes (bool): If True, the box-cost columns of stuff
            ground truths are replaced by one constant, the mean of the box
            costs over all predictions and thing ground truths (0 if the
            image has no thing). A constant column does not change which
            prediction a stuff GT gets, so stuff is matched by class and
            mask only while things keep their box costs. The official
            ``panoptic_on`` matcher branch does exactly this but is never
            enabled in the released configs, so the default False
            reproduces the released checkpoints. Defaults to False.
        cost_clamp (float): Bound applied to the final cost matrix.
            Defaults to 1e8.
    """

    def __init__(self,
                 match_costs: Union[List[CostCfg], CostCfg],
                 box_match_costs: Union[List[CostCfg], CostCfg],
                 num_points: int = 12544,
                 num_things_classes: Optional[int] = None,
                 decouple_stuff_boxes: bool = False,
                 cost_clamp: float = 1e8) -> None:
        super().__init__(match_costs=match_costs)
        if isinstance(box_match_costs, dict):
            box_match_costs = [box_match_costs]
        self.box_match_costs = [
            TASK_UTILS.build(match_cost) for match_cost in box_match_costs
        ]
        if num_points <= 0:
            raise ValueError(
                f'num_points must be positive, got {num_points}.')
        if decouple_stuff_boxes and num_things_classes is None:
            raise ValueError('decouple_stuff_boxes=True needs '
                             'num_things_classes (labels >= it are stuff).')
        if not cost_clamp > 0:
            raise ValueError(
                f'cost_clamp must be positive, got {cost_clamp}.')
        self.num_points = num_points
        self.num_things_classes = num_things_classes
        self.decouple_stuff_boxes = decouple_stuff_boxes
        self.cost_clamp = float(cost_clamp)

    @property
    def mask_match_costs(self) -> list:
        """The configured costs that compare masks; without them the
        assigner needs no mask inputs (box-only matching)."""
        return [c for c in self.match_costs if _reads_masks(c)]

    @torch.no_grad()
    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               point_coords: Optional[Tensor] = None,
               **kwargs) -> AssignResult:
        """Assign each prediction to one ground truth or to background.

        Args:
            pred_instances (:obj:`InstanceData`): Predictions of one image:

                - scores (Tensor): Class logits, (num_preds, num_classes).
                - masks (Tensor): Mask logits, (num_preds, h, w) at 1/4 of
                  the padded input, or already sampled (num_preds, P). Not
                  needed without mask costs.
                - bboxes (Tensor): Pixel xyxy boxes in the ``img_shape``
                  frame, (num_preds, 4).
            gt_instances (:obj:`InstanceData`): Ground truth of one image:

                - labels (Tensor): (num_gts, ) in [0, num_classes).
                - masks (Tensor): Binary masks, (num_gts, H, W) at the
                  padded input resolution, or already sampled
                  (num_gts, P). Not needed without mask costs.
                - bboxes (Tensor): Pixel xyxy boxes, (num_gts, 4).
            img_meta (dict): Image information with ``img_shape``.
            point_coords (Tensor, optional): Normalised (x, y) points in
                [0, 1] of shape (P, 2) used instead of random ones (for
                reproducibility); ignored when the masks are already
                sampled. Defaults to None.

        Returns:
            :obj:`AssignResult`: ``gt_inds`` is 0 for background and the
            1-based index of the assigned GT otherwise; ``labels`` is the
            assigned GT label or -1.
        """
        self._check_inputs(pred_instances, gt_instances, img_meta)
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        if num_gts == 0 or num_preds == 0:
            # the parent returns before building any cost in this case
            return super().assign(pred_instances, gt_instances, img_meta)

        cost = self.get_cost_matrix(pred_instances, gt_instances, img_meta,
                                    point_coords)
        row_inds, col_inds = self.solve([cost[None]])[0][0]

        gt_labels = gt_instances.labels
        device = gt_labels.device
        row_inds = torch.from_numpy(row_inds).to(device)
        col_inds = torch.from_numpy(col_inds).to(device)
        assigned_gt_inds = gt_labels.new_zeros((num_preds, ))
        assigned_gt_inds[row_inds] = col_inds + 1
        assigned_labels = gt_labels.new_full((num_preds, ), -1)
        assigned_labels[row_inds] = gt_labels[col_inds]
        return AssignResult(
            num_gts=num_gts,
            gt_inds=assigned_gt_inds,
            max_overlaps=None,
            labels=assigned_labels)

    @torch.no_grad()
    def get_cost_matrix(self,
                        pred_instances: InstanceData,
                        gt_instances: InstanceData,
                        img_meta: dict,
                        point_coords: Optional[Tensor] = None) -> Tensor:
        """Compute the sanitised fp32 cost matrix.

        Args and shapes as in :meth:`assign` (both instance sets must be
        non-empty).

        Returns:
            Tensor: Cost of shape (num_preds, num_gts), float32, finite and
            within ``[-cost_clamp, cost_clamp]``.
        """
        device = pred_instances.scores.device
        pred_masks = gt_masks = None
        if 'masks' in pred_instances:
            with torch.autocast(device_type=device.type, enabled=False):
                pred_masks, gt_masks = self.sample_masks(
                    pred_instances.masks, gt_instances.masks, point_coords)
            pred_masks, gt_masks = pred_masks[None], gt_masks[None]
        return self.get_cost_matrices(pred_instances.scores[None],
                                      pred_instances.bboxes[None],
                                      pred_masks, gt_instances.labels,
                                      gt_instances.bboxes, gt_masks,
                                      img_meta)[0]

    @torch.no_grad()
    def get_cost_matrices(self, scores: Tensor, bboxes: Tensor,
                          mask_logits: Optional[Tensor], gt_labels: Tensor,
                          gt_bboxes: Tensor, gt_masks: Optional[Tensor],
                          img_meta: dict) -> Tensor:
        """Cost matrices of S prediction sets of one image at once.

        Set ``s`` is compared with the ground truth sampled at its own
        points. :meth:`get_row_costs` followed by :meth:`add_mask_costs`
        for all sets.

        Args:
            scores (Tensor): Class logits (S, Q, C).
            bboxes (Tensor): Pixel xyxy boxes (S, Q, 4).
            mask_logits (Tensor, optional): Sampled mask logits (S, Q, P);
                None without mask costs.
            gt_labels (Tensor): (G, ).
            gt_bboxes (Tensor): Pixel xyxy boxes (G, 4).
            gt_masks (Tensor, optional): GT masks sampled at the points of
                each set, (S, G, P); None without mask costs.
            img_meta (dict): Image information with ``img_shape``.

        Returns:
            Tensor: Sanitised float32 costs (S, Q, G).
        """
        row_costs = self.get_row_costs(scores, bboxes, gt_labels, gt_bboxes,
                                       img_meta)
        return self.add_mask_costs(row_costs, mask_logits, gt_masks,
                                   img_meta)

    @torch.no_grad()
    def get_row_costs(self, scores: Tensor, bboxes: Tensor,
                      gt_labels: Tensor, gt_bboxes: Tensor,
                      img_meta: dict) -> RowCosts:
        """The costs that compare one prediction row with one GT (class
        and box costs) of S sets of one image, in one computation.

        They are small (S, Q, G) matrices, so a caller that must split the
        mask costs into chunks of sets (their inputs are (S, Q, P)) still
        computes these for all sets at once.

        Args:
            scores (Tensor): Class logits (S, Q, C).
            bboxes (Tensor): Pixel xyxy boxes (S, Q, 4).
            gt_labels (Tensor): (G, ).
            gt_bboxes (Tensor): Pixel xyxy boxes (G, 4).
            img_meta (dict): Image information with ``img_shape``.

        Returns:
            :obj:`RowCosts`: float32 (S, Q, G) matrices.
        """
        num_sets, num_preds = scores.shape[:2]
        # costs in fp32 whatever the surrounding autocast context says
        with torch.autocast(device_type=scores.device.type, enabled=False):
            preds = InstanceData(
                scores=scores.float().flatten(0, 1),
                bboxes=bboxes.float().flatten(0, 1))
            gts = InstanceData(labels=gt_labels, bboxes=gt_bboxes.float())
            match = [
                None if _reads_masks(match_cost) else row_match_cost(
                    match_cost, preds, gts, img_meta).view(
                        num_sets, num_preds, -1)
                for match_cost in self.match_costs
            ]
            box = None
            if len(self.box_match_costs) > 0:
                box = self._sum_costs(self.box_match_costs, preds, gts,
                                      img_meta).view(num_sets, num_preds, -1)
                if self.decouple_stuff_boxes:
                    box = self._decouple_stuff(box, gt_labels)
        return RowCosts(match, box)

    @torch.no_grad()
    def add_mask_costs(self,
                       row_costs: RowCosts,
                       mask_logits: Optional[Tensor],
                       gt_masks: Optional[Tensor],
                       img_meta: dict,
                       sets: slice = slice(None)) -> Tensor:
        """Sum the row costs of ``sets`` with their mask costs, in the
        order of ``match_costs`` followed by the box costs, and sanitise.

        Args:
            row_costs (:obj:`RowCosts`): Of all S sets, from
                :meth:`get_row_costs`.
            mask_logits (Tensor, optional): Sampled mask logits of the
                selected sets (S', Q, P); None without mask costs.
            gt_masks (Tensor, optional): GT masks sampled at the points of
                each selected set, (S', G, P); None without mask costs.
            img_meta (dict): Image information with ``img_shape``.
            sets (slice): The selected sets. Defaults to all.

        Returns:
            Tensor: Sanitised float32 costs (S', Q, G).
        """
        if mask_logits is None and self.mask_match_costs:
            raise ValueError(
                'the mask costs '
                f'{[type(c).__name__ for c in self.mask_match_costs]} need '
                'mask_logits and gt_masks')
        device = next(t.device for t in (mask_logits, row_costs.box,
                                          *row_costs.match) if t is not None)
        with torch.autocast(device_type=device.type, enabled=False):
            if mask_logits is not None:
                mask_logits, gt_masks = mask_logits.float(), gt_masks.float()
            cost = 0
            for match_cost, row_cost in zip(self.match_costs,
                                            row_costs.match):
                if row_cost is not None:
                    cost = cost + row_cost[sets]
                elif isinstance(match_cost, (CrossEntropyLossCost, DiceCost)):
                    cost = cost + batched_mask_cost(match_cost, mask_logits,
                                                    gt_masks)
                else:
                    cost = cost + torch.stack([
                        match_cost(
                            InstanceData(masks=p), InstanceData(masks=g),
                            img_meta) for p, g in zip(mask_logits, gt_masks)
                    ])
            if row_costs.box is not None:
                cost = cost + row_costs.box[sets]
        return self._sanitize(cost)

    @staticmethod
    def solve(costs: List[Tensor]) -> List[List[Tuple[np.ndarray,
                                                       np.ndarray]]]:
        """Hungarian assignment of many cost matrices with one transfer.

        Args:
            costs (list[Tensor]): Stacks of S_i matrices (S_i, Q_i, G_i).

        Returns:
            list[list[tuple]]: For every stack and set, the matched
            ``(pred_inds, gt_inds)`` (sorted by prediction) as numpy
            arrays.
        """
        if len(costs) == 0:
            return []
        # one device -> host copy for everything
        flat = torch.cat([c.flatten() for c in costs]).cpu().numpy()
        results, start = [], 0
        for c in costs:
            stack = flat[start:start + c.numel()].reshape(c.shape)
            start += c.numel()
            results.append([linear_sum_assignment(m) for m in stack])
        return results

    def sample_masks(
            self,
            pred_masks: Tensor,
            gt_masks: Tensor,
            point_coords: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Sample predicted and GT masks at one shared set of points.

        Args:
            pred_masks (Tensor): Mask logits, (num_preds, h, w), or already
                sampled (num_preds, P).
            gt_masks (Tensor): Binary masks, (num_gts, H, W), or already
                sampled (num_gts, P).
            point_coords (Tensor, optional): (P, 2) normalised (x, y)
                coordinates; if None, ``num_points`` uniform random points
                are drawn on the device of ``pred_masks``.

        Returns:
            tuple[Tensor, Tensor]: float32 (num_preds, P) logits and
            (num_gts, P) targets.
        """
        if pred_masks.dim() == 2:
            return pred_masks.float(), gt_masks.float()
        if point_coords is None:
            point_coords = torch.rand((self.num_points, 2),
                                      device=pred_masks.device)
        point_coords = point_coords.float().to(pred_masks.device)
        # point_sample takes (n, c, h, w) maps and (n, P, 2) coordinates
        sampled_preds = point_sample(
            pred_masks.float().unsqueeze(1),
            point_coords.expand(pred_masks.size(0), -1, -1),
            align_corners=False).squeeze(1)
        sampled_gts = point_sample(
            gt_masks.float().unsqueeze(1),
            point_coords.to(gt_masks.device).expand(gt_masks.size(0), -1, -1),
            align_corners=False).squeeze(1)
        return sampled_preds, sampled_gts

    @staticmethod
    def _sum_costs(match_costs: list, preds: InstanceData,
                   gts: InstanceData, img_meta: dict) -> Tensor:
        """Sum the (num_preds, num_gts) matrices of ``match_costs``."""
        costs = [
            row_match_cost(match_cost, preds, gts, img_meta)
            for match_cost in match_costs
        ]
        return torch.stack(costs).sum(dim=0)

    def _decouple_stuff(self, box_cost: Tensor, gt_labels: Tensor) -> Tensor:
        """Replace the box cost of stuff GTs by a column-constant value.

        Args:
            box_cost (Tensor): Summed box costs, (S, num_preds, num_gts).
            gt_labels (Tensor): (num_gts, ).

        Returns:
            Tensor: Box costs with every stuff column of a set set to the
            mean box cost of that set over all predictions and thing GTs
            (0 without things). No host synchronisation.
        """
        is_stuff = gt_labels >= self.num_things_classes
        # sanitise first so one bad prediction cannot poison the mean
        box_cost = self._sanitize(box_cost)
        is_thing = (~is_stuff).to(box_cost.dtype)
        num_thing_costs = is_thing.sum() * box_cost.size(1)
        fill = (box_cost * is_thing).sum((1, 2)) / num_thing_costs.clamp(
            min=1)
        return torch.where(is_stuff, fill[:, None, None], box_cost)

    def _sanitize(self, cost: Tensor) -> Tensor:
        """Map NaN to ``+cost_clamp`` and bound everything by it."""
        cost = torch.nan_to_num(
            cost.float(),
            nan=self.cost_clamp,
            posinf=self.cost_clamp,
            neginf=-self.cost_clamp)
        return cost.clamp(-self.cost_clamp, self.cost_clamp)

    def _check_inputs(self, pred_instances: InstanceData,
                      gt_instances: InstanceData,
                      img_meta: Optional[dict]) -> None:
        """Raise a clear error for missing or malformed fields (masks are
        checked when given or needed by a mask cost)."""
        with_masks = 'masks' in pred_instances or bool(self.mask_match_costs)
        mask_keys = ('masks', ) if with_masks else ()
        for name, instances, keys in (
            ('pred_instances', pred_instances,
             ('scores', ) + mask_keys + ('bboxes', )),
            ('gt_instances', gt_instances,
             ('labels', ) + mask_keys + ('bboxes', ))):
            for key in keys:
                if key not in instances:
                    raise KeyError(f'{name}.{key} is required.')
                if not isinstance(instances.get(key), Tensor):
                    raise TypeError(f'{name}.{key} must be a Tensor, got '
                                    f'{type(instances.get(key))}.')
        if img_meta is None or 'img_shape' not in img_meta:
            raise KeyError('img_meta["img_shape"] is required.')
        scores = pred_instances.scores
        if scores.dim() != 2:
            raise ValueError('pred_instances.scores must be (num_preds, '
                             f'num_classes), got {tuple(scores.shape)}.')
        for name, bboxes in (('pred_instances.bboxes', pred_instances.bboxes),
                             ('gt_instances.bboxes', gt_instances.bboxes)):
            if bboxes.dim() != 2 or bboxes.size(-1) != 4:
                raise ValueError(
                    f'{name} must be (n, 4) xyxy, got {tuple(bboxes.shape)}.')
        if with_masks:
            pred_masks, gt_masks = pred_instances.masks, gt_instances.masks
            if pred_masks.dim() not in (2, 3) or (gt_masks.dim() == 2) != (
                    pred_masks.dim() == 2) or gt_masks.dim() not in (2, 3):
                raise ValueError(
                    'pred_instances.masks and gt_instances.masks must both '
                    'be (n, h, w) maps or both (n, P) sampled points, got '
                    f'{tuple(pred_masks.shape)} and {tuple(gt_masks.shape)}.')
        labels = gt_instances.labels
        if labels.dim() != 1:
            raise ValueError('gt_instances.labels must be (num_gts, ), got '
                             f'{tuple(labels.shape)}.')
        if labels.numel() > 0 and (int(labels.min()) < 0 or
                                   int(labels.max()) >= scores.size(-1)):
            raise ValueError(
                f'gt_instances.labels must lie in [0, {scores.size(-1)}) '
                f'(the number of score columns), got {labels.tolist()}.')
