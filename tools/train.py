"""Train a Mask DINO model with the mmengine runner.

Same arguments as MMDetection's ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher pytorch]

Multi-GPU / multi-node: ``tools/dist_train.sh CONFIG GPUS`` (torchrun) or
``tools/slurm_train.sh``. The repository root is put on ``sys.path``, so
``projects.mask_dino`` (loaded by the configs' ``custom_imports``) imports
without ``pip install -e .``.

``--amp``: fp16 autocast with dynamic loss scaling (mmengine's
``AmpOptimWrapper``) when CUDA is available; bf16 autocast without loss
scaling (``BF16AmpOptimWrapper``) on a CPU-only machine. The deformable
encoder/decoder, the matching and the losses stay in fp32 in both cases.
Configs that enable fp16 AMP themselves (the COCO ones) train in fp32 on a
CPU-only machine unless ``--amp`` is given.

Without CUDA, ``--launcher pytorch`` trains with the gloo backend (DDP on
CPU), e.g. ``tools/dist_train.sh CONFIG 2`` on a laptop.

Useful ``--cfg-options``:

- another copy of the dataset: ``data_root=ROOT`` (every dataloader and
  evaluator path under the config's ``data_root`` moves under ``ROOT``);
- less memory (activation checkpointing, recomputed in backward)::

    model.panoptic_head.pixel_decoder.with_cp=True
    model.panoptic_head.decoder.with_cp=True model.backbone.with_cp=True

- TensorBoard: ``visualizer.vis_backends.0.type=TensorboardVisBackend``;
- exact resumption: ``randomness.seed=0 randomness.deterministic=True``
  (the ``IterationSeedHook`` of the default runtime seeds every iteration,
  so ``--resume`` after a crash ends with the weights of an unbroken run);
- bad training samples: ``skip_bad_samples.strict=True`` raises at the
  first one, ``skip_bad_samples=None`` loads without checks (the config's
  ``MaskDINORunner`` applies these, so MMDetection's own ``tools/train.py``
  and ``mim train`` behave the same).
"""
import argparse
import logging
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from projects.mask_dino.engine import load_tool_config  # noqa: E402
from projects.mask_dino.runtime import setup_cpu_distributed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a Mask DINO model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic mixed precision training (fp16 on CUDA, '
        'bf16 on CPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size divided by '
        '`auto_scale_lr.base_batch_size` of the config')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or without a value from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'train_cfg.max_iters=1000 or "model.backbone.depth=101"; lists as '
        'key="[a,b]"; no white space')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to mixed precision for this device."""
    if cfg.get('optim_wrapper') is None:
        raise ValueError(f'{cfg.filename}: --amp needs an `optim_wrapper` '
                         'in the config.')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    else:
        print_log(
            'CUDA is not available: --amp trains with bfloat16 autocast on '
            'the CPU (BF16AmpOptimWrapper, no loss scaling).',
            logger='current')
        cfg.optim_wrapper.type = 'BF16AmpOptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            cfg.optim_wrapper.pop(key, None)


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
    optim_wrapper.type = 'OptimWrapper'
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        optim_wrapper.pop(key, None)


def enable_auto_scale_lr(cfg: Config) -> None:
    """Turn on ``auto_scale_lr`` (the runner scales the lr)."""
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
        raise RuntimeError(
            f'{cfg.filename}: --auto-scale-lr needs `auto_scale_lr = '
            'dict(enable=False, base_batch_size=...)` in the config.')
    cfg.auto_scale_lr.enable = True


def build_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line arguments."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)

    if args.amp:
        enable_amp(cfg)
    else:
        cpu_compatible_optim_wrapper(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)

    # --resume: a checkpoint path, or 'auto' = latest in work_dir
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    # Fewer recompilations when torch.compile is enabled in the config.
    setup_cache_size_limit_of_dynamo()
    cfg = build_cfg(args)
    setup_cpu_distributed(cfg, args.launcher)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
