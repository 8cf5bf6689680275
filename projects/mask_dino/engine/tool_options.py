"""What the command-line switches of ``tools/train.py`` do to a loaded
config, and the runner that ``tools/train.py`` and ``tools/test.py`` build
from it. Importing this module imports :mod:`projects.mask_dino.runtime`
(safe checkpoint loading, the bf16 wrapper) before any config is built, as
the tools need; the inferencer of :mod:`projects.mask_dino.apis` imports
only :mod:`.tool_config`, hence this module is not re-exported by the
package's ``__init__``."""
import argparse
import logging
import os
from typing import Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..runtime import setup_cpu_distributed

# fp16-only options of mmengine's AmpOptimWrapper, which the fp32 and bf16
# wrappers do not take
_AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def parse_launcher_args(parser: argparse.ArgumentParser,
                        argv: Optional[Sequence[str]] = None
                        ) -> argparse.Namespace:
    """Add ``--launcher`` and ``--local-rank`` to ``parser``, parse
    ``argv`` and export the local rank as ``LOCAL_RANK`` for mmengine
    (torchrun sets it itself; ``torch.distributed.launch`` passes
    ``--local-rank``, or ``--local_rank`` before torch 2.0)."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _switch_optim_wrapper(optim_wrapper: dict, wrapper_type: str) -> None:
    """Make ``optim_wrapper`` a ``wrapper_type`` without fp16 options."""
    optim_wrapper.type = wrapper_type
    for key in _AMP_ONLY_KEYS:
        optim_wrapper.pop(key, None)


def enable_amp(cfg: Config) -> None:
    """``--amp``: mixed precision for this device (fp16 with dynamic loss
    scaling on CUDA, bf16 autocast without loss scaling on a CPU).

    Raises:
        ValueError: If the config has no ``optim_wrapper``.
    """
    if cfg.get('optim_wrapper') is None:
        raise ValueError(f'{cfg.filename}: --amp needs an `optim_wrapper` '
                         'in the config.')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
        return
    print_log(
        'CUDA is not available: --amp trains with bfloat16 autocast on '
        'the CPU (BF16AmpOptimWrapper, no loss scaling).',
        logger='current')
    _switch_optim_wrapper(cfg.optim_wrapper, 'BF16AmpOptimWrapper')


def cpu_compatible_optim_wrapper(cfg: Config) -> None:
    """Train a config that asks for fp16 ``AmpOptimWrapper`` (the COCO
    configs, as the official recipe) in fp32 on a machine without CUDA,
    where mmengine's wrapper cannot start; ``--amp`` selects bf16 there."""
    optim_wrapper = cfg.get('optim_wrapper')
    if (optim_wrapper is None or torch.cuda.is_available()
            or optim_wrapper.get('type') != 'AmpOptimWrapper'):
        return
    print_log(
        f'{cfg.filename}: AmpOptimWrapper (fp16) needs CUDA; training in '
        'fp32 with OptimWrapper instead (pass --amp for bfloat16 autocast '
        'on the CPU).',
        logger='current',
        level=logging.WARNING)
    _switch_optim_wrapper(optim_wrapper, 'OptimWrapper')


def enable_auto_scale_lr(cfg: Config) -> None:
    """``--auto-scale-lr``: the runner scales the lr by the total batch.

    Raises:
        RuntimeError: If the config has no ``auto_scale_lr.base_batch_size``.
    """
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise RuntimeError(
            f'{cfg.filename}: --auto-scale-lr needs `auto_scale_lr = '
            'dict(enable=False, base_batch_size=...)` in the config.')
    cfg.auto_scale_lr.enable = True


def apply_train_options(cfg: Config,
                        amp: bool = False,
                        auto_scale_lr: bool = False,
                        resume: Optional[str] = None) -> Config:
    """Apply ``tools/train.py``'s ``--amp``, ``--auto-scale-lr`` and
    ``--resume`` (a checkpoint path, or ``'auto'``: the latest one in
    ``work_dir``) to ``cfg`` in place.

    Returns:
        Config: ``cfg``.
    """
    if amp:
        enable_amp(cfg)
    else:
        cpu_compatible_optim_wrapper(cfg)
    if auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if resume is not None:
        cfg.resume = True
        cfg.load_from = None if resume == 'auto' else resume
    return cfg


def build_tool_runner(cfg: Config) -> Runner:
    """The runner of ``cfg`` (its ``runner_type`` if any), with the gloo
    process group set up first when ``cfg.launcher`` asks for distributed
    running on a machine without CUDA."""
    setup_cpu_distributed(cfg, cfg.launcher)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
