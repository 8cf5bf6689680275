from .coco_panoptic_metric import MaskDINOCocoPanopticMetric
from .dump_results import DumpMaskDINOResults
from .semseg_metric import MaskDINOSemSegMetric

__all__ = [
    'DumpMaskDINOResults', 'MaskDINOCocoPanopticMetric',
    'MaskDINOSemSegMetric'
]
