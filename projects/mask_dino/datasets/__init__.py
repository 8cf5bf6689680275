"""Data side of Mask DINO: transforms for mmdet pipelines."""
from .transforms import SemSegRandomCrop  # noqa: F401
from .robust import SkipBadSamplesDataset  # noqa: F401  (robustness)

__all__ = ['SemSegRandomCrop']
