"""The project's main demo (``make demo``): generate data, train a tiny Mask
DINO on the CPU, evaluate it, predict on photographs and write a report.

Stages (each prints what it does and how long it took):

1. generate the synthetic shapes dataset (COCO instance + panoptic, ADE20K
   and Cityscapes layouts) under ``data/synthetic/``, or reuse it;
2. train ``configs/maskdino_tiny_synthetic_panoptic.py`` (one model that
   gives instance, panoptic and semantic results) with the mmengine
   ``Runner`` and a progress display: 2000 iterations, or fewer when they
   do not fit the time budget (8 min; the lr schedule is shortened alike);
3. evaluate on the held-out split: box AP and mask AP (``CocoMetric``), PQ
   (``CocoPanopticMetric``) and mIoU (``SemSegMetric``);
4. predict with ``tools/demo/image_demo.py`` on photographs that ship with
   scikit-image (public domain / CC0, no download) and on held-out synthetic
   images (with ground truth | prediction comparisons);
5. write ``report.md`` and ``report.json`` to the output folder.

No network access is needed. The model is tiny (about 0.3 M parameters)
and trained for minutes, so its numbers say that the whole pipeline works,
not what Mask DINO reaches on COCO; on photographs it can only name the
synthetic classes (disc, square, triangle, sky, ground).

Examples::

    python tools/demo/run_demo.py                 # ~10 min on 2 CPU cores
    python tools/demo/run_demo.py --quick         # 1-2 min smoke run
    python tools/demo/run_demo.py --iters 3000 --max-train-minutes 20
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # configs import projects.mask_dino
    sys.path.insert(0, REPO)

from projects.mask_dino.demo.end_to_end import PHOTOS, run_demo  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--out-dir', default=osp.join(REPO, 'outputs', 'demo'))
    parser.add_argument(
        '--data-root',
        default=None,
        help='dataset root (default data/synthetic, or '
        'data/synthetic_quick with --quick)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument(
        '--iters',
        type=int,
        default=2000,
        help='training iterations (the tiny config\'s schedule)')
    parser.add_argument(
        '--max-train-minutes',
        type=float,
        default=8.0,
        help='time budget for training: fewer iterations (schedule '
        'shortened alike) on a slow machine')
    parser.add_argument('--num-photos', type=int, default=len(PHOTOS))
    parser.add_argument('--num-synthetic', type=int, default=6)
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads; 1 is fastest for this tiny model on a busy '
        'machine')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: 16/6 images, 20 iterations, 2 photos')
    args = parser.parse_args(argv)
    if args.quick:
        args.num_train, args.num_val, args.iters = 16, 6, 20
        args.num_photos, args.num_synthetic = 2, 2
    if args.data_root is None:
        args.data_root = osp.join(
            REPO, 'data', 'synthetic_quick' if args.quick else 'synthetic')
    args.data_root = osp.abspath(args.data_root)
    args.out_dir = osp.abspath(args.out_dir)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    return run_demo(
        args.out_dir,
        args.data_root,
        num_train=args.num_train,
        num_val=args.num_val,
        iters=args.iters,
        max_train_minutes=args.max_train_minutes,
        num_photos=args.num_photos,
        num_synthetic=args.num_synthetic,
        score_thr=args.score_thr,
        seed=args.seed,
        threads=args.threads)


if __name__ == '__main__':
    main()
