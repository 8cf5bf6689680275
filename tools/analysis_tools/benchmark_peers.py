"""Benchmark Mask DINO next to MMDetection's Mask2Former R50 and DINO R50.

Runs the measurements of ``benchmark.py`` (stage times, FPS, peak memory,
parameters, FLOPs, operator and host-sync counts) for every model at every
input size in one process, timing the models round-robin (A B C A B C ...)
after warm-up so that machine load affects them alike, and prints the
ratios this project / peer (below 1 = this project is faster / smaller);
the code is in ``projects/mask_dino/analysis/peers.py``.

Examples (from the repository root)::

    # inference, CPU, 2 threads, 512x512 and the COCO test size
    python tools/analysis_tools/benchmark_peers.py --threads 2 \
        --out work_dirs/bench/peers.json
    # one training iteration at 512x512, batch 2
    python tools/analysis_tools/benchmark_peers.py --train --shapes 512x512 \
        --batch-size 2 --threads 2

Default models: ``configs/maskdino_r50_coco_instance.py`` against
``mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py`` (instance) and
``mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py``; all with random weights.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.mask_dino.analysis.peers import (OURS, PEERS,  # noqa: E402
                                               parse_model, parse_shape,
                                               run_peers)
from projects.mask_dino.engine.device_args import apply_device_args  # noqa


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Mask DINO vs. MMDetection Mask2Former and DINO')
    parser.add_argument(
        '--ours', type=parse_model, default=OURS, metavar='NAME=CONFIG')
    parser.add_argument(
        '--peers',
        type=parse_model,
        nargs='+',
        default=list(PEERS),
        metavar='NAME=CONFIG')
    parser.add_argument(
        '--shapes',
        type=parse_shape,
        nargs='+',
        default=[(512, 512), (800, 1333)],
        metavar='HxW')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int)
    parser.add_argument('--train', action='store_true')
    parser.add_argument('--num-gt', type=int, default=10)
    parser.add_argument('--amp', action='store_true')
    parser.add_argument('--no-flops', action='store_true')
    parser.add_argument(
        '--no-counts',
        action='store_true',
        help='skip the run that counts operators and host syncs')
    parser.add_argument('--out', help='write all results as JSON here')
    args = parser.parse_args()
    apply_device_args(args)
    if args.repeat < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit('--repeat and --batch-size must be >= 1, '
                         '--warmup >= 0')
    return args


def main() -> None:
    args = parse_args()
    run_peers(
        args.ours,
        args.peers,
        args.shapes,
        batch_size=args.batch_size,
        repeat=args.repeat,
        warmup=args.warmup,
        device=args.device,
        train=args.train,
        num_gt=args.num_gt,
        amp=args.amp,
        no_flops=args.no_flops,
        counts=not args.no_counts,
        out=args.out,
        command=' '.join(sys.argv))


if __name__ == '__main__':
    main()
