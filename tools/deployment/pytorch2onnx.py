"""Export a Mask DINO config + checkpoint to ONNX (docs/deployment.md).

Example::

    python tools/deployment/pytorch2onnx.py \
        configs/maskdino_r50_coco_instance.py \
        checkpoints/maskdino_r50_coco_instance.pth \
        --out maskdino_r50_instance.onnx --shape 800 1333 --dynamic

CHECKPOINT ``none`` exports random weights (tests, benchmarks).
"""
import argparse

from mmengine.config import DictAction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help="checkpoint file; 'none' or absent: random "
                        'weights')
    parser.add_argument('--out', default='maskdino.onnx',
                        help='output ONNX file')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333],
                        metavar=('H', 'W'),
                        help='input size, rounded up to the padding '
                        'divisor (the static size unless --dynamic)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--opset', type=int, default=16,
                        help='ONNX opset (13-20; default 16, the tested one)')
    parser.add_argument('--task', choices=['instance', 'panoptic',
                                           'semantic'],
                        help="post-processing task (default: the config's "
                        'test_cfg switches)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from projects.mask_dino.deploy.exporter import pytorch2onnx
    out = pytorch2onnx(args.config, args.checkpoint, args.out,
                       shape=args.shape, dynamic=args.dynamic,
                       opset=args.opset, task=args.task,
                       cfg_options=args.cfg_options)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
