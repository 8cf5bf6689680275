"""ONNX export and ONNX Runtime inference of Mask DINO (docs/deployment.md).

Not imported by :mod:`projects.mask_dino`: ``onnx`` and ``onnxruntime``
are an optional dependency group (``requirements/deploy.txt``), imported
only where they are used.
"""
from .exporter import (DEFAULT_OPSET, SUPPORTED_OPSETS, build_detector,
                       export_onnx, load_config, padded_shape, pytorch2onnx)
from .runtime import ORTMaskDINO, create_session, evaluate_onnx
from .wrapper import MaskDINOExportWrapper, export_mode

__all__ = [
    'DEFAULT_OPSET', 'SUPPORTED_OPSETS', 'build_detector', 'export_onnx',
    'load_config', 'padded_shape', 'pytorch2onnx', 'ORTMaskDINO',
    'create_session', 'evaluate_onnx', 'MaskDINOExportWrapper', 'export_mode'
]
