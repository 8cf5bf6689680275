"""Smoke demo: train a tiny Mask DINO on one generated image on the CPU and
show that it learns to find the objects.

This is what ``make demo`` runs until the full demo (synthetic dataset,
evaluation, pictures) lands. No download, no dataset, a few seconds.
"""
import argparse
import os.path as osp
import time

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_overlaps
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData

import projects.mask_dino  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def make_image(size: int, boxes, labels):
    """A noisy image whose objects are bright rectangles, and its sample."""
    img = torch.randn(1, 3, size, size) * 0.3
    masks = np.zeros((len(boxes), size, size), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        img[0, labels[i] % 3, y0:y1, x0:x1] += 2.0
        masks[i, y0:y1, x0:x1] = 1
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(size, size),
            ori_shape=(size, size),
            pad_shape=(size, size),
            batch_input_shape=(size, size),
            scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        labels=torch.tensor(labels),
        bboxes=torch.tensor(boxes, dtype=torch.float32),
        masks=BitmapMasks(masks, size, size))
    return img, sample


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        '--config',
        default=osp.join(REPO, 'configs/maskdino_tiny_synthetic_instance.py'))
    parser.add_argument('--iters', type=int, default=100)
    args = parser.parse_args()

    torch.manual_seed(0)
    register_all_modules()
    cfg = Config.fromfile(args.config)
    model = MODELS.build(cfg.model)
    model.init_weights()
    n_params = sum(p.numel() for p in model.parameters())
    print(f'[1/3] built {cfg.model.type} from {osp.basename(args.config)}: '
          f'{n_params:,} parameters (random init)')

    boxes, labels = [[8, 8, 40, 40], [36, 30, 60, 60]], [1, 2]
    img, sample = make_image(64, boxes, labels)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start = time.time()
    for it in range(1, args.iters + 1):
        losses = model.loss(img, [sample.clone()])
        total = sum(losses.values())
        optim.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        if it == 1 or it % 10 == 0:
            print(f'[2/3] iter {it:3d}/{args.iters}  total loss '
                  f'{float(total):9.3f}  ({len(losses)} terms, '
                  f'{time.time() - start:.1f}s)')

    model.eval()
    with torch.no_grad():
        result = model.predict(img, [sample.clone()])[0].pred_instances
    print('[3/3] best prediction for each ground-truth object:')
    for gt_box, gt_label in zip(boxes, labels):
        keep = result.labels == gt_label
        if not keep.any():
            print(f'      label {gt_label}: not found')
            continue
        i = int(torch.nonzero(keep)[result.scores[keep].argmax()])
        box = result.bboxes[i]
        iou = float(bbox_overlaps(box[None], torch.tensor([gt_box]).float()))
        print(f'      label {gt_label}  GT box {gt_box}  predicted '
              f'{[round(v) for v in box.tolist()]}  box IoU {iou:.2f}  '
              f'score {float(result.scores[i]):.3f}  mask pixels '
              f'{int(result.masks[i].sum())}')

if __name__ == '__main__':
    main()
