"""Mask DINO detector."""
import warnings
from collections import OrderedDict
from contextlib import nullcontext
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.detectors import MaskFormer
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from torch import Tensor

from ..utils import pass_down
from ..utils.dataset_meta import dataset_meta_from_config


def fusion_head_cfgs(panoptic_head: ConfigType,
                     panoptic_fusion_head: OptConfigType,
                     test_cfg: OptConfigType
                     ) -> Tuple[ConfigDict, Optional[ConfigDict]]:
    """The fusion head and ``test_cfg`` configs with the head's facts.

    The class counts, the box-only switch (``with_mask``) and the
    classifier type (``semantic_ce``) are stated on ``panoptic_head`` only;
    post-processing needs them too, so they are passed down here (also used
    by the ONNX runtime, which builds the fusion head without the
    detector).

    Args:
        panoptic_head (dict): Config of :class:`MaskDINOHead`.
        panoptic_fusion_head (dict, optional): Config of the fusion head.
        test_cfg (dict, optional): The detector's ``test_cfg``.

    Returns:
        tuple: the fusion head config and ``test_cfg`` (None if None).
    """
    fusion = ConfigDict(
        pass_down(
            panoptic_fusion_head or {},
            'panoptic_head',
            'panoptic_fusion_head',
            num_things_classes=panoptic_head.get('num_things_classes'),
            num_stuff_classes=panoptic_head.get('num_stuff_classes'),
            with_mask=panoptic_head.get('with_mask', True)))
    if test_cfg is not None:
        test_cfg = ConfigDict(
            pass_down(
                test_cfg,
                'panoptic_head',
                'test_cfg',
                semantic_ce=panoptic_head.get('semantic_ce')))
    return fusion, test_cfg


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

    ``panoptic_head.with_mask=False`` makes a box-only detector (datasets
    with boxes and no masks): the switch is passed to the fusion head, and
    ``pred_instances`` then hold ``bboxes``, ``scores`` and ``labels``.

    ``dataset_meta`` (class names and palette, set by ``init_detector`` and
    ``DetInferencer``) always names every class the model predicts: both
    fall back to the 80 COCO classes for a checkpoint without
    ``meta['dataset_meta']``, which crashes the visualizer of a panoptic or
    semantic model; when the names do not match and the model carries its
    config (``model.cfg``), the config's test dataset names them instead,
    with a warning.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 panoptic_head: OptConfigType = None,
                 panoptic_fusion_head: OptConfigType = None,
                 **kwargs) -> None:
        panoptic_fusion_head, test_cfg = fusion_head_cfgs(
            panoptic_head or {}, panoptic_fusion_head,
            kwargs.get('test_cfg'))
        if test_cfg is not None:
            kwargs['test_cfg'] = test_cfg
        super().__init__(
            backbone,
            neck=neck,
            panoptic_head=panoptic_head,
            panoptic_fusion_head=panoptic_fusion_head,
            **kwargs)

    @property
    def dataset_meta(self) -> dict:
        """Class names and palette of the predictions (see the class doc).

        Raises:
            AttributeError: If it was never set.
        """
        meta = self.__dict__.get('_dataset_meta')
        if meta is None:
            raise AttributeError('dataset_meta')
        cfg = self.__dict__.get('cfg')
        num_classes = self.panoptic_fusion_head.num_classes
        if cfg is not None and len(meta.get('classes', ())) != num_classes:
            meta = self._config_dataset_meta(meta, cfg, num_classes)
            self.__dict__['_dataset_meta'] = meta
        return meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        self.__dict__['_dataset_meta'] = meta

    @staticmethod
    def _config_dataset_meta(meta: dict, cfg, num_classes: int) -> dict:
        """Names and palette of the config's test dataset in place of
        ``meta``, whose class names do not match the model's classes."""
        new_meta = dataset_meta_from_config(cfg, num_classes)
        new_meta.setdefault('palette', 'random')
        warnings.warn(
            f'dataset_meta names {len(meta.get("classes", ()))} classes but '
            f'the model predicts {num_classes} (a checkpoint without '
            "meta['dataset_meta']?): using the classes and palette of the "
            "config's test dataset.")
        return new_meta

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
            scores, masks; no masks for box-only models),
            ``pred_panoptic_seg`` and ``pred_sem_seg``
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
        as ``seg_logits`` (``PixelData.data``) and their argmax as
        ``pred_sem_seg`` (``PixelData.sem_seg``, mmdet's convention, read by
        mmdet's ``SemSegMetric`` and the project's ``MaskDINOSemSegMetric``;
        mmseg's ``IoUMetric`` reads ``pred_sem_seg.data`` and does not apply).
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

    def parse_losses(
        self, losses: Dict[str, Tensor]
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """mmengine's ``parse_losses`` without the ``mean()`` of 0-dim
        losses.

        The criterion returns about a hundred 0-dim losses; ``mean()`` of
        each is one operator forward and two backward per iteration and
        gives the same value. Other entries are reduced by mmengine's
        method; the total and the log variables are formed as there (same
        order of summation, so the same value).
        """
        log_vars = []
        for name, value in losses.items():
            if not (isinstance(value, Tensor) and value.dim() == 0):
                value = super().parse_losses({name: value})[1][name]
            log_vars.append((name, value))
        loss = sum(value for name, value in log_vars if 'loss' in name)
        return loss, OrderedDict([('loss', loss)] + log_vars)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: SampleList) -> Tuple[Dict, ...]:
        """Network forward without post-processing (tensor mode).

        Returns:
            tuple[dict]: the head's output dict (final set, ``aux_outputs``,
            ``interm_outputs``).
        """
        feats = self.extract_feat(batch_inputs)
        return (self.panoptic_head.forward(feats, batch_data_samples), )
