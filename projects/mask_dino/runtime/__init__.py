"""Training runtime of Mask DINO, kept apart from the model package.

Importing this module (the configs do it through ``custom_imports`` in
``configs/_base_/default_runtime.py``) installs the safe checkpoint loader
(:mod:`.compat`) and registers into the mmengine/mmdet registries:

- ``MaskDINORunner`` (``runner_type``): skips bad training samples
  (``skip_bad_samples``) and starts CPU distributed training, whichever
  tool builds it;
- hooks: ``SafeCheckpointHook``, ``IterationSeedHook``,
  ``NonFiniteLossHook``, ``SampleGuardHook``;
- ``GroupedLossLogProcessor`` and ``BF16AmpOptimWrapper``;
- the ``SkipBadSamplesDataset`` wrapper.
"""
from . import compat  # noqa: F401  (must run before any checkpoint I/O)
from .dist_utils import setup_cpu_distributed
from .iter_seed_hook import IterationSeedHook, iteration_seed
from .log_processor import GroupedLossLogProcessor, group_loss_terms
from .nonfinite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .optim_wrapper import BF16AmpOptimWrapper
from .robust_dataset import SkipBadSamplesDataset, wrap_train_dataset
from .runner import MaskDINORunner
from .safe_checkpoint_hook import SafeCheckpointHook
from .sample_guard_hook import DataLoaderWorkerError, SampleGuardHook

__all__ = [
    'BF16AmpOptimWrapper', 'DataLoaderWorkerError', 'GroupedLossLogProcessor',
    'IterationSeedHook', 'MaskDINORunner', 'NonFiniteLossError',
    'NonFiniteLossHook', 'SafeCheckpointHook', 'SampleGuardHook',
    'SkipBadSamplesDataset', 'group_loss_terms', 'iteration_seed',
    'setup_cpu_distributed', 'wrap_train_dataset'
]
