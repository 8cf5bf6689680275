"""Checkpoint converters.

:mod:`.maskdino2mmdet` converts the official Mask DINO (detectron2)
checkpoints to this project (``tools/model_converters/maskdino2mmdet.py``
is its command line). Not imported by :mod:`projects.mask_dino`; import it
where it is used.
"""
from .maskdino2mmdet import (ConversionError, ConversionReport, build_target,
                             convert_checkpoint, convert_state_dict,
                             load_official_checkpoint)

__all__ = [
    'ConversionError', 'ConversionReport', 'build_target',
    'convert_checkpoint', 'convert_state_dict', 'load_official_checkpoint'
]
