"""Evaluation: mmdet metrics fixed for what Mask DINO predicts, and a
compact result dump. Importing this package registers them in
``mmdet.registry.METRICS``."""
from .metrics import (DumpMaskDINOResults, MaskDINOCocoPanopticMetric,
                      MaskDINOSemSegMetric)

__all__ = [
    'DumpMaskDINOResults', 'MaskDINOCocoPanopticMetric',
    'MaskDINOSemSegMetric'
]
