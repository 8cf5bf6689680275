# Copyright (c) OpenMMLab. All rights reserved.
"""Benchmark Mask DINO next to MMDetection's Mask2Former R50 and DINO R50.

Runs the measurements of ``benchmark.py`` (stage times, FPS, peak memory,
parameters, FLOPs) for every model at every input size in one process,
timing the models round-robin (A B C A B C ...) after warm-up so that
machine load affects them alike, and prints the ratios this project /
peer (below 1 = this project is faster / smaller).

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
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402
from benchmark import (STAGE_TITLES, STAGES, TRAIN_STAGES,  # noqa: E402
                       ModelBench, gemm_gflops, machine_info,
                       run_interleaved)

OURS = ('maskdino_r50', 'configs/maskdino_r50_coco_instance.py')
PEERS = (
    ('mask2former_r50',
     'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'),
    ('dino_r50_4scale', 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'),
)


def parse_shape(text: str) -> Tuple[int, int]:
    """'800x1333' -> (800, 1333)."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--shapes: expected HxW such as 800x1333, got {text!r}')
    if min(h, w) < 32:
        raise argparse.ArgumentTypeError(f'--shapes: {text} is below 32')
    return h, w


def parse_model(text: str) -> Tuple[str, str]:
    """'name=config' -> (name, config)."""
    if '=' not in text:
        raise argparse.ArgumentTypeError(
            f'expected NAME=CONFIG, got {text!r}')
    name, config = text.split('=', 1)
    return name, config


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
    parser.add_argument('--out', help='write all results as JSON here')
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available')
    if args.amp and args.device != 'cuda':
        raise SystemExit('--amp needs --device cuda')
    if args.repeat < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit('--repeat and --batch-size must be >= 1, '
                         '--warmup >= 0')
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args


def _ratio(a, b, width: int) -> str:
    if not a or not b:
        return f"{'-':>{width}}"
    return f'{a / b:>{width}.2f}'


def compare(results: List[Dict],
            stages: Tuple[str, ...],
            clock: str = 'timing') -> str:
    """Side-by-side table of one input size; first row = this project.

    ``clock``: 'timing' (wall time) or 'cpu_timing' (CPU seconds of the
    process, robust to other load on the machine).
    """
    cols = list(stages) + ['total']
    head = f"{'model':<20}" + ''.join(f'{k[:13]:>14}' for k in cols) + \
        f"{'peak +MB':>10}{'params M':>10}{'GFLOPs':>9}"
    lines = [head]
    for res in results:
        row = f"{res['name']:<20}" + ''.join(
            f"{res[clock][k]['median']:>13.3f}s" for k in cols)
        flops = res.get('flops', {}).get('total')
        row += (f"{res['peak_memory_delta_mb']:>10.0f}"
                f"{res['params']['total'] / 1e6:>10.2f}" +
                (f'{flops / 1e9:>9.1f}' if flops else f"{'-':>9}"))
        lines.append(row)
    ours = results[0]
    for peer in results[1:]:
        row = f"{'ratio / ' + peer['name'][:12]:<20}"
        row += ''.join(
            _ratio(ours[clock][k]['median'], peer[clock][k]['median'], 14)
            for k in cols)
        row += _ratio(ours['peak_memory_delta_mb'],
                      peer['peak_memory_delta_mb'], 10)
        row += _ratio(ours['params']['total'], peer['params']['total'], 10)
        row += _ratio(
            ours.get('flops', {}).get('total'),
            peer.get('flops', {}).get('total'), 9)
        lines.append(row)
    return '\n'.join(lines)


def main() -> None:
    args = parse_args()
    stages = TRAIN_STAGES if args.train else STAGES
    models = [args.ours] + list(args.peers)
    gemm = gemm_gflops(args.device)
    report = dict(
        machine=machine_info(args.device),
        gemm_gflops=gemm,
        command=' '.join(sys.argv),
        shapes={})
    print(f"machine: {report['machine']['cpu']}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, "
          f'fp32 GEMM {gemm:.0f} GFLOP/s')
    for shape in args.shapes:
        benches = [
            ModelBench(
                name,
                config,
                shape,
                batch_size=args.batch_size,
                train=args.train,
                device=args.device,
                amp=args.amp,
                num_gt=args.num_gt) for name, config in models
        ]
        run_interleaved(benches, args.warmup, args.repeat)
        results = []
        for bench in benches:
            res = bench.results()
            if not (args.no_flops or args.train):
                res['flops'] = bench.flops()
            results.append(res)
        h, w = shape
        ph, pw = results[0]['input_shape']
        mode = 'training iteration' if args.train else 'inference'
        print(f'\n{mode}, batch {args.batch_size}, image {h}x{w} (padded '
              f'{ph}x{pw}), median of {args.repeat} interleaved runs; '
              'stages: ' + ', '.join(STAGE_TITLES[s] for s in stages))
        print(compare(results, stages))
        print('CPU seconds of the process (all threads), same runs:')
        print(compare(results, stages, 'cpu_timing'))
        report['shapes'][f'{h}x{w}'] = results
        del benches
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'results written to {args.out}')


if __name__ == '__main__':
    main()
