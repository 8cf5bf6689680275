"""Data side of Mask DINO: transforms for mmdet pipelines."""
from .transforms import SemSegRandomCrop  # noqa: F401

__all__ = ['SemSegRandomCrop']
