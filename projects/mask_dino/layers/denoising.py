"""Denoising (DN) query generator of Mask DINO.

Mask DINO (``dn='seg'``) uses DN-DETR style denoising with positive queries
only, unlike the contrastive (positive + negative) ``CdnQueryGenerator`` of
mmdet's DINO. The differences to ``CdnQueryGenerator`` are:

- no negative groups; the number of groups is ``dn_num // max_num_gt`` and
  DN is skipped (returns ``None``) when that is 0 or there is no GT;
- box noise acts on normalised (cx, cy, w, h), scaled by (w/2, h/2, w, h),
  instead of on the corners;
- anchors use ``inverse_sigmoid`` with ``eps=1e-5`` (mmdet DINO uses 1e-3).
"""
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmdet.utils import OptMultiConfig

from ..utils.box_ops import box_scale



@dataclass(frozen=True)
class DNLayout:
    """Slot layout of the denoising queries of one batch.

    The denoising queries come first in the decoder (``pad_size`` of them,
    before the matching queries). They form ``num_groups`` groups of
    ``single_pad`` slots (the largest GT count of the batch); slot ``t`` of
    every group is the noised copy of GT ``t`` of the image, slots beyond an
    image's GT count are padding (background)::

        copies:  A0 B0 B1 | A0' B0' B1'            (A: 1 GT, B: 2 GTs)
                 group 0  | group 1
        image A: A0  Pad  | A0'  Pad     (single_pad = 2, pad_size = 4)
        image B: B0  B1   | B0'  B1'

    The generator builds the queries and the attention mask from it, the
    head splits its predictions with it and the criterion takes its fixed
    (prediction, target) pairs from it, so the layout is coded once.

    Args:
        num_groups (int): Number of dn groups.
        single_pad (int): Slots per group, ``max(num_gts)``.
    """
    num_groups: int
    single_pad: int

    def __post_init__(self) -> None:
        if self.num_groups < 1 or self.single_pad < 1:
            raise ValueError(
                f'DNLayout needs num_groups >= 1 and single_pad >= 1, got '
                f'num_groups={self.num_groups}, single_pad={self.single_pad}')

    @property
    def pad_size(self) -> int:
        """int: Number of denoising queries per image."""
        return self.num_groups * self.single_pad

    @classmethod
    def from_meta(cls, meta: Union['DNLayout', Mapping[str, int]]
                  ) -> 'DNLayout':
        """The layout itself, or one built from a mapping with
        ``num_groups``, ``single_pad`` and (checked) ``pad_size``."""
        if isinstance(meta, DNLayout):
            return meta
        for key in ('num_groups', 'single_pad'):
            if key not in meta:
                raise KeyError(f'`dn_meta` lacks the key `{key}`.')
        layout = cls(int(meta['num_groups']), int(meta['single_pad']))
        if meta.get('pad_size', layout.pad_size) != layout.pad_size:
            raise ValueError(
                f'Inconsistent dn_meta {dict(meta)}: expected pad_size = '
                f'num_groups * single_pad = {layout.pad_size}.')
        return layout

    # mapping-style access (``dn_meta['pad_size']``), as mmdet's DINO meta
    def __getitem__(self, key: str) -> int:
        if key not in ('num_groups', 'single_pad', 'pad_size'):
            raise KeyError(key)
        return getattr(self, key)

    def split(self, preds: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, pad_size + Q, ...) predictions -> denoising (B, pad_size,
        ...) and matching (B, Q, ...) parts."""
        return preds[:, :self.pad_size], preds[:, self.pad_size:]

    def slot_indices(self, num_gts: List[int],
                     device: Union[torch.device, str]
                     ) -> Tuple[Tensor, Tensor]:
        """Batch and slot index of every GT copy, group-major (group 0 of
        all images, then group 1, ...), each (N_total * num_groups, )."""
        batch_idx = torch.cat([
            torch.full((num, ), i, dtype=torch.long, device=device)
            for i, num in enumerate(num_gts)
        ])
        gt_idx = torch.cat([
            torch.arange(num, dtype=torch.long, device=device)
            for num in num_gts
        ])
        group_offsets = torch.arange(
            self.num_groups, dtype=torch.long,
            device=device) * self.single_pad
        slot_idx = (group_offsets[:, None] + gt_idx[None, :]).view(-1)
        return batch_idx.repeat(self.num_groups), slot_idx

    def attn_mask(self, num_matching_queries: int,
                  device: Union[torch.device, str]) -> Tensor:
        """Self-attention mask of the decoder (dn queries first).

        Example with ``single_pad = 2``, ``num_groups = 2`` and 3 matching
        queries (1 = True = blocked, "row cannot see column")::

                        0 0 1 1 0 0 0
                        0 0 1 1 0 0 0
                        1 1 0 0 0 0 0
                        1 1 0 0 0 0 0
                        1 1 1 1 0 0 0
                        1 1 1 1 0 0 0
                        1 1 1 1 0 0 0
            single_pad  |_|     |___| num_matching_queries
                        |_____| pad_size

        Matching queries see no dn query (GT leakage); a dn group sees its
        own group and every matching query, no other group.

        Args:
            num_matching_queries (int): Matching queries Q after the dn ones.
            device (:obj:`torch.device` or str): Device of the mask.

        Returns:
            Tensor: Bool mask, shape (pad_size + Q, pad_size + Q).
        """
        num_total = self.pad_size + num_matching_queries
        attn_mask = torch.zeros(
            num_total, num_total, dtype=torch.bool, device=device)
        attn_mask[self.pad_size:, :self.pad_size] = True
        group_id = torch.arange(self.pad_size, device=device) // \
            self.single_pad
        attn_mask[:self.pad_size, :self.pad_size] = \
            group_id[:, None] != group_id[None]
        return attn_mask

    def pairs(self, num_gts: List[int]
              ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Fixed (prediction, GT) pairs of every image, host int64 arrays
        (pred_inds, gt_inds), each (num_gt * num_groups, )."""
        group_starts = np.arange(self.num_groups, dtype=np.int64) * \
            self.single_pad
        pairs = []
        for num_gt in num_gts:
            if num_gt > self.single_pad:
                raise ValueError(
                    f'An image has {num_gt} GT instances but the dn layout '
                    f'has single_pad={self.single_pad} slots per group.')
            gt_inds = np.arange(num_gt, dtype=np.int64)
            pred_inds = (group_starts[:, None] + gt_inds[None]).reshape(-1)
            pairs.append((pred_inds, np.tile(gt_inds, self.num_groups)))
        return pairs


DNOutputs = Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor],
                  Optional[DNLayout]]


@MODELS.register_module()
class MaskDINODenoisingGenerator(BaseModule):
    """Generate the denoising queries of Mask DINO (`Mask DINO: Towards A
    Unified Transformer-based Framework for Object Detection and
    Segmentation <https://arxiv.org/abs/2206.02777>`_).

    Every ground truth (GT) of the batch is copied ``num_groups`` times;
    each copy gets a noised label (content query = label embedding) and a
    noised box (anchor = inverse sigmoid of the box). The decoder
    reconstructs the GT label, box and mask from each copy; the dn slot of
    a copy is fixed, so no matching is needed for the dn losses.

    Args:
        num_classes (int): Number of classes C. The label embedding has
            exactly C rows (no extra "unknown" class).
        embed_dims (int): Dimension of the content queries. Defaults to 256.
        num_matching_queries (int): Number of matching queries Q that follow
            the dn queries; only used to size the attention mask.
            Defaults to 300.
        dn_num (int): Upper bound of the number of dn queries per image;
            ``num_groups = dn_num // max_num_gt``. Defaults to 100.
        noise_scale (float): Box noise scale; a label is resampled with
            probability ``noise_scale * 0.5``. Defaults to 0.4.
        init_cfg (:obj:`ConfigDict` or dict or list, optional): Initialization
            config. Defaults to None.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_matching_queries: int = 300,
                 dn_num: int = 100,
                 noise_scale: float = 0.4,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(
                f'num_classes must be >= 1, but got {num_classes}')
        if dn_num < 0:
            raise ValueError(f'dn_num must be >= 0, but got {dn_num}')
        if noise_scale < 0:
            raise ValueError(
                f'noise_scale must be >= 0, but got {noise_scale}')
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_matching_queries = num_matching_queries
        self.dn_num = dn_num
        self.noise_scale = noise_scale
        # `label_enc` of the official implementation (C rows, default init).
        self.label_embedding = nn.Embedding(num_classes, embed_dims)

    @property
    def label_flip_prob(self) -> float:
        """float: Probability that a GT copy gets a random label."""
        return self.noise_scale * 0.5

    def forward(self, batch_gt_instances: List[InstanceData],
                batch_img_metas: List[dict]) -> DNOutputs:
        """Generate the denoising queries of a batch.

        Args:
            batch_gt_instances (list[:obj:`InstanceData`]): GT of each image
                with ``labels`` (N, ) in [0, C) and ``bboxes`` (N, 4) in
                pixel (x1, y1, x2, y2) of the un-padded image.
            batch_img_metas (list[dict]): Meta information of each image;
                ``img_shape`` (h_img, w_img) normalises the boxes.

        Returns:
            tuple: ``(dn_queries, dn_anchors, attn_mask, dn_meta)``, or four
            ``None`` when denoising is skipped (no GT in the batch, or more
            than ``dn_num`` GTs in one image).

            - dn_queries (Tensor): Content queries, shape
              (B, pad_size, embed_dims); padding slots are zero.
            - dn_anchors (Tensor): Unsigmoided noised (cx, cy, w, h) anchors,
              shape (B, pad_size, 4); padding slots are zero.
            - attn_mask (Tensor): Bool self-attention mask of the decoder,
              shape (pad_size + Q, pad_size + Q), True = blocked.
            - dn_meta (:obj:`DNLayout`): the slot layout (``num_groups``,
              ``single_pad`` = max #GT per image, ``pad_size``).
        """
        gt_labels, gt_bboxes, num_gts = self.collect_targets(
            batch_gt_instances, batch_img_metas)
        single_pad = max(num_gts)
        num_groups = self.get_num_groups(single_pad)
        if num_groups == 0:
            return None, None, None, None
        layout = DNLayout(num_groups, single_pad)

        # Label noise is drawn before box noise, as in the official code.
        noisy_labels = self.apply_label_noise(gt_labels.repeat(num_groups))
        noisy_bboxes = self.apply_box_noise(gt_bboxes.repeat(num_groups, 1))

        batch_idx, slot_idx = layout.slot_indices(num_gts, gt_labels.device)
        weight = self.label_embedding.weight
        batch_size = len(num_gts)
        dn_queries = weight.new_zeros(batch_size, layout.pad_size,
                                      self.embed_dims)
        dn_queries[batch_idx, slot_idx] = self.label_embedding(noisy_labels)
        dn_anchors = gt_bboxes.new_zeros(batch_size, layout.pad_size, 4)
        dn_anchors[batch_idx, slot_idx] = inverse_sigmoid(
            noisy_bboxes, eps=1e-5)

        attn_mask = layout.attn_mask(self.num_matching_queries,
                                     gt_labels.device)
        return dn_queries, dn_anchors, attn_mask, layout

    def collect_targets(
            self, batch_gt_instances: List[InstanceData],
            batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor, List[int]]:
        """Concatenate the GT of all images and normalise their boxes.

        Args:
            batch_gt_instances (list[:obj:`InstanceData`]): GT of each image
                with ``labels`` and pixel xyxy ``bboxes`` (checked where
                they enter the head: ``heads/targets.py``).
            batch_img_metas (list[dict]): Meta information with
                ``img_shape`` of each image.

        Returns:
            tuple:

            - gt_labels (Tensor): Labels of all images, shape (N_total, ).
            - gt_bboxes (Tensor): Boxes as (cx, cy, w, h) normalised by
              ``img_shape``, shape (N_total, 4).
            - num_gts (list[int]): Number of GTs of each image.
        """
        labels_list, bboxes_list = [], []
        for gt_instances, img_meta in zip(batch_gt_instances, batch_img_metas):
            labels, bboxes = gt_instances.labels, gt_instances.bboxes
            img_h, img_w = img_meta['img_shape'][:2]
            labels_list.append(labels.long())
            bboxes_list.append(
                bbox_xyxy_to_cxcywh(bboxes.float()) /
                box_scale(bboxes, img_w, img_h))
        num_gts = [len(labels) for labels in labels_list]
        return torch.cat(labels_list), torch.cat(bboxes_list), num_gts

    def get_num_groups(self, max_num_gt: int) -> int:
        """Number of dn groups, ``dn_num // max_num_gt``.

        Args:
            max_num_gt (int): Maximum number of GTs of one image.

        Returns:
            int: The number of groups; 0 means that denoising is skipped
            (no GT in the batch, or ``max_num_gt > dn_num``).
        """
        if max_num_gt == 0:
            return 0
        return self.dn_num // max_num_gt

    def apply_label_noise(self, labels: Tensor) -> Tensor:
        """Replace each label with prob ``noise_scale * 0.5`` by a uniformly
        random class in [0, C) (which may equal the original label).

        Args:
            labels (Tensor): Labels of all GT copies, shape (N_copies, ).

        Returns:
            Tensor: Noised labels, shape (N_copies, ).
        """
        prob = torch.rand_like(labels.float())
        chosen = torch.nonzero(prob < self.label_flip_prob).view(-1)
        new_labels = torch.randint_like(chosen, 0, self.num_classes)
        return labels.scatter(0, chosen, new_labels)

    def apply_box_noise(self, bboxes: Tensor) -> Tensor:
        """Jitter normalised (cx, cy, w, h) boxes.

        .. code:: text

            box += U(-1, 1) * (w / 2, h / 2, w, h) * noise_scale
            box  = clamp(box, 0, 1)

        i.e. with ``noise_scale = 0.4`` the centre moves by at most 0.2 w
        (0.2 h) and the size changes by at most 0.4 w (0.4 h).

        Args:
            bboxes (Tensor): Normalised (cx, cy, w, h) of all GT copies,
                shape (N_copies, 4).

        Returns:
            Tensor: Noised boxes in [0, 1], shape (N_copies, 4).
        """
        wh = bboxes[:, 2:]
        scale = torch.cat([wh / 2, wh], dim=-1)
        noise = torch.rand_like(bboxes) * 2 - 1
        noisy_bboxes = bboxes + noise * scale * self.noise_scale
        return noisy_bboxes.clamp(min=0.0, max=1.0)
