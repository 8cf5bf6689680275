"""COCO panoptic metric that does not write into the predictions."""
from typing import Sequence

from mmdet.evaluation import CocoPanopticMetric
from mmdet.registry import METRICS


def _own_panoptic_map(sample: dict) -> dict:
    """``sample`` with a private copy of its predicted panoptic map (a
    shallow copy otherwise)."""
    pan = sample.get('pred_panoptic_seg')
    if pan is None or 'sem_seg' not in pan:
        return sample
    return {
        **sample, 'pred_panoptic_seg': {
            **pan, 'sem_seg': pan['sem_seg'].clone()
        }
    }


@METRICS.register_module()
class MaskDINOCocoPanopticMetric(CocoPanopticMetric):
    """:class:`CocoPanopticMetric` that leaves the predictions untouched.

    mmdet's ``process`` marks void pixels with ``VOID`` (0) in
    ``pred_panoptic_seg.sem_seg.cpu().numpy()``, which is the model's own
    tensor on a CPU. The evaluator runs before the result dump
    (``tools/test.py --out``) and the visualization hook (``--show-dir``),
    so both then saw void pixels as class 0. This metric reads a copy of
    each panoptic map; the figures are mmdet's.
    """

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Evaluate copies of the panoptic maps (see the class doc)."""
        super().process(data_batch,
                        [_own_panoptic_map(s) for s in data_samples])
