"""Mask DINO for MMDetection 3.x.

Importing this package registers every module of the project into
MMDetection's registries (``MODELS``, ``TASK_UTILS``) and installs the
checkpoint-loading compatibility layer (see :mod:`.utils.compat`).
"""
from .utils import compat  # noqa: F401  (must run before any checkpoint I/O)
from . import detectors, heads, layers, losses, task_modules  # noqa: F401,E401
from . import engine  # noqa: F401  (log processor, hooks, AMP wrapper)
from . import datasets  # noqa: F401  (data transforms)
from . import evaluation  # noqa: F401  (metrics, compact result dump)
from . import visualization  # noqa: F401  (empty-safe visualizer)
from . import test_time_augs  # noqa: F401  (instance TTA merging masks)

__version__ = '0.1.0'
