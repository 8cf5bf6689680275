"""One prediction set of Mask DINO as the criterion sees it."""
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.ops import point_sample
from torch import Tensor


@dataclass
class PredictionSet:
    """Class, box and mask predictions of one set (decoder layer, interm
    or denoising part) for a batch.

    Masks come either as logit maps (``mask_preds``) or, in training, as
    the per-query mask embeddings (``mask_embed``) with the shared per-pixel
    ``mask_features``: the logit map of a query is ``mask_embed .
    mask_features``. Bilinear sampling is linear, so the logits at any
    points equal ``mask_embed . sample(mask_features)``; the criterion uses
    this to avoid the (B, Q, h, w) maps of every set. Sets of box-only
    models have neither.

    Args:
        cls_scores (Tensor): Class logits (B, Q, C').
        bbox_preds (Tensor): Normalised cxcywh boxes (B, Q, 4).
        mask_preds (Tensor, optional): Mask logits (B, Q, h, w).
        mask_embed (Tensor, optional): Mask embeddings (B, Q, D).
        mask_features (Tensor, optional): Per-pixel embeddings
            (B, D, h, w), shared by all sets; needed with ``mask_embed``.
    """
    cls_scores: Tensor
    bbox_preds: Tensor
    mask_preds: Optional[Tensor] = None
    mask_embed: Optional[Tensor] = None
    mask_features: Optional[Tensor] = None

    @classmethod
    def from_dict(cls,
                  preds: dict,
                  mask_features: Optional[Tensor] = None,
                  with_mask: bool = True) -> 'PredictionSet':
        """Build from a head output dict, preferring the embeddings.

        Args:
            preds (dict): ``cls_scores``, ``bbox_preds`` and ``mask_embed``
                or ``mask_preds``.
            mask_features (Tensor, optional): (B, D, h, w), used with
                ``mask_embed``.
            with_mask (bool): Read the masks. False for box-only models:
                only ``cls_scores`` and ``bbox_preds`` are read.

        Raises:
            ValueError: if a field is missing.
        """
        if not with_mask:
            for key in ('cls_scores', 'bbox_preds'):
                if preds.get(key) is None:
                    raise ValueError(f'Prediction set lacks `{key}`; every '
                                     'set needs class and box predictions.')
            return cls(preds['cls_scores'], preds['bbox_preds'])
        mask_embed = preds.get('mask_embed')
        use_embed = mask_embed is not None and mask_features is not None
        required = ('cls_scores', 'bbox_preds') + (
            () if use_embed else ('mask_preds', ))
        for key in required:
            if preds.get(key) is None:
                raise ValueError(
                    f'Prediction set lacks `{key}`; every set needs class, '
                    'mask and box predictions to compute the losses.')
        if use_embed:
            return cls(preds['cls_scores'], preds['bbox_preds'],
                       mask_embed=mask_embed, mask_features=mask_features)
        return cls(preds['cls_scores'], preds['bbox_preds'],
                   mask_preds=preds['mask_preds'])

    @property
    def num_queries(self) -> int:
        return self.cls_scores.size(1)

    @property
    def mask_tensor(self) -> Tensor:
        """The tensor the masks are computed from."""
        return self.mask_preds if self.mask_embed is None else \
            self.mask_embed

    def zero_mask_loss(self) -> Tensor:
        """A float32 zero that keeps every mask input in the graph: DDP
        (``find_unused_parameters=False``) needs the pixel decoder reached
        by backward also when no mask is supervised (no GT)."""
        if self.mask_embed is None:
            return self.mask_preds.float().sum() * 0
        return (self.mask_embed.float().sum() +
                self.mask_features.float().sum()) * 0

    def mask_maps(self, img_id: int, query_inds: Tensor) -> Tensor:
        """float32 mask logit maps (len(query_inds), h, w) of some queries
        of one image."""
        if self.mask_embed is None:
            return self.mask_preds[img_id][query_inds].float()
        feats = self.mask_features[img_id].float()
        embed = self.mask_embed[img_id][query_inds].float()
        return (embed @ feats.flatten(1)).view(-1, *feats.shape[1:])


def _shared_features(sets: Sequence[PredictionSet]) -> Optional[Tensor]:
    """The mask features shared by all ``sets`` given as embeddings, or
    None (then the sets are handled one by one)."""
    features = sets[0].mask_features
    if features is None or any(s.mask_embed is None or s.mask_features
                               is not features for s in sets):
        return None
    return features


def batched_point_logits(sets: Sequence[PredictionSet], img_id: int,
                         points: Tensor) -> Tensor:
    """Mask logits of one image for several sets, each at its own points.

    With embeddings, the shared features are sampled once at all points
    and every set is one batched matrix product: ``(S, Q, D) @ (S, D, P)``
    instead of S times ``(Q, D) @ (D, h * w)`` followed by sampling.

    Args:
        sets (Sequence[PredictionSet]): S sets with the same Q.
        img_id (int): Image index in the batch.
        points (Tensor): Normalised (x, y) points, (S, P, 2).

    Returns:
        Tensor: float32 logits (S, Q, P).
    """
    num_sets, num_points = points.shape[:2]
    points = points.float()
    features = _shared_features(sets)
    if features is not None:
        # (1, D, S * P) -> (S, D, P)
        sampled = point_sample(features[img_id:img_id + 1].float(),
                               points.reshape(1, -1, 2),
                               align_corners=False)[0]
        sampled = sampled.view(-1, num_sets, num_points).transpose(0, 1)
        embed = torch.stack([s.mask_embed[img_id] for s in sets]).float()
        return torch.bmm(embed, sampled)
    logits = []
    for s, pts in zip(sets, points):
        if s.mask_embed is not None and s.mask_features is not None:
            logits.append(batched_point_logits([s], img_id, pts[None])[0])
            continue
        maps = s.mask_preds[img_id].float()
        logits.append(
            point_sample(
                maps.unsqueeze(1),
                pts.expand(maps.size(0), -1, -1),
                align_corners=False).squeeze(1))
    return torch.stack(logits)


def batched_mask_maps(sets: Sequence[PredictionSet], img_id: int,
                      query_inds: Sequence[Tensor]) -> List[Tensor]:
    """float32 logit maps of selected queries of one image for several sets.

    With embeddings, all selected queries of all sets are one matrix
    product with the image's features.

    Args:
        sets (Sequence[PredictionSet]): S sets.
        img_id (int): Image index in the batch.
        query_inds (Sequence[Tensor]): Per set the query indices (M_s, ).

    Returns:
        list[Tensor]: Per set the maps (M_s, h, w).
    """
    features = _shared_features(sets)
    if features is None:
        return [s.mask_maps(img_id, i) for s, i in zip(sets, query_inds)]
    feats = features[img_id].float()
    embed = torch.cat([
        s.mask_embed[img_id][i] for s, i in zip(sets, query_inds)
    ]).float()
    maps = (embed @ feats.flatten(1)).view(-1, *feats.shape[1:])
    return list(maps.split([len(i) for i in query_inds]))


@dataclass
class SetGroup:
    """Prediction sets whose class and box losses are computed together.

    Computed set by set, the class and box losses dispatch about a hundred
    operators per set forward and as many backward (label scatter and
    gathers per image, the focal, L1 and GIoU arithmetic), for some twenty
    sets per iteration. Sets with the same query count Q and normaliser
    (the matching sets; the dn sets) are stacked instead, so each loss runs
    once per group and is reduced per set by a segment sum.

    The index arrays address the stacked predictions flattened to
    (S * B * Q, ...) and the batch's GT concatenated image by image; they
    are built on the host from the host pairs and moved to the device with
    all other pairs in one copy.

    Attributes:
        set_ids (list[int]): The group's S sets (positions in the list of
            all sets).
        avg_factor (float): Normaliser of every set of the group.
        cls_rows (Tensor | np.ndarray): (M, ) int64 flat query row of
            every pair (set k, image b, query p: ``(k * B + b) * Q + p``).
        cls_gts (Tensor | np.ndarray): (M, ) int64 GT row of every pair.
        box_rows (Tensor | np.ndarray): (K, ) the query rows of the pairs
            with box losses (all, or those with a thing GT when stuff boxes
            are decoupled).
        box_gts (Tensor | np.ndarray): (K, ) their GT rows.
        box_sets (Tensor | np.ndarray): (K, ) their set in the group, in
            [0, S).
        box_counts (list[int]): K per set.
    """
    set_ids: List[int]
    avg_factor: float
    cls_rows: Union[Tensor, np.ndarray]
    cls_gts: Union[Tensor, np.ndarray]
    box_rows: Union[Tensor, np.ndarray]
    box_gts: Union[Tensor, np.ndarray]
    box_sets: Union[Tensor, np.ndarray]
    box_counts: List[int]

    INDEX_FIELDS = ('cls_rows', 'cls_gts', 'box_rows', 'box_gts', 'box_sets')

    @property
    def num_sets(self) -> int:
        return len(self.set_ids)

    def index_arrays(self) -> List[Union[Tensor, np.ndarray]]:
        """The index arrays in the order of :attr:`INDEX_FIELDS`."""
        return [getattr(self, name) for name in self.INDEX_FIELDS]

    def with_indices(self, arrays: Sequence[Tensor]) -> 'SetGroup':
        """A copy with the index arrays replaced (e.g. by device copies),
        given in the order of :attr:`INDEX_FIELDS`."""
        return replace(self, **dict(zip(self.INDEX_FIELDS, arrays)))


def group_sets(num_queries: Sequence[int], avg_factors: Sequence[float],
               host_pairs: Sequence[Sequence[Tuple[np.ndarray, np.ndarray]]],
               num_gts: Sequence[int],
               box_gt_mask: Optional[np.ndarray] = None) -> List[SetGroup]:
    """Group the sets by (Q, normaliser) and index their pairs (host).

    Args:
        num_queries (Sequence[int]): Q of every set.
        avg_factors (Sequence[float]): Normaliser of every set.
        host_pairs (Sequence[Sequence[tuple]]): Per set and image the pairs
            (pred_inds, gt_inds), int64 numpy arrays.
        num_gts (Sequence[int]): GT count per image.
        box_gt_mask (np.ndarray, optional): (sum(num_gts), ) bool, the GT
            (concatenated image by image) whose pairs get box losses; None:
            all.

    Returns:
        list[SetGroup]: The groups (sets in order), with numpy indices.
    """
    members: Dict[Tuple[int, float], List[int]] = {}
    for s, key in enumerate(zip(num_queries, avg_factors)):
        members.setdefault(key, []).append(s)
    num_imgs = len(num_gts)
    gt_starts = np.cumsum([0] + list(num_gts[:-1]), dtype=np.int64)
    groups = []
    for (queries, avg_factor), set_ids in members.items():
        # an empty first entry keeps the dtype when there is no pair
        empty = np.zeros(0, dtype=np.int64)
        rows, gts, sets = [empty], [empty], [empty]
        for k, s in enumerate(set_ids):
            for b, (pred_inds, gt_inds) in enumerate(host_pairs[s]):
                rows.append((k * num_imgs + b) * queries + pred_inds)
                gts.append(gt_starts[b] + gt_inds)
                sets.append(np.full(len(pred_inds), k, dtype=np.int64))
        rows, gts, sets = (np.concatenate(a) for a in (rows, gts, sets))
        keep = slice(None) if box_gt_mask is None else box_gt_mask[gts]
        groups.append(
            SetGroup(
                set_ids=set_ids,
                avg_factor=avg_factor,
                cls_rows=rows,
                cls_gts=gts,
                box_rows=rows[keep],
                box_gts=gts[keep],
                box_sets=sets[keep],
                box_counts=np.bincount(
                    sets[keep], minlength=len(set_ids)).tolist()))
    return groups
