# Copyright (c) OpenMMLab. All rights reserved.
"""Mask DINO detector."""
from contextlib import nullcontext
from typing import Dict, List, Tuple

import torch
from mmdet.models.detectors import MaskFormer
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmengine.structures import PixelData
from torch import Tensor


@MODELS.register_module()
class MaskDINO(MaskFormer):
    """Mask DINO: `A Unified Transformer-based Framework for Object Detection
    and Segmentation <https://arxiv.org/abs/2206.02777>`_.

    backbone -> ``panoptic_head`` (:class:`MaskDINOHead`: pixel decoder,
    query selection, denoising, transformer decoder, shared heads and the
    criterion) -> ``panoptic_fusion_head`` (:class:`MaskDINOFusionHead`:
    instance / panoptic / semantic post-processing, switched by
    ``test_cfg.instance_on`` / ``panoptic_on`` / ``semantic_on``).

    ``loss`` and ``extract_feat`` are :class:`MaskFormer`'s; ``predict``
    also passes the box predictions and writes semantic results.
    """

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predict results from a batch of inputs.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised, padded images.
            batch_data_samples (list[DetDataSample]): Data samples.
            rescale (bool): Rescale results to the original image size.

        Returns:
            list[DetDataSample]: with ``pred_instances`` (bboxes, labels,
            scores, masks), ``pred_panoptic_seg`` and ``pred_sem_seg``
            according to the ``test_cfg`` switches.
        """
        # With gradients off (mmengine's val / test loops, inferencers) run
        # in inference mode: no autograd bookkeeping at all.
        mode = nullcontext() if torch.is_grad_enabled() else \
            torch.inference_mode()
        with mode:
            feats = self.extract_feat(batch_inputs)
            cls_scores, mask_preds, bbox_preds = self.panoptic_head.predict(
                feats, batch_data_samples)
            results_list = self.panoptic_fusion_head.predict(
                cls_scores,
                mask_preds,
                bbox_preds,
                batch_data_samples,
                rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)

    def add_pred_to_datasample(self, data_samples: SampleList,
                               results_list: List[dict]) -> SampleList:
        """Write the fusion head's results into the data samples.

        Semantic results are per-class score maps (C, H, W); they are stored
        as ``seg_logits`` and their argmax as ``pred_sem_seg`` (mmseg
        convention, read by ``IoUMetric``).
        """
        for data_sample, results in zip(data_samples, results_list):
            if 'pan_results' in results:
                data_sample.pred_panoptic_seg = results['pan_results']
            if 'ins_results' in results:
                data_sample.pred_instances = results['ins_results']
            if 'sem_results' in results:
                seg_logits = results['sem_results'].sem_seg
                data_sample.seg_logits = PixelData(data=seg_logits)
                data_sample.pred_sem_seg = PixelData(
                    sem_seg=seg_logits.argmax(dim=0, keepdim=True))
        return data_samples

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: SampleList) -> Tuple[Dict, ...]:
        """Network forward without post-processing (tensor mode).

        Returns:
            tuple[dict]: the head's output dict (final set, ``aux_outputs``,
            ``interm_outputs``).
        """
        feats = self.extract_feat(batch_inputs)
        return (self.panoptic_head.forward(feats, batch_data_samples), )
