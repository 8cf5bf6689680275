"""Evaluate an exported Mask DINO on the config's test set with ONNX
Runtime: the config's test dataloader and evaluator, as tools/test.py.

Example::

    python tools/deployment/test_onnx.py maskdino_r50_instance.onnx \
        --config configs/maskdino_r50_coco_instance.py --threads 8
"""
import argparse
import json

from mmengine.config import DictAction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='ONNX file')
    parser.add_argument('--config', help='config (default: the one stored '
                        'in the ONNX file)')
    parser.add_argument('--task', choices=['instance', 'panoptic',
                                           'semantic'])
    parser.add_argument('--threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from mmengine.config import Config
    from projects.mask_dino.deploy.runtime import ORTMaskDINO, evaluate_onnx
    config = args.config
    if config is not None and args.cfg_options:
        config = Config.fromfile(config)
        config.merge_from_dict(args.cfg_options)
    model = ORTMaskDINO(args.model, config, args.task, args.threads)
    if config is None and args.cfg_options:
        model.cfg.merge_from_dict(args.cfg_options)
    metrics = evaluate_onnx(model)
    print(json.dumps(metrics, indent=2, default=float))


if __name__ == '__main__':
    main()
