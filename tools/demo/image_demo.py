"""Predict with a Mask DINO model on images; save pictures and results.

Examples::

    python tools/demo/image_demo.py demo.jpg CONFIG CHECKPOINT
    python tools/demo/image_demo.py photos/ CONFIG CHECKPOINT --task panoptic
    python tools/demo/image_demo.py 'data/**/*.jpg' CONFIG CHECKPOINT \\
        --device cuda:0 --score-thr 0.5 --out-dir outputs/my_demo

The tasks are the ones the config's ``model.test_cfg`` switches on
(``--task auto``) or the one named by ``--task``. Class names come from the
checkpoint's ``meta['dataset_meta']`` or, when it has none, from the
config's test dataset. Written under ``--out-dir``:

- ``vis/<task>/<name>.png``: pictures drawn by MMDetection's
  ``DetLocalVisualizer`` (instance: masks, boxes, class names and scores
  above ``--score-thr``; panoptic: segment colours and labels; semantic:
  colour map, labels and a legend). Small images are enlarged so that the
  labels stay readable (``--vis-size``).
- ``instance/results.json``: COCO results format (``image_id``,
  ``category_id``, ``bbox`` as xywh, ``score``, ``segmentation`` as RLE),
  every prediction of the model's top-k.
- ``panoptic/predictions.json`` + ``panoptic/<name>.png``: COCO panoptic
  format (PNG id = R + 256 G + 256^2 B).
- ``semantic/<name>.png``: label maps (0-based class index per pixel,
  MMSegmentation's convention; 16-bit when there are over 255 classes).
- ``summary.json``: images (ids, sizes, files written), categories, tasks.

Category ids are those of a COCO annotation file, matched by class name:
``--ann-file``, else the json of the config's test dataset when it exists
(e.g. ``data/coco/annotations/panoptic_val2017.json``: COCO's ids, with
gaps). Without such a file (ADE20K and Cityscapes configs, a dataset not on
this machine, or class names the file does not have) they are
``label + 1``, and a warning says so. Image ids are the file names when
every name is a number (COCO style), else 1, 2, ... in input order.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:  # configs import the package via custom_imports
    sys.path.insert(0, REPO)

from mmengine.config import DictAction  # noqa: E402

from projects.mask_dino.apis.image_demo import (  # noqa: E402
    TASKS, run_image_demo)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Mask DINO image demo: pictures and json results.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        'inputs', nargs='+', help='image files, folders or glob patterns')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-dir', default='outputs/image_demo', help='output folder')
    parser.add_argument(
        '--device', default=None, help='e.g. cpu, cuda:0 (default: auto)')
    parser.add_argument(
        '--task',
        default='auto',
        choices=('auto', ) + TASKS,
        help="what to predict; 'auto' = the config's test_cfg switches")
    parser.add_argument(
        '--score-thr',
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='minimum instance score to draw (json keeps all)')
    parser.add_argument(
        '--vis-size',
        type=int,
        default=512,
        help='enlarge smaller pictures to about this size for drawing')
    parser.add_argument(
        '--palette',
        default='none',
        help="palette: 'none' (config / checkpoint), 'random', 'coco', ...")
    parser.add_argument(
        '--ann-file',
        default=None,
        help='COCO instance/panoptic json whose category ids (matched by '
        "class name) the json results use; default: the config's test "
        'json if it exists, else label + 1')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    summary = run_image_demo(
        args.inputs,
        args.config,
        args.checkpoint,
        out_dir=args.out_dir,
        device=args.device,
        task=args.task,
        score_thr=args.score_thr,
        vis_size=args.vis_size,
        palette=args.palette,
        ann_file=args.ann_file,
        progress=not args.no_progress,
        cfg_options=args.cfg_options)
    print(f'{len(summary["images"])} image(s), tasks '
          f'{", ".join(summary["tasks"])}, {summary["seconds"]:.1f} s; '
          f'results in {args.out_dir}')
    if summary['failed']:
        print(f'{len(summary["failed"])} input(s) could not be read')
        sys.exit(1)
    return summary


if __name__ == '__main__':
    main()
