"""``DetInferencer`` for Mask DINO: semantic results saved too."""
import os.path as osp
from typing import Dict, Optional

import cv2
import mmengine
import numpy as np
import torch
from mmdet.apis import DetInferencer
from mmdet.structures import DetDataSample
from mmdet.visualization.palette import get_palette
from mmengine.config import ConfigDict


def save_label_png(labels: np.ndarray, path: str) -> None:
    """Write a (H, W) class-index map as a PNG: uint8, or uint16 when there
    are more than 255 labels (MMSegmentation's convention)."""
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    if not cv2.imwrite(path, labels.astype(dtype)):
        raise OSError(f'cannot write {path}')


class MaskDINOInferencer(DetInferencer):
    """:class:`DetInferencer` that writes every task of Mask DINO.

    Differences from ``DetInferencer`` (same arguments and call):

    - ``no_save_pred=False`` also saves the semantic map of semantic and
      panoptic models: ``preds/<name>_sem_seg.png`` (class index per pixel)
      and its path as ``sem_seg_path`` in ``preds/<name>.json``
      (``DetInferencer`` writes ``{}`` for a semantic model);
    - ``model.dataset_meta['palette']`` is a list of one RGB tuple per
      class, which the semantic legend of ``tools/demo/image_demo.py``
      reads.

    Class names come from the checkpoint's ``meta['dataset_meta']``, or,
    for a checkpoint without it, from the config's test dataset (see
    :class:`~projects.mask_dino.detectors.MaskDINO`).
    """

    def _load_weights_to_model(self, model: torch.nn.Module,
                               checkpoint: Optional[dict],
                               cfg: ConfigDict) -> None:
        """Load weights and meta as ``DetInferencer``; palette as a list."""
        super()._load_weights_to_model(model, checkpoint, cfg)
        meta = model.dataset_meta
        meta['palette'] = [
            tuple(int(v) for v in color)
            for color in get_palette(meta['palette'], len(meta['classes']))
        ]

    def pred2dict(self,
                  data_sample: DetDataSample,
                  pred_out_dir: str = '') -> Dict:
        """``DetInferencer.pred2dict`` plus the semantic map.

        Args:
            data_sample (DetDataSample): Predictions of one image.
            pred_out_dir (str): Folder of the ``preds/`` files; '' saves
                nothing and returns the semantic map as ``sem_seg`` (H, W).

        Returns:
            dict: The json-serialisable result (arrays when not saved).
        """
        result = super().pred2dict(data_sample, pred_out_dir)
        if 'pred_sem_seg' not in data_sample:
            return result
        labels = data_sample.pred_sem_seg.sem_seg[0].cpu().numpy()
        if not pred_out_dir:
            result['sem_seg'] = labels
            return result
        # the names DetInferencer gave this image's files (its counter has
        # already moved on for images without a path)
        stem = osp.splitext(osp.basename(data_sample.img_path))[0] \
            if 'img_path' in data_sample else str(self.num_predicted_imgs - 1)
        png = osp.join(pred_out_dir, 'preds', f'{stem}_sem_seg.png')
        save_label_png(labels, png)
        result['sem_seg_path'] = png
        # rewrite the json DetInferencer saved, now with the map's path
        mmengine.dump(result, osp.join(pred_out_dir, 'preds', stem + '.json'))
        return result
