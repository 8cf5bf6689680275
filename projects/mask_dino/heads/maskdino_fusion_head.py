"""Inference post-processing of Mask DINO (instance, panoptic, semantic)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.models.seg_heads.panoptic_fusion_heads import BasePanopticFusionHead
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import OptConfigType, OptMultiConfig


@MODELS.register_module()
class MaskDINOFusionHead(BasePanopticFusionHead):
    """Turns Mask DINO's final queries into instance, panoptic and semantic
    segmentation results (``MaskDINO.forward`` eval branch of the official
    implementation, written in MMDetection's result conventions).

    Any combination of the three tasks can be switched on in ``test_cfg``;
    the per-query mask logits are resized once per image, and only for the
    queries that some task needs (all queries when the semantic map is
    built from resized masks, otherwise the instance top-k and the panoptic
    survivors).

    It derives from :class:`BasePanopticFusionHead`, not from
    :class:`MaskFormerFusionHead`: every step of the latter differs here
    (sigmoid focal scores, sharpened by ``softmax(sigmoid / T)`` for the
    panoptic and semantic maps, instead of a softmax over C + 1; predicted
    boxes instead of ``mask2bbox``; the optional box-only instance score;
    masks resized once per image for all three tasks), so a subclass would
    override all of it.
    Its conventions (``INSTANCE_OFFSET``, void = ``num_classes``) are kept.

    Mask resizing (per image): bilinear (``align_corners=False``) upsampling
    to ``batch_input_shape``, crop to ``img_shape`` and, when ``rescale``,
    bilinear resize to ``ori_shape``.

    Result conventions:

    - ``ins_results`` (:obj:`InstanceData`): ``bboxes`` (k, 4) xyxy pixels,
      ``labels`` (k, ), ``scores`` (k, ) and ``masks`` (k, H0, W0) bool,
      sorted by the classification score of the top-k selection.
    - ``pan_results`` (:obj:`PixelData`): ``sem_seg`` (1, H0, W0) int32,
      pixel = ``label + instance_id * INSTANCE_OFFSET``; things get ids
      1, 2, ... in query order, stuff gets id 0 (so stuff segments of one
      class are merged), void pixels are ``num_classes``, as in
      :class:`MaskFormerFusionHead`, so ``CocoPanopticMetric`` can read it.
    - ``sem_results`` (:obj:`PixelData`): ``sem_seg`` (C, H0, W0) float
      per-class scores (the ``seg_logits`` convention of MMSegmentation);
      the detector takes the argmax for ``pred_sem_seg``.

    Box-only models (``with_mask=False``, passed by ``MaskDINO`` from
    ``MaskDINOHead``) give ``ins_results`` with ``bboxes``, ``labels`` and
    ``scores`` (the class scores) and no ``masks``; panoptic and semantic
    results need masks and are a build-time error.

    Args:
        num_things_classes (int): Number of thing classes; they come first
            in the contiguous label space. Defaults to 80.
        num_stuff_classes (int): Number of stuff classes. Defaults to 53.
        test_cfg (:obj:`ConfigDict` or dict, optional): Keys (defaults in
            brackets): ``instance_on`` (True), ``panoptic_on`` (False),
            ``semantic_on`` (False), ``max_per_image`` (100, instance
            top-k), ``object_mask_thr`` (0.25, panoptic query score
            threshold), ``iou_thr`` (0.8, panoptic overlap threshold),
            ``panoptic_temperature`` (0.06), ``transform_eval`` (True,
            sharpen sigmoid scores with ``softmax(sigmoid / T)`` for
            panoptic and semantic), ``focus_on_box`` (False, instance score
            = class score only), ``semantic_ce`` (False, the classifier has
            C + 1 outputs trained with softmax cross-entropy) and
            ``sem_seg_postprocess_before_inference`` (False; the semantic
            map is always built from resized masks when instance or
            panoptic is on, as officially). Other keys are ignored, so the
            detector's ``test_cfg`` can be shared with the main head.
        with_mask (bool): The model predicts masks. False for box-only
            models: instance results without masks. Defaults to True.
        loss_panoptic (:obj:`ConfigDict` or dict, optional): Unused, kept
            for the :class:`BasePanopticFusionHead` interface.
        init_cfg (:obj:`ConfigDict` or dict or list, optional):
            Initialization config. Defaults to None.
    """

    default_test_cfg = dict(
        instance_on=True,
        panoptic_on=False,
        semantic_on=False,
        max_per_image=100,
        object_mask_thr=0.25,
        iou_thr=0.8,
        panoptic_temperature=0.06,
        transform_eval=True,
        focus_on_box=False,
        semantic_ce=False,
        sem_seg_postprocess_before_inference=False)

    def __init__(self,
                 num_things_classes: int = 80,
                 num_stuff_classes: int = 53,
                 test_cfg: OptConfigType = None,
                 with_mask: bool = True,
                 loss_panoptic: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        self.with_mask = with_mask
        cfg = ConfigDict(self.default_test_cfg)
        cfg.update(test_cfg or {})
        super().__init__(
            num_things_classes=num_things_classes,
            num_stuff_classes=num_stuff_classes,
            test_cfg=cfg,
            loss_panoptic=loss_panoptic,
            init_cfg=init_cfg,
            **kwargs)
        self._check_test_cfg()

    def _check_test_cfg(self) -> None:
        """Reject settings that would silently produce nothing or NaNs."""
        cfg = self.test_cfg
        if not (cfg.instance_on or cfg.panoptic_on or cfg.semantic_on):
            raise ValueError('test_cfg: at least one of instance_on, '
                             'panoptic_on, semantic_on must be True')
        if int(cfg.max_per_image) <= 0:
            raise ValueError('test_cfg.max_per_image must be positive, got '
                             f'{cfg.max_per_image}')
        if float(cfg.panoptic_temperature) <= 0:
            raise ValueError('test_cfg.panoptic_temperature must be '
                             f'positive, got {cfg.panoptic_temperature}')
        if not self.with_mask and (cfg.panoptic_on or cfg.semantic_on
                                   or not cfg.instance_on):
            raise ValueError(
                'a box-only Mask DINO (with_mask=False) predicts boxes only: '
                'set test_cfg.instance_on=True, panoptic_on=False and '
                f'semantic_on=False, got instance_on={cfg.instance_on}, '
                f'panoptic_on={cfg.panoptic_on}, '
                f'semantic_on={cfg.semantic_on}')

    def loss(self, **kwargs) -> dict:
        """MaskDINOFusionHead has no training loss."""
        return dict()

    # ------------------------------------------------------------------
    # entry point
    # ------------------------------------------------------------------
    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Optional[Tensor],
                bbox_pred_results: Optional[Tensor],
                batch_data_samples: Sequence[Union[DetDataSample, dict]],
                rescale: bool = True,
                **kwargs) -> List[Dict[str, Union[InstanceData, PixelData]]]:
        """Post-process the final predictions of a batch.

        Args:
            mask_cls_results (Tensor): Class logits, shape (B, Q, C), or
                (B, Q, C + 1) when ``test_cfg.semantic_ce``.
            mask_pred_results (Tensor, optional): Mask logits, shape
                (B, Q, h, w), usually at 1/4 of ``batch_input_shape``; None
                for box-only models.
            bbox_pred_results (Tensor, optional): Boxes, shape (B, Q, 4),
                normalised cxcywh relative to the padded batch canvas
                (``batch_input_shape``). Only needed for instance results.
            batch_data_samples (list[:obj:`DetDataSample`] | list[dict]):
                Data samples or their metainfo; each needs
                ``batch_input_shape`` and ``img_shape``, plus
                ``ori_shape`` when ``rescale`` and ``scale_factor`` when
                ``rescale`` and instance results are on.
            rescale (bool): Return results in the original image size
                (``ori_shape``); otherwise in ``img_shape``.
                Defaults to True.

        Returns:
            list[dict]: Per image, the enabled keys among ``ins_results``
            (:obj:`InstanceData`), ``pan_results`` (:obj:`PixelData`) and
            ``sem_results`` (:obj:`PixelData`); see the class docstring.
        """
        batch_img_metas = [
            s.metainfo if hasattr(s, 'metainfo') else s
            for s in batch_data_samples
        ]
        self._check_inputs(mask_cls_results, mask_pred_results,
                           bbox_pred_results, batch_img_metas, rescale)
        if bbox_pred_results is None:
            bbox_pred_results = [None] * len(batch_img_metas)
        if not self.with_mask:
            return [
                dict(
                    ins_results=self._box_results(
                        cls.float(), boxes.float(), img_meta, rescale))
                for cls, boxes, img_meta in zip(
                    mask_cls_results, bbox_pred_results, batch_img_metas)
            ]
        results = []
        for i, img_meta in enumerate(batch_img_metas):
            # fp32 post-processing, also for fp16 (AMP) predictions
            boxes = bbox_pred_results[i]
            results.append(
                self._predict_single(mask_cls_results[i].float(),
                                     mask_pred_results[i].float(),
                                     None if boxes is None else boxes.float(),
                                     img_meta, rescale))
        return results

    def _check_inputs(self, mask_cls: Tensor, mask_pred: Tensor,
                      bbox_pred: Optional[Tensor], img_metas: List[dict],
                      rescale: bool) -> None:
        """Raise a clear error naming the offending argument."""
        if mask_cls.dim() != 3:
            raise ValueError('mask_cls_results must be (B, Q, C), got shape '
                             f'{tuple(mask_cls.shape)}')
        num_out = self.num_classes + int(bool(self.test_cfg.semantic_ce))
        if mask_cls.shape[-1] != num_out:
            raise ValueError(
                f'mask_cls_results has {mask_cls.shape[-1]} class outputs, '
                f'expected {num_out} (num_classes={self.num_classes}, '
                f'test_cfg.semantic_ce={self.test_cfg.semantic_ce})')
        if not self.with_mask:
            if mask_pred is not None:
                raise ValueError('mask_pred_results must be None for a '
                                 'box-only model (with_mask=False)')
        elif mask_pred is None:
            raise ValueError('mask_pred_results is required (the model '
                             'predicts masks: with_mask=True)')
        elif mask_pred.dim() != 4 or mask_pred.shape[:2] != mask_cls.shape[:2]:
            raise ValueError('mask_pred_results must be (B, Q, h, w) with '
                             'the B, Q of mask_cls_results, got shapes '
                             f'{tuple(mask_pred.shape)} and '
                             f'{tuple(mask_cls.shape)}')
        if self.test_cfg.instance_on:
            if bbox_pred is None:
                raise ValueError('bbox_pred_results is required when '
                                 'test_cfg.instance_on is True')
            if bbox_pred.shape != (*mask_cls.shape[:2], 4):
                raise ValueError('bbox_pred_results must be (B, Q, 4), got '
                                 f'shape {tuple(bbox_pred.shape)}')
        if len(img_metas) != mask_cls.shape[0]:
            raise ValueError(f'got {len(img_metas)} batch_data_samples for '
                             f'a batch of {mask_cls.shape[0]} predictions')
        required = ['batch_input_shape', 'img_shape']
        if rescale:
            required.append('ori_shape')
            if self.test_cfg.instance_on:
                required.append('scale_factor')
        for i, meta in enumerate(img_metas):
            for key in required:
                if meta.get(key) is None:
                    raise KeyError(f'batch_data_samples[{i}] metainfo lacks '
                                   f'"{key}"')

    def _predict_single(self, mask_cls: Tensor, mask_pred: Tensor,
                        bbox_pred: Optional[Tensor], img_meta: dict,
                        rescale: bool) -> dict:
        """Post-process one image.

        Args:
            mask_cls (Tensor): Class logits, shape (Q, C) or (Q, C + 1).
            mask_pred (Tensor): Mask logits, shape (Q, h, w).
            bbox_pred (Tensor, optional): Normalised cxcywh, shape (Q, 4).
            img_meta (dict): Meta information of the image.
            rescale (bool): Whether to return original-size results.

        Returns:
            dict: The enabled keys among ``ins_results``, ``pan_results``,
            ``sem_results``.
        """
        cfg = self.test_cfg
        num_queries = mask_cls.shape[0]
        # The semantic map is built from resized masks whenever the other
        # tasks need them (official ``sem_seg_postprocess_before_inference``
        # is forced on by instance/panoptic), else at padded resolution.
        sem_from_resized = cfg.semantic_on and (
            cfg.instance_on or cfg.panoptic_on
            or cfg.sem_seg_postprocess_before_inference)

        selected = []
        if cfg.instance_on:
            ins_query, ins_labels, ins_scores = self._select_instances(
                mask_cls)
            selected.append(ins_query)
        if cfg.panoptic_on:
            pan_query, pan_labels, pan_scores = self._select_segments(mask_cls)
            selected.append(pan_query)

        # Resize only the queries that are used (all for semantic).
        if sem_from_resized:
            needed = torch.arange(num_queries, device=mask_pred.device)
        elif selected:
            needed = torch.cat(selected).unique()
        else:
            needed = mask_pred.new_zeros(0, dtype=torch.long)
        resized = self._resize_masks(mask_pred[needed], img_meta, rescale)
        position = needed.new_full((num_queries, ), -1)
        position[needed] = torch.arange(len(needed), device=needed.device)

        results = dict()
        if cfg.instance_on:
            results['ins_results'] = self._instance_postprocess(
                ins_scores, ins_labels, resized, position[ins_query],
                bbox_pred[ins_query], img_meta, rescale)
        # The logits are not needed any more: one in-place sigmoid serves the
        # panoptic and the semantic maps (at 800x1333 with 300 queries, a
        # copy would be 1.3 GB).
        probs = resized.sigmoid_() if cfg.panoptic_on or sem_from_resized \
            else None
        if cfg.panoptic_on:
            results['pan_results'] = self._panoptic_postprocess(
                pan_scores, pan_labels,
                self._take_rows(probs, position[pan_query]))
        if cfg.semantic_on:
            weights = self._semantic_weights(mask_cls)
            if sem_from_resized:
                sem_seg = self._semantic_postprocess(weights, probs)
            else:
                padded = self._upsample_to_padded(mask_pred, img_meta)
                sem_seg = self._crop_and_rescale(
                    self._semantic_postprocess(weights, padded.sigmoid_()),
                    img_meta, rescale)
            results['sem_results'] = PixelData(sem_seg=sem_seg)
        return results

    # ------------------------------------------------------------------
    # geometry
    # ------------------------------------------------------------------
    @staticmethod
    def _upsample_to_padded(masks: Tensor, img_meta: dict) -> Tensor:
        """Bilinearly upsample (n, h, w) maps to ``batch_input_shape``."""
        pad_h, pad_w = img_meta['batch_input_shape'][:2]
        if masks.shape[0] == 0:
            return masks.new_zeros((0, pad_h, pad_w))
        return F.interpolate(
            masks[:, None],
            size=(pad_h, pad_w),
            mode='bilinear',
            align_corners=False)[:, 0]

    @staticmethod
    def _crop_and_rescale(maps: Tensor, img_meta: dict,
                          rescale: bool) -> Tensor:
        """Crop (n, H, W) padded maps to ``img_shape`` and, when
        ``rescale``, bilinearly resize them to ``ori_shape``."""
        img_h, img_w = img_meta['img_shape'][:2]
        maps = maps[:, :img_h, :img_w]
        if not rescale:
            return maps
        ori_h, ori_w = img_meta['ori_shape'][:2]
        if maps.shape[0] == 0:
            return maps.new_zeros((0, ori_h, ori_w))
        if (ori_h, ori_w) == (img_h, img_w):
            return maps
        return F.interpolate(
            maps[:, None],
            size=(ori_h, ori_w),
            mode='bilinear',
            align_corners=False)[:, 0]

    def _resize_masks(self, masks: Tensor, img_meta: dict,
                      rescale: bool) -> Tensor:
        """(n, h, w) mask logits -> (n, H0, W0) logits in the output frame
        (``ori_shape`` when ``rescale``, else ``img_shape``)."""
        return self._crop_and_rescale(
            self._upsample_to_padded(masks, img_meta), img_meta, rescale)

    @staticmethod
    def _decode_bboxes(bbox_pred: Tensor, img_meta: dict,
                       rescale: bool) -> Tensor:
        """Normalised cxcywh relative to the padded canvas -> xyxy pixels.

        Args:
            bbox_pred (Tensor): Shape (k, 4), normalised cxcywh.
            img_meta (dict): Meta information of the image.
            rescale (bool): Divide by ``scale_factor`` (original image
                pixels) and clip to ``ori_shape``; otherwise clip to
                ``img_shape``.

        Returns:
            Tensor: Shape (k, 4), xyxy in pixels.
        """
        pad_h, pad_w = img_meta['batch_input_shape'][:2]
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred)
        bboxes = bboxes * bboxes.new_tensor([pad_w, pad_h, pad_w, pad_h])
        if rescale:
            bboxes = bboxes / bboxes.new_tensor(
                img_meta['scale_factor']).repeat((1, 2))
            out_h, out_w = img_meta['ori_shape'][:2]
        else:
            out_h, out_w = img_meta['img_shape'][:2]
        # The official code does not clip; boxes reaching into the batch
        # padding are clipped here as in mmdet's DETR heads.
        bboxes[:, 0::2].clamp_(min=0, max=out_w)
        bboxes[:, 1::2].clamp_(min=0, max=out_h)
        return bboxes

    # ------------------------------------------------------------------
    # query selection (class scores only, before any mask is resized)
    # ------------------------------------------------------------------
    def _class_probs(self, mask_cls: Tensor) -> Tensor:
        """Per-class probabilities, shape (Q, C): sigmoid for focal-trained
        classifiers, softmax without the no-object column for CE ones."""
        if self.test_cfg.semantic_ce:
            return mask_cls.softmax(-1)[:, :-1]
        return mask_cls.sigmoid()

    def _select_instances(self,
                          mask_cls: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Top-k (query, label) pairs over the flattened Q x C scores.

        Args:
            mask_cls (Tensor): Class logits, shape (Q, C) or (Q, C + 1).

        Returns:
            tuple[Tensor]: Query indices (k, ), labels (k, ) and class
            scores (k, ). Panoptic models keep thing labels only.
        """
        probs = self._class_probs(mask_cls)
        num_classes = probs.shape[-1]
        k = min(int(self.test_cfg.max_per_image), probs.numel())
        scores, indices = probs.flatten().topk(k)
        queries = indices // num_classes
        labels = indices % num_classes
        if self.test_cfg.panoptic_on:
            # Stuff is evaluated by the panoptic result only.
            is_thing = labels < self.num_things_classes
            queries, labels = queries[is_thing], labels[is_thing]
            scores = scores[is_thing]
        return queries, labels, scores

    def _select_segments(self,
                         mask_cls: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Queries entering the panoptic merge, in query order.

        Focal models keep queries whose max sigmoid score exceeds
        ``object_mask_thr`` and, with ``transform_eval``, re-score them by
        the max of ``softmax(sigmoid / T)``. CE models use the softmax
        over C + 1 and drop no-object winners (MaskFormer rule).

        Args:
            mask_cls (Tensor): Class logits, shape (Q, C) or (Q, C + 1).

        Returns:
            tuple[Tensor]: Query indices (n, ), labels (n, ) and scores
            (n, ).
        """
        cfg = self.test_cfg
        if cfg.semantic_ce:
            scores, labels = mask_cls.softmax(-1).max(-1)
            keep = labels.ne(self.num_classes) & (scores > cfg.object_mask_thr)
        else:
            probs = mask_cls.sigmoid()
            scores, labels = probs.max(-1)
            keep = scores > cfg.object_mask_thr
            if cfg.transform_eval:
                # softmax is monotonic in the input, so labels stay the same
                scores = (probs /
                          cfg.panoptic_temperature).softmax(-1).amax(-1)
        queries = keep.nonzero().flatten()
        return queries, labels[queries], scores[queries]

    def _semantic_weights(self, mask_cls: Tensor) -> Tensor:
        """Per-query class weights of the semantic map, shape (Q, C)."""
        if self.test_cfg.semantic_ce:
            return mask_cls.softmax(-1)[:, :-1]
        probs = mask_cls.sigmoid()
        if self.test_cfg.transform_eval:
            probs = (probs / self.test_cfg.panoptic_temperature).softmax(-1)
        return probs

    # ------------------------------------------------------------------
    # task outputs
    # ------------------------------------------------------------------
    @staticmethod
    def _take_rows(tensor: Tensor, index: Tensor) -> Tensor:
        """``tensor[index]``, without the copy when ``index`` takes every
        row in order (full-resolution masks are large)."""
        if len(index) == len(tensor) and bool(
                (index == torch.arange(len(index),
                                       device=index.device)).all()):
            return tensor
        return tensor[index]

    def _instance_postprocess(self, cls_scores: Tensor, labels: Tensor,
                              mask_logits: Tensor, mask_index: Tensor,
                              bbox_pred: Tensor, img_meta: dict,
                              rescale: bool) -> InstanceData:
        """Instance results of the selected (query, label) pairs.

        Args:
            cls_scores (Tensor): Class scores, shape (k, ).
            labels (Tensor): Labels, shape (k, ).
            mask_logits (Tensor): Resized mask logits, shape (n, H0, W0),
                of (at least) the selected queries.
            mask_index (Tensor): Row of ``mask_logits`` of every pair,
                shape (k, ) (a query can be selected with several labels).
            bbox_pred (Tensor): Normalised cxcywh boxes, shape (k, 4).
            img_meta (dict): Meta information of the image.
            rescale (bool): Whether boxes go to the original image frame.

        Returns:
            :obj:`InstanceData`: ``bboxes`` (k, 4), ``labels`` (k, ),
            ``scores`` (k, ), ``masks`` (k, H0, W0) bool.
        """
        # Per distinct selected query, then gathered: a full-resolution
        # float copy per pair would cost more than the statistics.
        rows, mask_index = mask_index.unique(return_inverse=True)
        mask_logits = self._take_rows(mask_logits, rows)
        binary = mask_logits > 0
        scores = cls_scores
        if not self.test_cfg.focus_on_box:
            # mean foreground probability inside the binary mask
            # in two passes: logits <= 0 -> -inf, then sigmoid (0 there);
            # sums over both dims, as flatten() would copy a cropped view
            inside = F.threshold(mask_logits, 0.0, float('-inf'))
            inside = inside.sigmoid_().sum((1, 2))
            area = binary.sum((1, 2), dtype=torch.int32)
            mask_scores = inside / (area + 1e-6)
            scores = scores * mask_scores[mask_index]
        results = InstanceData()
        results.bboxes = self._decode_bboxes(bbox_pred, img_meta, rescale)
        results.labels = labels
        results.scores = scores
        results.masks = self._take_rows(binary, mask_index)
        return results

    def _box_results(self, mask_cls: Tensor, bbox_pred: Tensor,
                     img_meta: dict, rescale: bool) -> InstanceData:
        """Instance results of a box-only model for one image.

        Args:
            mask_cls (Tensor): Class logits, shape (Q, C) or (Q, C + 1).
            bbox_pred (Tensor): Normalised cxcywh boxes, shape (Q, 4).
            img_meta (dict): Meta information of the image.
            rescale (bool): Whether boxes go to the original image frame.

        Returns:
            :obj:`InstanceData`: the top-k ``bboxes`` (k, 4), ``labels``
            (k, ) and class ``scores`` (k, ).
        """
        queries, labels, scores = self._select_instances(mask_cls)
        results = InstanceData()
        results.bboxes = self._decode_bboxes(bbox_pred[queries], img_meta,
                                             rescale)
        results.labels = labels
        results.scores = scores
        return results

    def _panoptic_postprocess(self, scores: Tensor, labels: Tensor,
                              probs: Tensor) -> PixelData:
        """Merge the kept queries into one panoptic map.

        Every pixel goes to the query with the largest ``score * sigmoid``;
        a query survives when it owns pixels, has pixels with
        ``sigmoid >= 0.5``, owns such pixels, and owns at least ``iou_thr``
        of its ``sigmoid >= 0.5`` area. Survivors paint the pixels they own
        with ``sigmoid >= 0.5``. Each decision depends on the query's own
        statistics only, so the official sequential loop is vectorised
        here without changing the result.

        Args:
            scores (Tensor): Query scores, shape (n, ).
            labels (Tensor): Query labels, shape (n, ).
            probs (Tensor): Sigmoid of the resized mask logits, shape
                (n, H0, W0).

        Returns:
            :obj:`PixelData`: ``sem_seg`` of shape (1, H0, W0), int32.
        """
        num_segments, height, width = probs.shape
        void = self.num_classes
        if num_segments == 0:
            return PixelData(
                sem_seg=probs.new_full(
                    (1, height, width), void, dtype=torch.int32))

        owner = (scores[:, None, None] * probs).argmax(0)
        owned_fg = probs.gather(0, owner[None])[0] >= 0.5
        owner = owner.flatten()
        area = torch.bincount(owner, minlength=num_segments)
        fg_area = torch.bincount(
            owner[owned_fg.flatten()], minlength=num_segments)
        orig_area = (probs >= 0.5).sum((1, 2), dtype=torch.int32)
        valid = (area > 0) & (orig_area > 0) & (fg_area > 0)
        # float64 division reproduces the official Python comparison
        valid &= area.double() / orig_area.clamp(min=1).double() >= float(
            self.test_cfg.iou_thr)

        # Things get ids 1, 2, ... in query order; stuff shares id 0, which
        # merges stuff segments of one class.
        is_thing = valid & (labels < self.num_things_classes)
        instance_ids = torch.cumsum(is_thing.long(), 0) * is_thing
        segment_values = labels.long() + instance_ids * INSTANCE_OFFSET
        segment_values[~valid] = void
        panoptic = torch.where(owned_fg.flatten(), segment_values[owner],
                               segment_values.new_tensor(void))
        return PixelData(
            sem_seg=panoptic.view(1, height, width).to(torch.int32))

    @staticmethod
    def _semantic_postprocess(weights: Tensor, mask_probs: Tensor) -> Tensor:
        """Per-class scores ``sum_q weights[q, c] * sigmoid(mask_q)``.

        Args:
            weights (Tensor): Per-query class weights, shape (Q, C).
            mask_probs (Tensor): Mask sigmoids, shape (Q, H, W).

        Returns:
            Tensor: Per-class score maps, shape (C, H, W).
        """
        return torch.einsum('qc,qhw->chw', weights, mask_probs)
