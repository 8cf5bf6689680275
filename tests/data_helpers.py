"""Helpers shared by the tests on generated datasets
(tests/test_datasets, tests/test_evaluation): configs pointed at a
generated root, the generator's command line, ground truth fed back as
predictions and the configs' evaluators."""
import json
import os.path as osp
import subprocess
import sys
from typing import List, Mapping, Optional, Tuple

import numpy as np
import torch
from conftest import CONFIGS, REPO, TINY_CONFIGS
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from projects.mask_dino.testing import synthetic_dataset

# The synthetic classes in label order (the generator's).
DISC, SQUARE, TRIANGLE, SKY, GROUND = range(5)
SYNTHETIC_ROOT = 'data/synthetic/'  # the tiny configs' default data root
# What a config's dataloaders and evaluators hold their paths in.
DATA_KEYS = ('data_root', 'train_dataloader', 'val_dataloader',
             'test_dataloader', 'val_evaluator', 'test_evaluator')


def config_with_data_at(name: str, moves: Mapping[str, str]) -> Config:
    """``configs/{name}`` with every data path (data roots, dataloaders,
    evaluator files) that starts with a key of ``moves`` moved under that
    key's value, as ``--cfg-options`` would; nothing else changed."""
    cfg = Config.fromfile(osp.join(CONFIGS, name))

    def move(node):
        if isinstance(node, dict):  # ConfigDicts are dicts
            return {k: move(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(move(v) for v in node)
        if isinstance(node, str):
            for old, new in moves.items():
                if node.startswith(old):
                    return osp.join(new, node[len(old):])
        return node

    for key in DATA_KEYS:
        if key in cfg:
            cfg[key] = move(cfg[key])
    return cfg


def synthetic_config(task: str, root: str) -> Config:
    """``configs/maskdino_tiny_synthetic_{task}.py`` on the dataset
    generated at ``root``."""
    return config_with_data_at(TINY_CONFIGS[task], {SYNTHETIC_ROOT: root})


def instance_config_on_new_data(base: str, folder: str, num_train: int,
                                num_val: int) -> str:
    """Generate a synthetic dataset in ``folder/synthetic`` and give the
    text of a config file that takes the instance config ``base`` with
    its dataloaders and evaluators on that data (tests append settings)."""
    paths = synthetic_dataset.make_dataset(
        osp.join(folder, 'synthetic'), num_train=num_train, num_val=num_val)
    data_root = paths['coco_root'].rstrip('/') + '/'
    return f'''
_base_ = {base!r}
data_root = {data_root!r}
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
'''


def run_generator(*args: str) -> subprocess.CompletedProcess:
    """tools/misc/make_synthetic_dataset.py as a command."""
    return subprocess.run(
        [sys.executable,
         osp.join(REPO, 'tools', 'misc', 'make_synthetic_dataset.py'), *args],
        capture_output=True,
        text=True)


def generate_by_command(out: str, *args: str) -> Tuple[str, dict]:
    """Generate a dataset at ``out`` with the command (it must succeed).

    Returns:
        tuple: the command's stdout and the marker file it wrote.
    """
    proc = run_generator('--out', out, *args)
    assert proc.returncode == 0, proc.stderr
    with open(osp.join(out, synthetic_dataset.MARKER)) as f:
        return proc.stdout, json.load(f)


def tight_box(mask: np.ndarray) -> list:
    """[x, y, w, h] extent of a boolean mask, brute force."""
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    return [cols[0], rows[0], cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]]


def check_boxes_from_masks(instances) -> None:
    """Each box of packed ground-truth instances is its mask's tight box."""
    masks = instances.masks.masks.astype(bool)
    boxes = instances.bboxes.tensor.numpy()
    assert masks.shape[0] == boxes.shape[0]
    for mask, box in zip(masks, boxes):
        x, y, w, h = tight_box(mask)
        np.testing.assert_allclose(box, [x, y, x + w, y + h])


def evaluate(cfg: Config, dataset, predictions) -> dict:
    """Run the config's val evaluators as the runner's ValLoop does."""
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    evaluator.process(data_samples=predictions)
    return evaluator.evaluate(len(predictions))


def pred_instances(gt: InstanceData,
                   corrupt: bool = False,
                   drop: Optional[np.ndarray] = None) -> InstanceData:
    """Ground-truth instances as predictions (score 1), optionally with the
    square -> triangle relabelling (score 0.5) and one instance dropped."""
    masks = torch.from_numpy(gt.masks.masks.astype(bool))
    labels = gt.labels.clone()
    scores = torch.ones(len(labels))
    keep = torch.ones(len(labels), dtype=torch.bool)
    if corrupt:
        relabel = labels == SQUARE
        labels[relabel], scores[relabel] = TRIANGLE, 0.5
        if drop is not None:
            keep = ~(masks == torch.from_numpy(drop)).flatten(1).all(1)
            assert (~keep).sum() == 1
    return InstanceData(
        bboxes=gt.bboxes.tensor[keep],
        labels=labels[keep],
        scores=scores[keep],
        masks=masks[keep])


def pred_semantic(sem: torch.Tensor,
                  corrupt: bool = False,
                  drop: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The semantic map as a prediction; ignored pixels (255) are predicted
    as label 0, so a metric that did not ignore them would lose its IoU.
    ``corrupt`` and ``drop`` as for :func:`pred_instances` (the dropped
    region is predicted ``ground``)."""
    pred = sem.clone()
    pred[sem == 255] = DISC
    if corrupt:
        pred[sem == SQUARE] = TRIANGLE
        if drop is not None:
            pred[drop] = GROUND
    return pred[None]


def lsj_steps(scale: Tuple[int, int],
              ratio_range: Tuple[float, float],
              crop_size: Optional[Tuple[int, int]] = None,
              pad_size: Optional[Tuple[int, int]] = None,
              boxes_from_masks: bool = True) -> List[dict]:
    """The official large-scale jitter written out as mmdet's own steps
    (flip, random resize, crop, pad with 128, drop emptied instances),
    the reference for ``LargeScaleJitter``; crop and pad default to
    ``scale``, other sizes make edge cases."""
    return [
        dict(type='RandomFlip', prob=0.5),
        dict(
            type='RandomResize',
            scale=scale,
            ratio_range=ratio_range,
            keep_ratio=True),
        dict(
            type='RandomCrop',
            crop_size=crop_size or scale,
            crop_type='absolute',
            recompute_bbox=boxes_from_masks,
            allow_negative_crop=True),
        dict(
            type='Pad',
            size=pad_size or scale,
            pad_val=dict(img=(128, 128, 128), masks=0, seg=255)),
        dict(
            type='FilterAnnotations',
            min_gt_bbox_wh=(1e-5, 1e-5),
            by_mask=boxes_from_masks,
            keep_empty=False),
    ]
