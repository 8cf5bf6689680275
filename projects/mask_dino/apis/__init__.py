"""Inference API: :class:`MaskDINOInferencer` (a ``DetInferencer``)."""
from .inferencer import MaskDINOInferencer

__all__ = ['MaskDINOInferencer']
