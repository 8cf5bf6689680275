"""Convert an official Mask DINO checkpoint (detectron2) to this project.

The command line of :mod:`projects.mask_dino.converters.maskdino2mmdet`
(formats, checks and output are described there; the mapping rules in
``docs/model_converter.md``). Example::

    python tools/model_converters/maskdino2mmdet.py \\
        maskdino_r50_50ep_300q_hid2048_3sd1_panoptic_pq53.0.pth \\
        checkpoints/maskdino_r50_coco_panoptic.pth \\
        --config configs/maskdino_r50_coco_panoptic.py
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:  # import `projects` without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)

from projects.mask_dino.converters.maskdino2mmdet import (  # noqa: E402
    ConversionError, convert_checkpoint)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official Mask DINO (detectron2) checkpoint '
        'to this project and check it loads strictly.')
    parser.add_argument('src', help='official .pth or .pkl checkpoint')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument(
        '--config',
        required=True,
        help='this project\'s config the checkpoint belongs to, e.g. '
        'configs/maskdino_r50_coco_instance.py (its model is built to check '
        'names and shapes strictly, its test dataset names the classes)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=None,
        help='config overrides, key=value (as in tools/train.py)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    cfg_options = None
    if args.cfg_options:
        from mmengine.config import DictAction
        action = DictAction(option_strings=[], dest='cfg_options')
        ns = argparse.Namespace()
        action(None, ns, args.cfg_options)
        cfg_options = ns.cfg_options
    try:
        convert_checkpoint(args.src, args.dst, args.config, cfg_options)
    except ConversionError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
