"""One prediction set of Mask DINO as the criterion sees it."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

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
