from .giou_loss import DETRGIoULoss
from .maskdino_criterion import MaskDINOCriterion

__all__ = ['DETRGIoULoss', 'MaskDINOCriterion']
