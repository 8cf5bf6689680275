"""Evaluate a Mask DINO checkpoint with the mmengine runner.

Same arguments as MMDetection's ``tools/test.py``::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out X.pkl]
        [--show] [--show-dir DIR] [--cfg-options k=v ...] [--tta]
        [--launcher pytorch]

``--cfg-options data_root=ROOT`` points the config at another copy of its
dataset (every dataloader and evaluator path under the config's
``data_root`` moves under ``ROOT``).

Multi-GPU: ``tools/dist_test.sh CONFIG CHECKPOINT GPUS``. The repository
root is put on ``sys.path``, so ``projects.mask_dino`` imports without
``pip install -e .``; the metrics of the config's ``test_evaluator`` are
printed at the end (and written to the work directory).
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmdet.engine.hooks.utils import trigger_visualization_hook  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from projects.mask_dino.engine import enable_tta, load_tool_config  # noqa
from projects.mask_dino.engine.tool_options import (  # noqa: E402
    build_tool_runner, parse_launcher_args)
from projects.mask_dino.evaluation import DumpMaskDINOResults  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a Mask DINO model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation '
        '(compact: RLE masks, integer maps; see --out-seg-logits)')
    parser.add_argument(
        '--out-seg-logits',
        action='store_true',
        help='also dump the per-class semantic score maps (float32, C x H x '
        'W per image: hundreds of MB per COCO image)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (inside '
        'work_dir/timestamp/)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs; lists as '
        'key="[a,b]"; no white space')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation with the `tta_model` / `tta_pipeline` '
        'of the config')
    return parse_launcher_args(parser, argv)


def build_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line arguments."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)

    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        cfg = enable_tta(cfg)
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_cache_size_limit_of_dynamo()
    runner = build_tool_runner(build_cfg(args))
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        runner.test_evaluator.metrics.append(
            DumpMaskDINOResults(
                out_file_path=args.out,
                keep_seg_logits=args.out_seg_logits))

    runner.test()


if __name__ == '__main__':
    main()
