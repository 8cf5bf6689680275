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

Models (``--models``): ``maskdino`` (the tiny panoptic config: box AP,
mask AP, PQ, mIoU), ``mask2former`` and ``dino`` (MMDetection's own, in
``configs/benchmarks/``), and, not run by default,
``maskdino_instance`` (things only, DINO's like-for-like peer) and
``maskdino_detection`` (boxes only). ``--seeds S1 S2 ...`` trains each once
per seed (mean ± std in ``seeds.md``); ``--ablation [ROW ...]`` runs the
detection ablation instead (``ablation.md``); ``--jobs N`` runs N of those
at once. The benchmark is ``projects/mask_dino/benchmarks/learning.py``
(peers: ``peers.py``, ablation: ``ablation.py``); the script checks that
the peers keep Mask DINO's backbone, transformer size, batch, pipelines and
lr schedule. Figures and details: ``docs/learning_benchmark.md``.

Examples (from the repository root)::

    # the run of the README (58.6 min on an idle 2-core machine; Mask DINO
    # trains for 25.6 min of it)
    python tools/benchmarks/learn_synthetic.py --threads 2
    python tools/benchmarks/learn_synthetic.py --iters 20  # smoke run
    python tools/benchmarks/learn_synthetic.py --models maskdino dino \\
        maskdino_instance --iters 2000 --threads 2
    # the ablation of docs/learning_benchmark.md (25 min on 2 cores)
    python tools/benchmarks/learn_synthetic.py --ablation dino \\
        maskdino_instance optimiser anchors mask_costs mask_losses \\
        --iters 800 --seeds 0 1 2 --jobs 2
"""
import argparse
import os.path as osp
import shlex
import sys
from typing import Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # configs import projects.mask_dino

from projects.mask_dino.benchmarks.ablation import (  # noqa: E402
    ABLATION_ROWS, DEFAULT_ABLATION_SEEDS)
from projects.mask_dino.benchmarks.learning import (  # noqa: E402
    DEFAULT_ITERS, DEFAULT_MODELS, MODEL_SPECS, run_benchmark)


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
    parser.add_argument(
        '--seeds',
        type=int,
        nargs='+',
        help='training seeds (the data keep --seed): each model is trained '
        'once per seed and reported as mean ± std in seeds.md/.json '
        '(default: --seed alone, the single-run table; with --ablation: '
        f'{" ".join(map(str, DEFAULT_ABLATION_SEEDS))})')
    parser.add_argument(
        '--ablation',
        nargs='*',
        choices=list(ABLATION_ROWS),
        help='instead of --models, the detection ablation: the things-only '
        'Mask DINO with one difference to DINO switched at a time (these '
        'rows, default all: ' + ' '.join(ABLATION_ROWS) + '), written to '
        'ablation.md/.json')
    parser.add_argument(
        '--jobs',
        type=int,
        default=1,
        help='runs at once with --seeds/--ablation, each in its own process '
        'with --threads threads (default %(default)s)')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f'--jobs must be positive, got {args.jobs}')
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds lists a seed twice: {args.seeds}')
    if args.ablation is not None:
        args.ablation = args.ablation or list(ABLATION_ROWS)
        if len(set(args.ablation)) != len(args.ablation):
            parser.error(f'--ablation lists a row twice: {args.ablation}')
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
    return run_benchmark(
        args.models,
        args.iters,
        args.out_dir,
        args.data_root,
        seed=args.seed,
        seeds=args.seeds,
        ablation=args.ablation,
        jobs=args.jobs,
        num_train=args.num_train,
        num_val=args.num_val,
        threads=args.threads,
        command=command)


if __name__ == '__main__':
    main()
