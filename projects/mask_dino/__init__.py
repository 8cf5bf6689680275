"""Mask DINO for MMDetection 3.x.

Importing this package registers the model and data parts of the project
into MMDetection's registries: detector, heads, layers, losses, assigners,
data transforms, evaluation metrics, the visualizer and the instance
test-time augmentation model. It installs nothing into the training
machinery: the runtime parts (safe checkpoint loading, hooks, the bf16
optimizer wrapper, CPU distributed set-up, bad-sample skipping) live in
:mod:`projects.mask_dino.runtime`, which the configs import explicitly
(``configs/_base_/default_runtime.py``).
"""
from . import detectors, heads, layers, losses, task_modules  # noqa: F401,E401
from . import datasets  # noqa: F401  (data transforms)
from . import evaluation  # noqa: F401  (metrics, compact result dump)
from . import visualization  # noqa: F401  (empty-safe visualizer)
from . import test_time_augs  # noqa: F401  (instance TTA merging masks)

__version__ = '0.1.0'
