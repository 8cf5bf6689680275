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
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from projects.mask_dino.engine import load_tool_config  # noqa: E402
from projects.mask_dino.engine.tool_options import (  # noqa: E402
    apply_train_options, build_tool_runner, parse_launcher_args)


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
    return parse_launcher_args(parser, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # Fewer recompilations when torch.compile is enabled in the config.
    setup_cache_size_limit_of_dynamo()
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    apply_train_options(cfg, args.amp, args.auto_scale_lr, args.resume)
    build_tool_runner(cfg).train()


if __name__ == '__main__':
    main()
