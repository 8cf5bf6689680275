"""The learning benchmark's adaptations of MMDetection's peers, registered
in MMDetection's ``MODELS``; the configs of ``configs/benchmarks/`` load
this module with ``custom_imports``.

- :class:`SemanticMaskFormerFusionHead` and :class:`SemanticMask2Former`
  add Mask2Former's semantic inference (softmax class scores x sigmoid
  masks, for mIoU), which MMDetection's Mask2Former lacks;
- :class:`AnyWidthDINO` runs MMDetection's DINO narrower than 256-d (its
  decoder's reference-point sine embedding sized to the model).

Nothing else of the peers is changed. Not imported by
:mod:`projects.mask_dino`.
"""
import contextlib
import functools
from typing import List, Sequence

import torch
import torch.nn.functional as F
from mmdet.models.detectors import DINO, Mask2Former
from mmdet.models.layers.transformer import dino_layers
from mmdet.models.layers.transformer.utils import coordinate_to_encoding
from mmdet.models.seg_heads.panoptic_fusion_heads import MaskFormerFusionHead
from mmdet.registry import MODELS
from mmengine.structures import PixelData
from torch import Tensor


@MODELS.register_module()
class SemanticMaskFormerFusionHead(MaskFormerFusionHead):
    """:class:`MaskFormerFusionHead` that also returns Mask2Former's
    semantic segmentation (``semantic_inference`` of the Mask2Former paper
    code): per-class score maps ``sum_q softmax(cls_q)[c] * sigmoid(m_q)``,
    the no-object column dropped.

    The masks are cropped and resized exactly as for the panoptic and
    instance results of the parent class.
    """

    def semantic_postprocess(self, mask_cls: Tensor,
                             mask_pred: Tensor) -> PixelData:
        """Per-class semantic scores of one image.

        Args:
            mask_cls (Tensor): Class logits with the no-object column,
                shape (Q, C + 1).
            mask_pred (Tensor): Mask logits, shape (Q, H, W).

        Returns:
            :obj:`PixelData`: ``sem_seg`` of shape (C, H, W).
        """
        probs = F.softmax(mask_cls, dim=-1)[:, :-1]
        return PixelData(
            sem_seg=torch.einsum('qc,qhw->chw', probs, mask_pred.sigmoid()))

    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Tensor,
                batch_data_samples: Sequence,
                rescale: bool = False,
                **kwargs) -> List[dict]:
        """The parent's post-processing with ``semantic_on`` allowed.

        Args:
            mask_cls_results (Tensor): Shape (B, Q, C + 1).
            mask_pred_results (Tensor): Shape (B, Q, h, w) at the padded
                input size.
            batch_data_samples (list[:obj:`DetDataSample`]): Metainfo
                (``img_shape``, ``ori_shape``) of each image.
            rescale (bool): Return results at ``ori_shape``.

        Returns:
            list[dict]: ``pan_results``, ``ins_results`` and
            ``sem_results`` per image, as switched on in ``test_cfg``.
        """
        cfg = self.test_cfg
        results = []
        for mask_cls, mask_pred, sample in zip(mask_cls_results,
                                               mask_pred_results,
                                               batch_data_samples):
            img_h, img_w = sample.metainfo['img_shape'][:2]
            mask_pred = mask_pred[:, :img_h, :img_w]
            if rescale:
                mask_pred = F.interpolate(
                    mask_pred[:, None],
                    size=sample.metainfo['ori_shape'][:2],
                    mode='bilinear',
                    align_corners=False)[:, 0]
            result = dict()
            if cfg.get('panoptic_on', True):
                result['pan_results'] = self.panoptic_postprocess(
                    mask_cls, mask_pred)
            if cfg.get('instance_on', False):
                result['ins_results'] = self.instance_postprocess(
                    mask_cls, mask_pred)
            if cfg.get('semantic_on', False):
                result['sem_results'] = self.semantic_postprocess(
                    mask_cls, mask_pred)
            results.append(result)
        return results


@MODELS.register_module()
class SemanticMask2Former(Mask2Former):
    """:class:`Mask2Former` that stores semantic results as
    ``pred_sem_seg`` (argmax of the score maps), which ``SemSegMetric``
    reads; the parent refuses them."""

    def add_pred_to_datasample(self, data_samples: list,
                               results_list: List[dict]) -> list:
        semantic = [r.pop('sem_results', None) for r in results_list]
        data_samples = super().add_pred_to_datasample(data_samples,
                                                      results_list)
        for sample, sem in zip(data_samples, semantic):
            if sem is not None:
                sample.pred_sem_seg = PixelData(
                    sem_seg=sem.sem_seg.argmax(dim=0, keepdim=True))
        return data_samples


@contextlib.contextmanager
def _sine_features(num_feats: int):
    """Within the block, mmdet's DINO decoder encodes reference points with
    ``num_feats`` sine features per coordinate instead of its default 128
    (the function is looked up in ``dino_layers`` at call time)."""
    default = dino_layers.coordinate_to_encoding
    dino_layers.coordinate_to_encoding = functools.partial(
        coordinate_to_encoding, num_feats=num_feats)
    try:
        yield
    finally:
        dino_layers.coordinate_to_encoding = default


class AnyWidthDinoTransformerDecoder(dino_layers.DinoTransformerDecoder):
    """DINO's decoder with the reference-point sine embedding sized to the
    model: ``embed_dims // 2`` features per box coordinate, i.e.
    ``2 * embed_dims`` channels, the input width of ``ref_point_head``.

    MMDetection's decoder always uses 128 features (512 channels), so it
    only runs at ``embed_dims=256``, where the two are the same; Mask DINO's
    decoder sizes the embedding this way at every width.
    """

    def forward(self, *args, **kwargs):
        with _sine_features(self.embed_dims // 2):
            return super().forward(*args, **kwargs)


@MODELS.register_module()
class AnyWidthDINO(DINO):
    """:class:`DINO` with :class:`AnyWidthDinoTransformerDecoder`, so that
    it can be built narrower than 256-d (identical at 256-d)."""

    def _init_layers(self) -> None:
        decoder_cfg = self.decoder  # still the config here
        super()._init_layers()
        self.decoder = AnyWidthDinoTransformerDecoder(**decoder_cfg)
