"""Training-engine parts: log processor, hooks, optimizer wrapper and
distributed helpers. Importing this package registers them in mmdet's
registries."""
from .dist_utils import setup_cpu_distributed
from .iter_seed_hook import IterationSeedHook, iteration_seed
from .log_processor import GroupedLossLogProcessor, group_loss_terms
from .optim_wrapper import BF16AmpOptimWrapper
from .tool_config import load_tool_config, merge_cfg_options
from . import (nonfinite_loss_hook, safe_checkpoint_hook,  # noqa: F401
               sample_guard_hook)  # robustness hooks (issue 9)

__all__ = [
    'BF16AmpOptimWrapper', 'GroupedLossLogProcessor', 'IterationSeedHook',
    'group_loss_terms', 'iteration_seed', 'load_tool_config',
    'merge_cfg_options',
    'setup_cpu_distributed'
]
