from .maskdino_criterion import MaskDINOCriterion

__all__ = ['MaskDINOCriterion']
