"""Data side of Mask DINO: transforms for mmdet pipelines."""
from .transforms import LargeScaleJitter, SemSegRandomCrop  # noqa: F401

__all__ = ['LargeScaleJitter', 'SemSegRandomCrop']
