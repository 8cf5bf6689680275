"""PyTorch vs ONNX Runtime CPU latency of a Mask DINO, interleaved in one
process (see projects/mask_dino/deploy/benchmark.py).

Example (R50 instance model, random weights, 800x1333, 2 threads)::

    python tools/deployment/benchmark_onnx.py \
        configs/maskdino_r50_coco_instance.py --out work_dirs/r50.onnx \
        --shape 800 1333 --threads 2 --repeat 5
"""
import argparse
import json


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint', default=None,
                        help='checkpoint (default: random weights)')
    parser.add_argument('--out', default='work_dirs/benchmark_onnx.onnx',
                        help='ONNX file to write (or read, --no-export)')
    parser.add_argument('--no-export', action='store_true',
                        help='time an existing --out file')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333],
                        metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from projects.mask_dino.deploy.benchmark import benchmark_onnx
    summary = benchmark_onnx(
        args.config,
        args.out,
        checkpoint=args.checkpoint,
        shape=args.shape,
        threads=args.threads,
        repeat=args.repeat,
        warmup=args.warmup,
        export=not args.no_export)
    print(json.dumps(summary, indent=2))
    print(f"PyTorch {summary['torch_s']['median']:.3f} s, ONNX Runtime "
          f"{summary['ort_s']['median']:.3f} s, ratio {summary['ratio']:.2f} "
          f"(median of pairs {summary['pair_ratio']:.2f})")


if __name__ == '__main__':
    main()
