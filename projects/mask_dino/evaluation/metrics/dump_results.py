"""Compact pickle dump of Mask DINO predictions (``tools/test.py --out``)."""
from typing import Sequence

import torch
from mmdet.registry import METRICS
from mmdet.structures.mask import encode_mask_results
from mmengine.evaluator import DumpResults
from mmengine.evaluator.metric import _to_cpu

# Ground truth carried by the samples that offline evaluation does not need
# (``gt_sem_seg`` stays: the semantic metrics read it).
_GT_KEYS = ('gt_instances', 'ignored_instances', 'gt_panoptic_seg')


def _smallest_int(labels: torch.Tensor) -> torch.Tensor:
    """``labels`` (non-negative) in the smallest integer dtype that holds
    them: uint8, int16 or int32."""
    top = int(labels.max()) if labels.numel() else 0
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if top <= torch.iinfo(dtype).max:
            return labels.to(dtype)
    return labels


@METRICS.register_module()
class DumpMaskDINOResults(DumpResults):
    """Dump predictions to a pickle file, compactly, for offline evaluation.

    Written per image, in mmdet's ``DumpDetResults`` layout (so mmdet's
    metrics evaluate the file offline): ``pred_instances`` with RLE masks;
    ``pred_panoptic_seg.sem_seg`` (``label + id * 1000``),
    ``pred_sem_seg.sem_seg`` and ``gt_sem_seg.sem_seg`` in the smallest
    integer dtype that holds them (int32, uint8 and uint8 for COCO
    panoptic). The float per-class score maps (``seg_logits``, C x H x W at the original size:
    ~160 MB for a 640x480 image and 133 classes) are left out unless
    ``keep_seg_logits`` is set; mmdet's ``DumpDetResults`` keeps them and
    the int64 maps.

    Args:
        out_file_path (str): A ``.pkl`` / ``.pickle`` path.
        keep_seg_logits (bool): Also dump the score maps. Defaults to
            False.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
    """

    def __init__(self,
                 out_file_path: str,
                 keep_seg_logits: bool = False,
                 collect_device: str = 'cpu') -> None:
        super().__init__(out_file_path, collect_device=collect_device)
        self.keep_seg_logits = keep_seg_logits

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Keep a compact copy of each sample's predictions."""
        self.results.extend(self._compact(s) for s in _to_cpu(data_samples))

    def _compact(self, sample: dict) -> dict:
        """One sample without ground-truth instances, with RLE masks and
        small integer maps (new dicts: the sample itself is untouched)."""
        sample = {k: v for k, v in sample.items() if k not in _GT_KEYS}
        if not self.keep_seg_logits:
            sample.pop('seg_logits', None)
        if 'masks' in sample.get('pred_instances', {}):
            pred = dict(sample['pred_instances'])
            pred['masks'] = encode_mask_results(pred['masks'].numpy())
            sample['pred_instances'] = pred
        for key in ('pred_panoptic_seg', 'pred_sem_seg', 'gt_sem_seg'):
            if 'sem_seg' in sample.get(key, {}):
                sample[key] = {
                    **sample[key], 'sem_seg':
                    _smallest_int(sample[key]['sem_seg'])
                }
        return sample
