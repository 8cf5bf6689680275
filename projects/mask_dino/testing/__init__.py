"""Test data: the seeded synthetic segmentation dataset.

:mod:`.synthetic_dataset` writes small COCO instance / panoptic, ADE20K and
Cityscapes datasets of textured shapes (``tools/misc/make_synthetic_dataset.py``
is its command line). Not imported by :mod:`projects.mask_dino`; import it
where it is used.
"""
from .synthetic_dataset import (ALL_CLASSES, FORMATS, MARKER, REAL_CLASSES,
                                STUFF_CLASSES, THING_CLASSES, DatasetError,
                                category_id, make_dataset, summary,
                                validate_dataset)

__all__ = [
    'ALL_CLASSES', 'FORMATS', 'MARKER', 'REAL_CLASSES', 'STUFF_CLASSES',
    'THING_CLASSES', 'DatasetError', 'category_id', 'make_dataset', 'summary',
    'validate_dataset'
]
