"""Semantic segmentation metric with the pixel accuracy it names."""
from typing import List

import numpy as np
from mmdet.evaluation import SemSegMetric
from mmdet.registry import METRICS


@METRICS.register_module()
class MaskDINOSemSegMetric(SemSegMetric):
    """:class:`SemSegMetric` whose ``aAcc`` is the pixel accuracy.

    mmdet 3.3 computes ``aAcc`` per class and averages it, which gives the
    mean class accuracy (``mAcc``) a second time. Here ``aAcc`` is the
    fraction of labelled pixels predicted correctly, as in mmseg's
    ``IoUMetric``; every other figure is mmdet's.
    """

    def get_return_metrics(self, results: List[dict]) -> dict:
        """Per-class metrics of mmdet and the overall pixel accuracy.

        Args:
            results (list[dict]): Per-image ``area_intersect`` and
                ``area_label`` histograms, each (num_classes, ).

        Returns:
            dict[str, np.ndarray]: ``aAcc`` (a scalar array) and the
            per-class metrics.
        """
        metrics = super().get_return_metrics(results)
        correct = sum(r['area_intersect'] for r in results).sum()
        labelled = sum(r['area_label'] for r in results).sum()
        metrics['aAcc'] = np.asarray((correct / labelled).item())
        return metrics
