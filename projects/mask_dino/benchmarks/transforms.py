"""A data transform for training Mask DINO from box-only annotations
(``configs/maskdino_tiny_synthetic_detection.py``)."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import get_box_tensor
from mmdet.structures.mask import BitmapMasks


@TRANSFORMS.register_module()
class BoxesAsMasks(BaseTransform):
    """Give every ground-truth box a filled-rectangle mask.

    ``MaskDINOHead.preprocess_gt`` requires ``gt_instances.masks`` whenever
    an image has instances, so a dataset loaded without masks cannot be
    trained as it is. These placeholder masks only satisfy that check: the
    detection config zeroes the mask losses and drops the mask costs and the
    mask-based anchors, so they reach no loss. Put it last before
    ``PackDetInputs`` (after any resize, crop or pad).

    Required Keys:

    - img
    - gt_bboxes (BaseBoxes[torch.float32]): (N, 4) xyxy pixels.

    Added Keys:

    - gt_masks (BitmapMasks): (N, H, W) at the image size.
    """

    def transform(self, results: dict) -> dict:
        """Add ``gt_masks``; boxes are rounded outwards and clipped to the
        image."""
        height, width = results['img'].shape[:2]
        boxes = get_box_tensor(results['gt_bboxes']).numpy().reshape(-1, 4)
        masks = np.zeros((len(boxes), height, width), dtype=np.uint8)
        x1y1 = np.clip(np.floor(boxes[:, :2]), 0, None).astype(int)
        x2y2 = np.ceil(boxes[:, 2:]).astype(int)
        for mask, (x1, y1), (x2, y2) in zip(masks, x1y1, x2y2):
            mask[y1:min(y2, height), x1:min(x2, width)] = 1
        results['gt_masks'] = BitmapMasks(masks, height, width)
        return results
