"""Mask DINO head: query selection, denoising, decoder and shared heads."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers import MLP
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import ConfigType, InstanceList, OptConfigType
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..layers.denoising import DNLayout, MaskDINODenoisingGenerator
from ..utils import pass_down
from ..utils.box_ops import mask_boxes_to_anchor_logits, masks_to_boxes
from .targets import check_targets

BOX_INIT_TYPES = ('no', 'bitmask', 'mask2box')


@MODELS.register_module()
class MaskDINOHead(BaseModule):
    """Head of Mask DINO (the official ``MaskDINOHead`` + ``MaskDINODecoder``).

    Data flow::

        backbone feats -> pixel_decoder -> mask_features (B, D, H/4, W/4)
                                        -> memory (B, sum HW, D), levels in
                                           decoder order (EncoderMemory)
        memory -> [two-stage] enc_output + enc_output_norm -> top-K tokens
               -> content queries (detached), anchors (detached, or boxes
                  of the interm masks: mask-enhanced anchor init)
        [train] DN queries from noised GT prepended
        queries -> initial prediction (set #0) -> 9 decoder layers
               -> sets #1..#9, each from the shared class / mask / box heads

    All prediction heads (``cls_embed``, ``mask_embed``, ``bbox_embed``) are
    single modules shared by the encoder top-K scoring, the interm set, the
    initial set, every decoder layer and the DN queries, as in the official
    code. ``decoder.norm`` is the official ``decoder_norm``: it is applied to
    the layer outputs inside the decoder and again before the class and mask
    heads (the official double LayerNorm).

    Box-only models (``with_mask=False``, for datasets with boxes and no
    masks) build no mask head (``mask_embed``) and no mask features in the
    pixel decoder, compute no mask logits in training or inference, train
    on labels and boxes alone (no mask losses, matching without mask costs)
    and take their anchors from the encoder's boxes
    (``initialize_box_type='no'``). The switch is passed to the pixel
    decoder and the criterion; ``MaskDINO`` passes it to the fusion head.

    Args:
        num_things_classes (int): Number of thing classes.
        num_stuff_classes (int): Number of stuff classes.
        num_queries (int): Matching queries (top-K). Defaults to 300.
        embed_dims (int): Hidden size. Defaults to 256. Passed to the
            pixel decoder (``feat_channels``, ``out_channels``, which pass
            it on to the encoder layers and the positional encoding) and to
            the decoder (its layers' attention and FFN); a repeated value
            that differs is an error.
        two_stage (bool): Select queries from encoder tokens (True) or use
            learned queries and anchors (False, semantic configs).
        learn_tgt (bool): Learned content queries in two-stage mode.
        initial_pred (bool): Predict from the queries before the decoder.
        initialize_box_type (str): Mask-enhanced anchor init: 'no',
            'bitmask' or 'mask2box'.
        semantic_ce (bool): The classifier has ``num_classes + 1`` outputs
            trained with softmax CE (semantic configs).
        with_mask (bool): Predict masks. False gives a box-only detector
            (see above); it needs ``initialize_box_type='no'``, a criterion
            without mask losses and an assigner without mask costs.
            Defaults to True.
        pixel_decoder (dict): Config of the pixel decoder; the head passes
            it ``with_mask`` and ``embed_dims`` (see above).
        decoder (dict): Config of :class:`MaskDINOTransformerDecoder`; the
            head passes it ``embed_dims`` and the pixel decoder's
            ``num_levels``.
        dn_cfg (dict, optional): Arguments of
            :class:`MaskDINODenoisingGenerator` (``dn_num``,
            ``noise_scale``); None disables denoising.
        criterion (dict): Config of :class:`MaskDINOCriterion`; the head
            passes it ``with_mask``, ``num_classes`` and
            ``num_things_classes`` (a repeated value that differs is an
            error).
        train_cfg (dict, optional): Unused, kept for the detector API.
        test_cfg (dict, optional): Unused, kept for the detector API.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 0,
                 num_queries: int = 300,
                 embed_dims: int = 256,
                 two_stage: bool = True,
                 learn_tgt: bool = False,
                 initial_pred: bool = True,
                 initialize_box_type: str = 'mask2box',
                 semantic_ce: bool = False,
                 with_mask: bool = True,
                 pixel_decoder: ConfigType = dict(
                     type='MaskDINOPixelDecoder'),
                 decoder: ConfigType = dict(
                     type='MaskDINOTransformerDecoder'),
                 dn_cfg: OptConfigType = dict(dn_num=100, noise_scale=0.4),
                 criterion: ConfigType = dict(type='MaskDINOCriterion'),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if initialize_box_type not in BOX_INIT_TYPES:
            raise ValueError(f'initialize_box_type must be one of '
                             f'{BOX_INIT_TYPES}, got {initialize_box_type!r}')
        if not with_mask:
            self._check_box_only(initialize_box_type, num_stuff_classes)
        if initialize_box_type != 'no' and not (two_stage and initial_pred):
            raise ValueError('mask-enhanced anchor init (initialize_box_type'
                             f'={initialize_box_type!r}) needs two_stage=True'
                             ' and initial_pred=True')
        if semantic_ce and two_stage:
            # top-K selection ranks tokens by their largest class logit,
            # which would then include the no-object logit
            raise ValueError(
                'semantic_ce=True (softmax CE with a no-object class) cannot '
                'be combined with two_stage=True (query selection by the max '
                'class logit); use two_stage=False as the semantic configs '
                'do, or the focal loss (semantic_ce=False) for two-stage '
                'instance/panoptic heads')
        self.num_things_classes = num_things_classes
        self.num_stuff_classes = num_stuff_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.num_queries = num_queries
        self.embed_dims = embed_dims
        self.two_stage = two_stage
        self.learn_tgt = learn_tgt
        self.initial_pred = initial_pred
        self.initialize_box_type = initialize_box_type
        self.semantic_ce = semantic_ce
        self.with_mask = with_mask
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

        pixel_decoder = pass_down(pixel_decoder, 'MaskDINOHead',
                                  'pixel_decoder', with_mask=with_mask)
        # the memory and the mask features meet the queries' width
        pixel_decoder = pass_down(
            pixel_decoder,
            'MaskDINOHead (embed_dims)',
            'pixel_decoder',
            feat_channels=embed_dims,
            out_channels=embed_dims)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.num_levels = self.pixel_decoder.num_levels
        self.decoder = MODELS.build(
            pass_down(
                decoder,
                'MaskDINOHead (embed_dims, its pixel decoder\'s levels)',
                'decoder',
                embed_dims=embed_dims,
                num_levels=self.num_levels))
        if two_stage:
            self.enc_output = nn.Linear(embed_dims, embed_dims)
            self.enc_output_norm = nn.LayerNorm(embed_dims)
        if not two_stage or learn_tgt:
            self.query_feat = nn.Embedding(num_queries, embed_dims)
        if not two_stage:
            # Learned anchors, in logit space.
            self.query_embed = nn.Embedding(num_queries, 4)
        num_cls_out = self.num_classes + 1 if semantic_ce else \
            self.num_classes
        self.cls_embed = nn.Linear(embed_dims, num_cls_out)
        if with_mask:
            self.mask_embed = MLP(embed_dims, embed_dims, embed_dims, 3)
        self.bbox_embed = MLP(embed_dims, embed_dims, 4, 3)
        self.dn_generator = None
        if dn_cfg is not None:
            self.dn_generator = MaskDINODenoisingGenerator(
                num_classes=self.num_classes,
                embed_dims=embed_dims,
                num_matching_queries=num_queries,
                **dn_cfg)
        criterion = pass_down(
            criterion,
            'MaskDINOHead',
            'criterion',
            with_mask=with_mask,
            num_classes=self.num_classes,
            num_things_classes=num_things_classes)
        self.criterion = MODELS.build(criterion)
        if self.criterion.use_sigmoid_cls == semantic_ce:
            raise ValueError(
                f'criterion.loss_cls ({type(self.criterion.loss_cls).__name__}'
                f', use_sigmoid={self.criterion.use_sigmoid_cls}) does not '
                f'match semantic_ce={semantic_ce}: semantic_ce=True needs a '
                'softmax loss (use_sigmoid=False) over num_classes + 1 '
                'logits, semantic_ce=False a sigmoid (focal) loss')

    @staticmethod
    def _check_box_only(initialize_box_type: str,
                        num_stuff_classes: int) -> None:
        """Raise for settings that need masks in a box-only head."""
        if initialize_box_type != 'no':
            raise ValueError(
                'with_mask=False (box-only) has no masks to initialise the '
                "anchors from: set initialize_box_type='no' (anchors from "
                f"the encoder's boxes), got {initialize_box_type!r}")
        if num_stuff_classes > 0:
            raise ValueError(
                'with_mask=False (box-only) supports thing classes only: '
                'stuff segments are masks, got num_stuff_classes='
                f'{num_stuff_classes}')

    def init_weights(self) -> None:
        """Sub-modules initialise themselves; the box head starts at the
        anchors (last layer zero), the classifier keeps PyTorch's default
        init (the official code has no focal prior bias)."""
        super().init_weights()
        nn.init.constant_(self.bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(self.bbox_embed.layers[-1].bias, 0)

    # ------------------------------------------------------------------
    # Shared prediction heads
    # ------------------------------------------------------------------
    def forward_heads(self, query: Tensor, mask_features: Tensor,
                      with_mask: bool = True
                      ) -> Tuple[Tensor, Optional[Tensor]]:
        """Class and mask predictions from queries (after ``decoder.norm``).

        Args:
            query (Tensor): (B, N, D) queries (decoder outputs are passed
                already normed, so they are normed twice, as official).
            mask_features (Tensor): (B, D, h, w) per-pixel embeddings.
            with_mask (bool): Whether to compute the masks (never in
                box-only heads).

        Returns:
            tuple: cls logits (B, N, C') and mask logits (B, N, h, w) or None.
        """
        cls_scores, mask_embed = self.forward_embeds(query, with_mask)
        if mask_embed is None:
            return cls_scores, None
        mask_preds = torch.einsum('bqc,bchw->bqhw', mask_embed, mask_features)
        return cls_scores, mask_preds

    def forward_embeds(self, query: Tensor, with_mask: bool = True
                       ) -> Tuple[Tensor, Optional[Tensor]]:
        """Class logits (B, N, C') and mask embeddings (B, N, D) (None
        unless ``with_mask``, always None in box-only heads) of queries
        (after ``decoder.norm``); a query's mask logits are its embedding
        dotted with the mask features."""
        query = self.decoder.norm(query)
        cls_scores = self.cls_embed(query)
        if not (with_mask and self.with_mask):
            return cls_scores, None
        return cls_scores, self.mask_embed(query)

    # ------------------------------------------------------------------
    # Memory and query selection
    # ------------------------------------------------------------------
    @staticmethod
    def gen_proposals(memory: Tensor,
                      level_shapes: List[Tuple[int, int]]
                      ) -> Tuple[Tensor, Tensor]:
        """Grid proposals of every token and the masked memory.

        A token of decoder level ``l`` gets the box (cell centre,
        w = h = 0.05 * 2**l); tokens whose box leaves (0.01, 0.99) are
        invalid: +inf proposal logits and zeroed memory (official).

        Args:
            memory (Tensor): (B, sum HW, D) in decoder level order.
            level_shapes (list[tuple[int, int]]): (h, w) of every level.

        Returns:
            tuple: masked memory (B, sum HW, D), proposal logits
            (B, sum HW, 4) (cx, cy, w, h).
        """
        proposals = []
        for lvl, (h, w) in enumerate(level_shapes):
            ys = (torch.arange(h, dtype=torch.float32, device=memory.device)
                  + 0.5) / h
            xs = (torch.arange(w, dtype=torch.float32, device=memory.device)
                  + 0.5) / w
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
            wh = torch.full_like(grid_x, 0.05 * (2.0**lvl))
            proposals.append(
                torch.stack([grid_x, grid_y, wh, wh], -1).view(-1, 4))
        proposals = torch.cat(proposals, 0)[None]
        valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1,
                                                               keepdim=True)
        proposals = torch.log(proposals / (1 - proposals))
        proposals = proposals.masked_fill(~valid, float('inf'))
        proposals = proposals.expand(memory.shape[0], -1, -1)
        memory = memory.masked_fill(~valid, 0.0)
        return memory, proposals

    def select_queries(self, memory: Tensor,
                       level_shapes: List[Tuple[int, int]],
                       mask_features: Optional[Tensor]
                       ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
        """Unified and enhanced query selection (two-stage).

        Args:
            memory (Tensor): (B, sum HW, D), decoder level order.
            level_shapes (list[tuple[int, int]]): (h, w) of every level.
            mask_features (Tensor, optional): (B, D, h, w); None for
                box-only heads.

        Returns:
            tuple:
                - query (Tensor): detached content queries (B, K, D).
                - anchors (Tensor): detached anchor logits (B, K, 4).
                - interm (dict): the interm prediction set (no mask
                  entries in box-only heads).
        """
        num_tokens = memory.shape[1]
        if num_tokens < self.num_queries:
            raise ValueError(
                f'The input image is too small: the encoder has only '
                f'{num_tokens} tokens but num_queries={self.num_queries} '
                'are selected; use a larger input size.')
        memory, proposals = self.gen_proposals(memory, level_shapes)
        output_memory = self.enc_output_norm(self.enc_output(memory))
        # Selection scores use class_embed without decoder_norm (official).
        enc_scores = self.cls_embed(output_memory).max(-1)[0]
        topk_inds = torch.topk(enc_scores, self.num_queries, dim=1)[1]
        query_undetach = torch.gather(
            output_memory, 1,
            topk_inds.unsqueeze(-1).expand(-1, -1, self.embed_dims))
        # The box MLP is row-wise: run it on the K selected tokens only
        # (the official code runs it on every token, then gathers).
        anchors_undetach = self.bbox_embed(query_undetach) + torch.gather(
            proposals, 1, topk_inds.unsqueeze(-1).expand(-1, -1, 4))
        cls_scores, mask_embed = self.forward_embeds(query_undetach)
        interm = dict(
            cls_scores=cls_scores, bbox_preds=anchors_undetach.sigmoid())
        if mask_embed is not None:  # None in box-only heads
            interm['mask_preds'] = torch.einsum('bqc,bchw->bqhw', mask_embed,
                                                mask_features)
            if self.training:
                # the criterion samples masks from the embeddings
                interm['mask_embed'] = mask_embed

        query = query_undetach.detach()
        if self.learn_tgt:
            query = self.query_feat.weight[None].repeat(
                memory.shape[0], 1, 1)
        anchors = anchors_undetach.detach()
        if self.initialize_box_type != 'no':
            anchors = self.mask_enhanced_anchors(
                interm['mask_preds'].detach())
        return query, anchors, interm

    def mask_enhanced_anchors(self, mask_preds: Tensor) -> Tensor:
        """Mask-enhanced anchor box initialisation.

        Args:
            mask_preds (Tensor): Interm mask logits (B, K, h, w).

        Returns:
            Tensor: Anchor logits (B, K, 4): the tight boxes of the binarised
            masks at 1/4 resolution, normalised and inverse-sigmoided.
        """
        h, w = mask_preds.shape[-2:]
        boxes = masks_to_boxes(mask_preds > 0, mode=self.initialize_box_type)
        return mask_boxes_to_anchor_logits(boxes, h, w)

    # ------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------
    def forward(self,
                x: List[Tensor],
                batch_data_samples: SampleList,
                batch_gt_instances: Optional[InstanceList] = None
                ) -> Dict[str, object]:
        """Forward function.

        Args:
            x (list[Tensor]): Backbone maps, high to low resolution.
            batch_data_samples (list[DetDataSample]): Data samples.
            batch_gt_instances (list[InstanceData], optional): Preprocessed
                GT (see :meth:`preprocess_gt`), needed for denoising in
                training.

        Returns:
            dict: the final prediction set (``cls_scores``, ``mask_preds``,
            ``bbox_preds``), ``aux_outputs`` (earlier sets),
            ``interm_outputs``, ``dn_outputs`` and ``dn_meta`` (see
            ``MaskDINOCriterion``). In training the sets carry
            ``mask_embed`` instead of ``mask_preds`` (the interm set both)
            and ``mask_features`` (B, D, h, w) is added. Box-only heads
            give ``cls_scores`` and ``bbox_preds`` only.
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        mask_features, (memory, spatial_shapes, level_start_index,
                        level_shapes) = self.pixel_decoder(x)
        batch_size = memory.shape[0]

        interm = None
        if self.two_stage:
            query, anchors, interm = self.select_queries(
                memory, level_shapes, mask_features)
        else:
            query = self.query_feat.weight[None].repeat(batch_size, 1, 1)
            anchors = self.query_embed.weight[None].repeat(batch_size, 1, 1)

        attn_mask, dn_meta = None, None
        if self.training and self.dn_generator is not None:
            dn_query, dn_anchors, attn_mask, dn_meta = self.dn_generator(
                batch_gt_instances, batch_img_metas)
            if dn_meta is not None:
                query = torch.cat([dn_query, query], dim=1)
                anchors = torch.cat([dn_anchors, anchors], dim=1)

        sets = self.forward_decoder(query, anchors, memory, attn_mask,
                                    spatial_shapes, level_start_index,
                                    mask_features, level_shapes)
        outputs = self.split_outputs(sets, interm, dn_meta)
        if self.training and self.with_mask:
            outputs['mask_features'] = mask_features
        return outputs

    def forward_decoder(self, query: Tensor, anchors: Tensor,
                        memory: Tensor, attn_mask: Optional[Tensor],
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        mask_features: Optional[Tensor],
                        level_shapes: Optional[List[Tuple[int, int]]] = None
                        ) -> List[Dict[str, Tensor]]:
        """Initial prediction, decoder layers and the shared heads.

        Args:
            query (Tensor): (B, N, D) content queries (dn first).
            anchors (Tensor): (B, N, 4) anchor logits.
            memory (Tensor): (B, sum HW, D).
            attn_mask (Tensor, optional): (N, N) bool.
            spatial_shapes (Tensor): (L, 2).
            level_start_index (Tensor): (L, ).
            mask_features (Tensor, optional): (B, D, h, w); None for
                box-only heads.
            level_shapes (list[tuple[int, int]], optional):
                ``spatial_shapes`` as Python ints, for the attention.

        Returns:
            list[dict]: prediction sets, the last is the final prediction.
            At inference only the last set has masks (``mask_preds``), as
            official. In training every set has ``mask_embed`` (B, N, D)
            instead: the criterion computes mask logits only where it needs
            them (sampled points, paired queries) from the embeddings and
            the shared ``mask_features``. Box-only sets have no mask entry.
        """
        sets = []
        if self.initial_pred:
            sets.append(
                dict(
                    self._set_masks(query, mask_features, with_mask=False),
                    bbox_preds=anchors.sigmoid()))
        hidden_states, references = self.decoder(
            query=query,
            value=memory,
            self_attn_mask=attn_mask,
            reference_points=anchors.sigmoid(),
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            reg_branch=self.bbox_embed,
            level_shapes=level_shapes)
        num_layers = hidden_states.shape[0]
        # The shared heads run once on the stack of all layers (one call
        # per head, not per layer; the same values). Look forward twice:
        # each layer refines the (un-detached) reference that entered it.
        bbox_preds = (self.bbox_embed(hidden_states) + inverse_sigmoid(
            references[:-1], eps=1e-5)).sigmoid()
        if self.with_mask and not self.training:
            # only the last set gets masks (official)
            for lid in range(num_layers):
                sets.append(
                    dict(
                        self._set_masks(
                            hidden_states[lid],
                            mask_features,
                            with_mask=lid == num_layers - 1),
                        bbox_preds=bbox_preds[lid]))
            return sets
        # training and box-only heads: the layers' sets from one call
        stacked = self._set_masks(hidden_states, mask_features, with_mask=True)
        for lid in range(num_layers):
            layer_set = {
                k: None if v is None else v[lid]
                for k, v in stacked.items()
            }
            sets.append(dict(layer_set, bbox_preds=bbox_preds[lid]))
        return sets

    def _set_masks(self, query: Tensor, mask_features: Optional[Tensor],
                   with_mask: bool) -> Dict[str, Optional[Tensor]]:
        """``cls_scores`` and, in training, ``mask_embed`` (``mask_preds``
        None); at inference ``mask_preds`` if ``with_mask``, else None.
        Box-only heads: ``cls_scores`` alone. ``query`` is (B, N, D), or in
        training and box-only heads also a stack (L, B, N, D) of sets."""
        if not self.with_mask:
            return dict(
                cls_scores=self.forward_embeds(query, with_mask=False)[0])
        if self.training:
            cls_scores, mask_embed = self.forward_embeds(query)
            return dict(
                cls_scores=cls_scores, mask_preds=None, mask_embed=mask_embed)
        cls_scores, mask_preds = self.forward_heads(
            query, mask_features, with_mask=with_mask)
        return dict(cls_scores=cls_scores, mask_preds=mask_preds)

    def split_outputs(self, sets: List[Dict[str, Tensor]],
                      interm: Optional[Dict[str, Tensor]],
                      dn_meta: Optional[DNLayout]) -> Dict[str, object]:
        """Split every set into its denoising and matching parts."""
        dn_sets = None
        if dn_meta is not None:
            parts = [{
                k: (dn_meta.split(v) if v is not None else (None, None))
                for k, v in s.items()
            } for s in sets]
            dn_sets = [{k: v[0] for k, v in p.items()} for p in parts]
            sets = [{k: v[1] for k, v in p.items()} for p in parts]
        elif self.training and self.dn_generator is not None:
            # Keep the DN label embedding in the graph so DDP sees it used.
            sets[-1]['cls_scores'] = sets[-1]['cls_scores'] + \
                0.0 * self.dn_generator.label_embedding.weight.sum()
        outputs = dict(sets[-1])
        outputs['aux_outputs'] = sets[:-1]
        outputs['interm_outputs'] = interm
        outputs['dn_outputs'] = None
        if dn_sets is not None:
            outputs['dn_outputs'] = dict(dn_sets[-1])
            outputs['dn_outputs']['aux_outputs'] = dn_sets[:-1]
        outputs['dn_meta'] = dn_meta
        return outputs

    # ------------------------------------------------------------------
    # Targets, loss and predict
    # ------------------------------------------------------------------
    def preprocess_gt(self, batch_data_samples: SampleList) -> InstanceList:
        """Build per-image targets: labels, full-resolution padded masks and
        boxes.

        Instance data keeps its annotated boxes. When a semantic map is
        present (panoptic or semantic training), stuff segments are added
        from it and every box is the tight box of its mask (official).
        Box-only heads take ``labels`` and ``bboxes`` alone (masks and
        semantic maps, if loaded, are not read).

        Returns:
            list[InstanceData]: ``labels`` (N, ), ``masks`` (N, H, W) bool
            at the padded batch size (not in box-only heads), ``bboxes``
            (N, 4) pixel xyxy.
        """
        if not self.with_mask:
            return [self._box_targets(s) for s in batch_data_samples]
        targets = []
        for sample in batch_data_samples:
            pad_h, pad_w = sample.metainfo['batch_input_shape']
            gt = sample.get('gt_instances', InstanceData())
            sem_seg = sample.gt_sem_seg.sem_seg if 'gt_sem_seg' in sample \
                else None
            if sem_seg is not None:
                # 16-bit PNG labels arrive as uint16, which has no
                # comparison kernels
                sem_seg = sem_seg.long()
            if 'labels' in gt:
                labels = gt.labels
            else:  # semantic datasets pack no instances
                labels = torch.zeros(
                    0,
                    dtype=torch.long,
                    device=None if sem_seg is None else sem_seg.device)
            device = labels.device
            masks = gt.masks if 'masks' in gt else None
            if masks is None:
                if len(labels) > 0:
                    raise ValueError('gt_instances.masks is required for '
                                     'Mask DINO training')
                masks = torch.zeros((0, pad_h, pad_w),
                                    dtype=torch.bool,
                                    device=device)
            elif not isinstance(masks, Tensor):
                masks = masks.to_tensor(dtype=torch.bool, device=device)
            masks = masks.bool()
            if sem_seg is not None and self.num_stuff_classes > 0:
                labels, masks = self._add_stuff(
                    labels, masks, sem_seg, sample.metainfo.get('img_path'))
                bboxes = masks_to_boxes(masks, mode='bitmask')
            elif 'bboxes' in gt:
                bboxes = get_box_tensor(gt.bboxes)
            else:
                bboxes = masks_to_boxes(masks, mode='bitmask')
            masks = self._pad_masks(masks, pad_h, pad_w)
            targets.append(
                InstanceData(
                    labels=labels.long(),
                    masks=masks,
                    bboxes=bboxes.float()))
        return targets

    @staticmethod
    def _box_targets(sample) -> InstanceData:
        """``labels`` (N, ) and ``bboxes`` (N, 4) pixel xyxy of one
        sample, for box-only heads."""
        gt = sample.get('gt_instances', InstanceData())
        if 'labels' not in gt:  # no instances packed
            return InstanceData(
                labels=torch.zeros(0, dtype=torch.long),
                bboxes=torch.zeros((0, 4)))
        if 'bboxes' not in gt:
            raise ValueError('gt_instances.bboxes is required to train a '
                             'box-only Mask DINO (with_mask=False)')
        return InstanceData(
            labels=gt.labels.long(),
            bboxes=get_box_tensor(gt.bboxes).float())

    def _add_stuff(self,
                   labels: Tensor,
                   masks: Tensor,
                   sem_seg: Tensor,
                   img_path: Optional[str] = None) -> Tuple[Tensor, Tensor]:
        """Append one mask per stuff class present in ``sem_seg``.

        Args:
            labels (Tensor): Thing labels (N, ).
            masks (Tensor): Thing masks (N, h, w) bool.
            sem_seg (Tensor): (1, H, W) map; values in
                [num_things, num_classes) are stuff, others (things, 255
                ignore) are skipped, as in mmdet's ``preprocess_panoptic_gt``.
                Any other value is an error.
            img_path (str, optional): Image of the map, for error messages.

        Returns:
            tuple: labels (N + S, ) and masks (N + S, H', W') with H', W'
            the larger of the two sizes.
        """
        sem_seg = sem_seg[0]
        ids = torch.unique(sem_seg)
        bad = ids[((ids < 0) | (ids >= self.num_classes)) & (ids != 255)]
        if bad.numel() > 0:
            raise ValueError(
                f'gt_sem_seg of {img_path or "an image"} holds labels '
                f'{bad.tolist()} outside [0, num_classes={self.num_classes}) '
                'that are not the ignore index 255; check the label map and '
                'the number of classes of the config')
        ids = ids[(ids >= self.num_things_classes) & (ids < self.num_classes)]
        stuff_masks = sem_seg[None] == ids[:, None, None]
        h = max(masks.shape[-2], stuff_masks.shape[-2])
        w = max(masks.shape[-1], stuff_masks.shape[-1])
        masks = torch.cat([
            self._pad_masks(masks, h, w),
            self._pad_masks(stuff_masks, h, w)
        ])
        labels = torch.cat([labels, ids.to(labels.dtype)])
        return labels, masks

    @staticmethod
    def _pad_masks(masks: Tensor, pad_h: int, pad_w: int) -> Tensor:
        """Zero-pad (N, h, w) masks at the bottom/right to (N, pad_h,
        pad_w)."""
        h, w = masks.shape[-2:]
        if (h, w) == (pad_h, pad_w):
            return masks
        if h > pad_h or w > pad_w:
            masks = masks[:, :pad_h, :pad_w]
            h, w = masks.shape[-2:]
        return F.pad(masks, (0, pad_w - w, 0, pad_h - h))

    def loss(self, x: List[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Compute losses.

        Args:
            x (list[Tensor]): Backbone maps.
            batch_data_samples (list[DetDataSample]): Samples with GT.

        Returns:
            dict[str, Tensor]: 105 loss terms for two-stage configs, 95 for
            single-stage ones (box-only: 63 and 57, no mask and dice terms).
        """
        batch_gt_instances = self.preprocess_gt(batch_data_samples)
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        check_targets(batch_gt_instances, batch_img_metas, self.num_classes,
                      self.with_mask)
        outputs = self(x, batch_data_samples, batch_gt_instances)
        return self.criterion(outputs, batch_gt_instances, batch_img_metas)

    def predict(self, x: List[Tensor],
                batch_data_samples: SampleList
                ) -> Tuple[Tensor, Tensor, Tensor]:
        """Final-layer predictions.

        Returns:
            tuple: cls logits (B, Q, C'), mask logits (B, Q, h, w) at 1/4 of
            the padded batch (None for box-only heads), boxes (B, Q, 4)
            normalised cxcywh.
        """
        outputs = self(x, batch_data_samples)
        return (outputs['cls_scores'], outputs.get('mask_preds'),
                outputs['bbox_preds'])
