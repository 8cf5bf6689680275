"""Learning benchmark: the tiny Mask DINO next to MMDetection's own
Mask2Former and DINO, trained from scratch on the synthetic shapes dataset
on the CPU, same backbone, image size, batch, iterations and lr schedule.

Stages (each prints what it does and how long it took):

1. generate the synthetic dataset under ``data/synthetic/`` (200 training
   + 50 held-out images of 128x128), or reuse it;
2. for every model: train for ``--iters`` iterations (the configs' lr
   schedule rescaled to that length: warm-up, x0.1 for the last 20%) with
   the mmengine ``Runner``, then evaluate on the held-out split;
3. print the side-by-side table (model, parameters, iterations, training
   wall and CPU time, box AP, mask AP, PQ, mIoU) and write ``results.md`` and
   ``results.json`` to ``outputs/benchmarks/learn_synthetic/`` (rewritten
   after every model, so an interrupted run keeps what it measured).

Models (``--models``, in this order by default):

- ``maskdino``: ``configs/maskdino_tiny_synthetic_panoptic.py``, one model
  for box AP, mask AP (things), PQ and mIoU;
- ``mask2former``: ``configs/benchmarks/mask2former_tiny_synthetic_panoptic
  .py``, MMDetection's Mask2Former (panoptic; instance output for AP, no
  boxes of its own: box AP is that of its mask boxes), plus Mask2Former's
  semantic inference for mIoU (``SemanticMask2Former``; MMDetection has
  none);
- ``dino``: ``configs/benchmarks/dino_tiny_synthetic.py``, MMDetection's
  DINO, box AP only (``AnyWidthDINO``: MMDetection's DINO decoder only
  runs at 256-d);
- ``maskdino_instance`` (not run by default):
  ``configs/maskdino_tiny_synthetic_instance.py``, the things-only Mask DINO
  (the like-for-like peer of DINO).

The benchmark is ``projects/mask_dino/benchmarks/learning.py``; the
adaptations of the peers (``SemanticMask2Former``, ``AnyWidthDINO``) are
``projects/mask_dino/benchmarks/peers.py``.

Every model is the same size class: ResNet-18 at 1/8 width with GN from
scratch, 32-d transformer with 1 encoder and 3 decoder layers, 20 queries;
the script checks that the peers keep Mask DINO's backbone, transformer
size, batch, pipelines (image size) and lr schedule and reports any
difference.

Examples (from the repository root)::

    # the run of the README (58.6 min on an idle 2-core machine; Mask DINO
    # trains for 25.6 min of it)
    python tools/benchmarks/learn_synthetic.py --threads 2
    python tools/benchmarks/learn_synthetic.py --iters 20  # smoke run
    python tools/benchmarks/learn_synthetic.py --models maskdino dino \\
        maskdino_instance --iters 2000 --threads 2
"""
import argparse
import os.path as osp
import shlex
import sys
from typing import Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # configs import projects.mask_dino

from projects.mask_dino.benchmarks.learning import (  # noqa: E402
    DEFAULT_ITERS, DEFAULT_MODELS, MODEL_SPECS, run_learning_benchmark)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        '--models',
        nargs='+',
        default=list(DEFAULT_MODELS),
        choices=list(MODEL_SPECS),
        help=f'models to train, in this order (default: '
        f'{" ".join(DEFAULT_MODELS)})')
    parser.add_argument(
        '--iters',
        type=int,
        default=DEFAULT_ITERS,
        help='training iterations per model (default %(default)s: about '
        '30 min for Mask DINO with one thread on an idle machine)')
    parser.add_argument(
        '--out-dir',
        default=osp.join(REPO, 'outputs', 'benchmarks', 'learn_synthetic'))
    parser.add_argument(
        '--data-root',
        default=osp.join(REPO, 'data', 'synthetic'),
        help='synthetic dataset root; generated there unless it holds one '
        'made with the same settings')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (default %(default)s, for which the default '
        '--iters is sized; 2 may be faster on an idle 2-core machine)')
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f'--iters must be positive, got {args.iters}')
    if args.threads < 1:
        parser.error(f'--threads must be positive, got {args.threads}')
    if len(set(args.models)) != len(args.models):
        parser.error(f'--models lists a model twice: {args.models}')
    args.data_root = osp.abspath(args.data_root)
    args.out_dir = osp.abspath(args.out_dir)
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    command = 'python tools/benchmarks/learn_synthetic.py' + ''.join(
        ' ' + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return run_learning_benchmark(
        args.models,
        args.iters,
        args.out_dir,
        args.data_root,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        threads=args.threads,
        command=command)


if __name__ == '__main__':
    main()
