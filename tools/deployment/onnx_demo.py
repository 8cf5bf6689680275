"""Run an exported Mask DINO on an image with ONNX Runtime and draw the
predictions with the config's visualiser.

Example::

    python tools/deployment/onnx_demo.py maskdino_r50_instance.onnx \
        demo.jpg --out-file demo_pred.jpg
"""
import argparse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='ONNX file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out-file', default='onnx_pred.jpg')
    parser.add_argument('--config', help='config (default: stored one)')
    parser.add_argument('--task', choices=['instance', 'panoptic',
                                           'semantic'])
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import mmcv
    from mmdet.registry import VISUALIZERS
    from projects.mask_dino.deploy.runtime import ORTMaskDINO
    model = ORTMaskDINO(args.model, args.config, args.task, args.threads)
    result = model(args.image)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imconvert(mmcv.imread(args.image), 'bgr', 'rgb')
    visualizer.add_datasample('result', image, data_sample=result,
                              draw_gt=False, show=False,
                              out_file=args.out_file,
                              pred_score_thr=args.score_thr)
    print(f'wrote {args.out_file}')


if __name__ == '__main__':
    main()
