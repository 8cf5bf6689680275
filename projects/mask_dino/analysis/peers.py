"""Mask DINO next to MMDetection's Mask2Former R50 and DINO R50.

Runs the measurements of :mod:`.benchmark` (stage times, FPS, peak memory,
parameters, FLOPs, operator and host-sync counts) for every model at every
input size in one process, timing the models round-robin (A B C A B C ...)
after warm-up so that machine load affects them alike, and prints the
ratios this project / peer (below 1 = this project is faster / smaller).
Front end: ``tools/analysis_tools/benchmark_peers.py``.
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .benchmark import (STAGE_TITLES, STAGES, TRAIN_STAGES, ModelBench,
                        gemm_gflops, machine_info, run_interleaved)

OURS = ('maskdino_r50', 'configs/maskdino_r50_coco_instance.py')
PEERS = (
    ('mask2former_r50',
     'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'),
    ('dino_r50_4scale', 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'),
)


_PHASE_COLUMNS = dict(
    forward_loss='fwd+loss', backward='backward', predict='predict',
    total='total')


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


def compare_counts(results: List[Dict]) -> str:
    """Operators and host syncs per phase of every model (``counts`` of
    :meth:`ModelBench.count_ops`), first row = this project, then the
    ratios this project / peer."""
    phases = list(results[0]['counts'])
    cols = [(phase, key) for key in ('ops', 'syncs') for phase in phases]
    lines = [
        f"{'model':<20}" +
        ''.join(f'{_PHASE_COLUMNS[p] + " " + k:>16}' for p, k in cols)
    ]
    for res in results:
        lines.append(f"{res['name']:<20}" + ''.join(
            f"{res['counts'][p][k]:>16}" for p, k in cols))
    ours = results[0]['counts']
    for peer in results[1:]:
        lines.append(f"{'ratio / ' + peer['name'][:12]:<20}" + ''.join(
            _ratio(ours[p][k], peer['counts'][p][k], 16) for p, k in cols))
    return '\n'.join(lines)


def run_peers(ours: Tuple[str, str] = OURS,
              peers: Sequence[Tuple[str, str]] = PEERS,
              shapes: Sequence[Tuple[int, int]] = ((512, 512), (800, 1333)),
              batch_size: int = 1,
              repeat: int = 3,
              warmup: int = 1,
              device: str = 'cpu',
              train: bool = False,
              num_gt: int = 10,
              amp: bool = False,
              no_flops: bool = False,
              counts: bool = True,
              out: Optional[str] = None,
              command: str = '') -> Dict:
    """Benchmark this project's model and its peers at every shape and
    print the side-by-side tables (``benchmark_peers.py``).

    Args:
        ours (tuple[str, str]): (name, config) of this project's model,
            the first row of every table.
        peers (Sequence[tuple[str, str]]): (name, config) of the peers.
        shapes (Sequence[tuple[int, int]]): Image sizes (H, W).
        batch_size (int): Images per batch.
        repeat (int): Timed runs of every model (interleaved).
        warmup (int): Untimed runs of every model first.
        device (str): 'cpu' or 'cuda'.
        train (bool): Time training iterations instead of inference.
        num_gt (int): Instances per image for training.
        amp (bool): fp16 autocast (CUDA).
        no_flops (bool): Skip the FLOP count (one more run per model).
        counts (bool): Count operators and host syncs of every model in
            one more run each (:meth:`ModelBench.count_ops`; the sync
            sites are in the JSON).
        out (str, optional): Write all results as JSON here.
        command (str): The command line, stored in the report.

    Returns:
        dict: The report: machine, GEMM rate, command and the results per
        shape (also written to ``out``).
    """
    stages = TRAIN_STAGES if train else STAGES
    models = [ours] + list(peers)
    gemm = gemm_gflops(device)
    report = dict(
        machine=machine_info(device),
        gemm_gflops=gemm,
        command=command,
        shapes={})
    print(f"machine: {report['machine']['cpu']}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, "
          f'fp32 GEMM {gemm:.0f} GFLOP/s')
    for shape in shapes:
        benches = [
            ModelBench(
                name,
                config,
                shape,
                batch_size=batch_size,
                train=train,
                device=device,
                amp=amp,
                num_gt=num_gt) for name, config in models
        ]
        run_interleaved(benches, warmup, repeat)
        results = []
        for bench in benches:
            res = bench.results()
            if not no_flops:
                res['flops'] = bench.flops()
            if counts:
                res['counts'] = bench.count_ops()
            results.append(res)
        h, w = shape
        ph, pw = results[0]['input_shape']
        mode = 'training iteration' if train else 'inference'
        print(f'\n{mode}, batch {batch_size}, image {h}x{w} (padded '
              f'{ph}x{pw}), median of {repeat} interleaved runs; '
              'stages: ' + ', '.join(STAGE_TITLES[s] for s in stages))
        print(compare(results, stages))
        print('CPU seconds of the process (all threads), same runs:')
        print(compare(results, stages, 'cpu_timing'))
        if counts:
            print('operators and host syncs of one counted run each '
                  '(sync sites: --out JSON):')
            print(compare_counts(results))
        report['shapes'][f'{h}x{w}'] = results
        del benches
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'results written to {out}')
    return report
