"""Generate a small synthetic segmentation dataset in the real formats.

The command line of :mod:`projects.mask_dino.testing.synthetic_dataset`
(layouts, conventions and the ``real`` format are described there). Example::

    python tools/misc/make_synthetic_dataset.py --out data/synthetic \\
        --num-train 200 --num-val 50 --size 128 128 --seed 0
    python tools/misc/make_synthetic_dataset.py --out data/synthetic_real \\
        --format real
"""
import argparse
import os.path as osp
import sys
import time
from typing import Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from projects.mask_dino.testing.synthetic_dataset import (  # noqa: E402
    FORMATS, make_dataset, summary)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the synthetic shapes dataset (COCO instance, '
        'COCO panoptic, ADE20K and Cityscapes layouts).')
    parser.add_argument(
        '--out',
        default='data/synthetic',
        help='dataset root (default: data/synthetic)')
    parser.add_argument(
        '--num-train',
        type=int,
        default=200,
        help='number of training images (default: 200)')
    parser.add_argument(
        '--num-val',
        type=int,
        default=50,
        help='number of validation images (default: 50)')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=[128, 128],
        metavar=('H', 'W'),
        help='image height and width (default: 128 128)')
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)')
    parser.add_argument(
        '--format',
        default='synthetic',
        choices=FORMATS,
        help='synthetic: the synthetic class names and category ids 1..5 '
        '(read by the tiny configs); real: the files exactly as the public '
        'datasets write them (COCO 80 / 133 categories with their ids, ADE20K '
        'labels 1..150, Cityscapes train ids 0..18), read by the real task '
        'configs (default: synthetic)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    start = time.time()
    try:
        paths = make_dataset(
            args.out,
            args.num_train,
            args.num_val,
            tuple(args.size),
            args.seed,
            fmt=args.format)
    except (ValueError, OSError) as e:
        sys.exit(f'make_synthetic_dataset: error: {e}')
    print(summary(paths['root'], time.time() - start, args.format))


if __name__ == '__main__':
    main()
