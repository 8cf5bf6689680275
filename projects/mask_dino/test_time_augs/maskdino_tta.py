"""Test-time augmentation for Mask DINO instance segmentation.

MMDetection's ``DetTTAModel`` merges boxes only and refuses predictions
with masks. :class:`MaskDINOTTAModel` merges both: every view's instances
are mapped back to the original image (the fusion head already rescales
boxes and masks to ``ori_shape``; flipped views are flipped back here,
since nothing upstream undoes the flip of ``RandomFlip``), class-aware NMS
on the boxes picks the detections, and each kept detection's mask is the
score-weighted vote of the masks its NMS cluster holds.
"""
from typing import List, Optional

import torch
from mmcv.ops import batched_nms
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_flip, bbox_overlaps
from mmengine.config import ConfigDict
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData
from torch import Tensor

# Dimensions of a (k, H, W) mask tensor that each flip direction reverses.
_FLIP_DIMS = {'horizontal': (2, ), 'vertical': (1, ), 'diagonal': (1, 2)}


def flip_masks(masks: Tensor, direction: str) -> Tensor:
    """Flip instance masks back to the unflipped image.

    Args:
        masks (Tensor): Masks of one view, shape (k, H, W).
        direction (str): ``'horizontal'``, ``'vertical'`` or ``'diagonal'``
            (mmcv's ``RandomFlip`` directions).

    Returns:
        Tensor: The flipped masks, shape (k, H, W).
    """
    if direction not in _FLIP_DIMS:
        raise ValueError(f'unknown flip direction {direction!r}; expected '
                         f'one of {sorted(_FLIP_DIMS)}')
    return masks.flip(_FLIP_DIMS[direction])


def unflip_instances(instances: InstanceData, img_meta: dict) -> InstanceData:
    """Map one view's instances to the unflipped original image.

    Args:
        instances (InstanceData): ``bboxes`` (k, 4) xyxy and ``masks``
            (k, H0, W0) in the frame of ``ori_shape`` (the view was
            predicted with ``rescale=True``), ``scores`` (k, ), ``labels``
            (k, ).
        img_meta (dict): The view's meta information: ``ori_shape`` and,
            for flipped views, ``flip`` and ``flip_direction``.

    Returns:
        InstanceData: The four fields in the unflipped frame (the input
        itself when the view is not flipped).
    """
    if not img_meta.get('flip', False):
        return instances
    direction = img_meta['flip_direction']
    return InstanceData(
        bboxes=bbox_flip(instances.bboxes, img_meta['ori_shape'][:2],
                         direction),
        masks=flip_masks(instances.masks, direction),
        scores=instances.scores,
        labels=instances.labels)


def vote_masks(masks: Tensor, scores: Tensor, members: Tensor,
               mask_thr: float) -> Tensor:
    """Score-weighted mask vote of every cluster.

    Args:
        masks (Tensor): Masks of all candidates, shape (n, H, W), bool.
        scores (Tensor): Candidate scores, shape (n, ).
        members (Tensor): Cluster membership, shape (k, n), bool; row ``i``
            holds the candidates merged into kept detection ``i``
            (at least the detection itself).
        mask_thr (float): A pixel is foreground when the weighted share of
            the cluster's masks that cover it is at least this.

    Returns:
        Tensor: Merged masks, shape (k, H, W), bool.
    """
    merged = masks.new_zeros((members.shape[0], *masks.shape[1:]))
    # One cluster at a time: a float copy of every candidate mask at the
    # original resolution would cost views x queries x H x W x 4 bytes.
    for i, row in enumerate(members):
        idx = row.nonzero(as_tuple=True)[0]
        weights = scores[idx].float().clamp_min(1e-12)
        votes = torch.einsum('n,nhw->hw', weights, masks[idx].float())
        merged[i] = votes >= mask_thr * weights.sum()
    return merged


def merge_instances(instances: InstanceData, nms_cfg: dict,
                    max_per_image: int, mask_thr: float) -> InstanceData:
    """Merge the instances of all views of one image.

    Class-aware NMS on the boxes keeps the best detections (their boxes,
    scores and labels, as ``DetTTAModel``); the candidates of the same
    label whose box overlaps a kept box by at least the NMS IoU threshold
    form its cluster, and the cluster's masks are merged by
    :func:`vote_masks`.

    Args:
        instances (InstanceData): All views' instances in the original
            frame: ``bboxes`` (n, 4), ``scores`` (n, ), ``labels`` (n, ),
            ``masks`` (n, H0, W0) bool.
        nms_cfg (dict): mmcv ``batched_nms`` config, e.g.
            ``dict(type='nms', iou_threshold=0.5)``.
        max_per_image (int): Number of detections kept at most.
        mask_thr (float): Vote threshold of :func:`vote_masks`.

    Returns:
        InstanceData: At most ``max_per_image`` instances, sorted by score,
        with the four fields above.
    """
    if len(instances) == 0:
        return instances
    _, keep = batched_nms(instances.bboxes, instances.scores,
                          instances.labels, dict(nms_cfg))
    keep = keep[:max_per_image]
    overlaps = bbox_overlaps(instances.bboxes[keep], instances.bboxes)
    same_label = instances.labels[keep, None] == instances.labels[None]
    members = same_label & (overlaps >= nms_cfg['iou_threshold'])
    # A detection always votes for itself, even with a degenerate box.
    members[torch.arange(len(keep)), keep] = True
    return InstanceData(
        bboxes=instances.bboxes[keep],
        scores=instances.scores[keep],
        labels=instances.labels[keep],
        masks=vote_masks(instances.masks, instances.scores, members,
                         mask_thr))


@MODELS.register_module()
class MaskDINOTTAModel(BaseTTAModel):
    """Merge flipped and resized views of Mask DINO instance predictions.

    Use with a ``TestTimeAug`` pipeline whose ``PackDetInputs`` keeps the
    ``flip`` and ``flip_direction`` meta keys (see
    ``configs/maskdino_r50_coco_instance.py``); ``tools/test.py --tta``
    wraps the config's model in it. Only instance results can be merged:
    models with ``panoptic_on`` or ``semantic_on`` are refused.

    Args:
        module (dict or nn.Module): The Mask DINO detector.
        tta_cfg (dict, optional): ``nms`` (``dict(type='nms',
            iou_threshold=0.5)``), ``max_per_image`` (the detector's
            ``test_cfg.max_per_image``, else 100) and ``mask_thr`` (0.5).
        **kwargs: Passed to :class:`BaseTTAModel` (``data_preprocessor``).
    """

    def __init__(self, module, tta_cfg: Optional[dict] = None, **kwargs):
        super().__init__(module=module, **kwargs)
        test_cfg = getattr(self.module, 'test_cfg', None) or {}
        self._check_instance_only(test_cfg)
        cfg = ConfigDict(
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_image=test_cfg.get('max_per_image', 100),
            mask_thr=0.5)
        cfg.update(tta_cfg or {})
        if cfg.max_per_image is None:
            cfg.max_per_image = test_cfg.get('max_per_image', 100)
        self.tta_cfg = cfg

    @staticmethod
    def _check_instance_only(test_cfg: dict) -> None:
        """Refuse tasks whose results cannot be merged across views."""
        others = [k for k in ('panoptic_on', 'semantic_on') if test_cfg.get(k)]
        if others or not test_cfg.get('instance_on', True):
            raise ValueError(
                'MaskDINOTTAModel merges instance results (boxes and masks) '
                'only; the model has test_cfg '
                f'{ {k: test_cfg.get(k) for k in ("instance_on", *others)} }. '
                'Use an instance config (configs/maskdino_*_instance.py).')

    def merge_preds(
            self,
            data_samples_list: List[List[DetDataSample]]) -> List[DetDataSample]:
        """Merge the views of every image of the batch.

        Args:
            data_samples_list (list[list[DetDataSample]]): Outer list: the
                images; inner list: the predictions of their views.

        Returns:
            list[DetDataSample]: One merged prediction per image.
        """
        return [self._merge_views(views) for views in data_samples_list]

    def _merge_views(self, views: List[DetDataSample]) -> DetDataSample:
        """Merge the predictions of the views of one image."""
        instances = InstanceData.cat([
            unflip_instances(view.pred_instances, view.metainfo)
            for view in views
        ])
        merged = merge_instances(instances, self.tta_cfg.nms,
                                 self.tta_cfg.max_per_image,
                                 self.tta_cfg.mask_thr)
        # The merged result is in the unflipped original frame: report it
        # on an unflipped view so that the meta information says so.
        unflipped = [v for v in views if not v.metainfo.get('flip', False)]
        result = (unflipped or views)[0]
        result.set_metainfo(dict(flip=False, flip_direction=None))
        result.pred_instances = merged
        return result
