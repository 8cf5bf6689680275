"""Speed, memory, parameters and FLOPs of a detector.

Inference (default): ``model.predict`` on a synthetic batch, timed after
warm-up and split into stages (backbone, pixel decoder / encoder, decoder +
heads, post-processing); ``--train`` times one training iteration instead
(forward, matching, losses, backward). One more, untimed run counts the
operators dispatched and the host-synchronising calls (``.item()``,
``nonzero``, ...) with their call sites (``--no-counts`` skips it,
``--repeat 0`` skips the timing). How each figure is measured:
``projects/mask_dino/analysis/benchmark.py``.

Examples (from the repository root)::

    # R50 instance model at the COCO test size, 2 threads
    python tools/analysis_tools/benchmark.py \
        configs/maskdino_r50_coco_instance.py --shape 800 1333 --threads 2
    # one training iteration, batch 2 of 512x512
    python tools/analysis_tools/benchmark.py \
        configs/maskdino_r50_coco_instance.py --train --shape 512 512 \
        --batch-size 2 --out work_dirs/bench/train.json
    # operator and host-sync counts only, 20 sync sites per phase
    python tools/analysis_tools/benchmark.py \
        configs/maskdino_r50_coco_instance.py --train --shape 512 512 \
        --batch-size 2 --repeat 0 --sync-sites 20
    # GPU, fp16 autocast
    python tools/analysis_tools/benchmark.py \
        configs/maskdino_r50_coco_instance.py --device cuda --amp

MMDetection configs are accepted as ``mmdet::path/in/mmdet/configs.py``.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import DictAction  # noqa: E402

from projects.mask_dino.analysis.benchmark import run_benchmark  # noqa: E402
from projects.mask_dino.engine.device_args import apply_device_args  # noqa


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Latency / memory / parameters / FLOPs of a detector')
    parser.add_argument('config', help='config file (or mmdet::path)')
    parser.add_argument('--checkpoint', help='weights (default: random)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=[800, 1333],
        metavar=('H', 'W'),
        help='image size (padded to the size divisor)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument(
        '--repeat',
        type=int,
        default=5,
        help='timed runs (0: no timing, counts only)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time training iterations (forward, matching, losses, '
        'backward)')
    parser.add_argument(
        '--num-gt', type=int, default=10, help='instances per image (train)')
    parser.add_argument(
        '--amp', action='store_true', help='fp16 autocast (CUDA only)')
    parser.add_argument(
        '--no-flops', action='store_true', help='skip the FLOP count')
    parser.add_argument(
        '--no-counts',
        action='store_true',
        help='skip the run that counts operators and host syncs')
    parser.add_argument(
        '--sync-sites',
        type=int,
        default=10,
        metavar='N',
        help='print the N most frequent host-sync sites per phase')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='N',
        help='print the N most expensive ops of one extra run')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    args = parser.parse_args()
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Reject inconsistent options with a message naming the option."""
    if args.repeat < 0 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit('--batch-size must be >= 1, --repeat and '
                         '--warmup >= 0')
    if args.repeat == 0 and args.no_counts:
        raise SystemExit('--repeat 0 with --no-counts measures nothing')
    if args.sync_sites < 0:
        raise SystemExit('--sync-sites must be >= 0')
    if min(args.shape) < 32:
        raise SystemExit(f'--shape {args.shape}: both sides must be >= 32')
    apply_device_args(args)


def main() -> None:
    args = parse_args()
    run_benchmark(
        args.config,
        args.shape,
        batch_size=args.batch_size,
        train=args.train,
        device=args.device,
        checkpoint=args.checkpoint,
        amp=args.amp,
        cfg_options=args.cfg_options,
        num_gt=args.num_gt,
        seed=args.seed,
        warmup=args.warmup,
        repeat=args.repeat,
        no_flops=args.no_flops,
        counts=not args.no_counts,
        sync_sites=args.sync_sites,
        profile=args.profile,
        out=args.out,
        command=' '.join(sys.argv))


if __name__ == '__main__':
    main()
