"""Test-time augmentation of instance predictions (MaskDINOTTAModel) and
``tools/test.py --tta`` on the tiny synthetic instance config (CPU)."""
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, REPO, TINY_CONFIGS
from data_helpers import instance_config_on_new_data
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.structures import InstanceData

from projects.mask_dino.engine import enable_tta, load_tool_config
from projects.mask_dino.test_time_augs import (MaskDINOTTAModel,
                                               merge_instances,
                                               unflip_instances)

TINY_INSTANCE = osp.join(CONFIGS, TINY_CONFIGS['instance'])
NMS = dict(type='nms', iou_threshold=0.5)


def box_instances(boxes, scores, labels, shape=(20, 30)):
    """Instances whose masks fill their (integer) boxes."""
    masks = torch.zeros((len(boxes), *shape), dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = True
    return InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=masks)


# ------------------------------------------------------------ merging
def test_unflip_restores_boxes_and_masks():
    original = box_instances([[2, 3, 10, 8]], [0.9], [1])
    # what a horizontally flipped view predicts for the same object
    flipped = InstanceData(
        bboxes=torch.tensor([[30 - 10, 3, 30 - 2, 8]], dtype=torch.float32),
        scores=original.scores,
        labels=original.labels,
        masks=original.masks.flip(-1))
    meta = dict(ori_shape=(20, 30), flip=True, flip_direction='horizontal')
    restored = unflip_instances(flipped, meta)
    assert torch.equal(restored.bboxes, original.bboxes)
    assert torch.equal(restored.masks, original.masks)
    meta = dict(ori_shape=(20, 30), flip=True, flip_direction='vertical')
    vflipped = InstanceData(
        bboxes=torch.tensor([[2, 20 - 8, 10, 20 - 3]], dtype=torch.float32),
        scores=original.scores,
        labels=original.labels,
        masks=original.masks.flip(-2))
    restored = unflip_instances(vflipped, meta)
    assert torch.equal(restored.bboxes, original.bboxes)
    assert torch.equal(restored.masks, original.masks)
    unflipped = dict(ori_shape=(20, 30), flip=False)
    assert unflip_instances(original, unflipped) is original


def test_merge_votes_masks_of_one_cluster_and_keeps_nms_boxes():
    # three views of one object (label 1) that disagree on one column, a
    # second object of another label at the same place, and a lone one
    views = box_instances(
        [[2, 2, 10, 10], [2, 2, 11, 10], [2, 2, 9, 10], [2, 2, 10, 10],
         [20, 12, 28, 18]], [0.9, 0.6, 0.2, 0.5, 0.4], [1, 1, 1, 2, 1])
    merged = merge_instances(views, NMS, max_per_image=10, mask_thr=0.5)
    assert merged.labels.tolist() == [1, 2, 1]
    assert merged.scores.tolist() == pytest.approx([0.9, 0.5, 0.4])
    assert torch.equal(merged.bboxes[0], views.bboxes[0])
    # column 9 is in views 0 and 1 (weight 1.5 of 1.7): kept; column 10
    # only in view 1 (0.6 of 1.7): dropped
    expected = torch.zeros((20, 30), dtype=torch.bool)
    expected[2:10, 2:10] = True
    assert torch.equal(merged.masks[0], expected)
    # other labels and other places are not mixed in
    assert torch.equal(merged.masks[1], views.masks[3])
    assert torch.equal(merged.masks[2], views.masks[4])


def test_merge_keeps_max_per_image_and_handles_empty_views():
    views = box_instances([[i * 3, 0, i * 3 + 2, 2] for i in range(8)],
                          [0.1 * (i + 1) for i in range(8)], [0] * 8)
    merged = merge_instances(views, NMS, max_per_image=3, mask_thr=0.5)
    assert len(merged) == 3
    assert merged.scores.tolist() == pytest.approx([0.8, 0.7, 0.6])
    assert merged.masks.shape == (3, 20, 30)
    empty = box_instances([], [], [])
    merged = merge_instances(empty, NMS, max_per_image=3, mask_thr=0.5)
    assert len(merged) == 0 and merged.masks.shape == (0, 20, 30)


# -------------------------------------------------------------- config
def build_tta_model(config):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.model.backbone.init_cfg = None
    return MODELS.build(dict(**cfg.tta_model, module=cfg.model))


def test_tta_model_takes_max_per_image_from_the_model():
    model = build_tta_model('maskdino_tiny_synthetic_instance.py')
    assert isinstance(model, MaskDINOTTAModel)
    assert model.tta_cfg.max_per_image == 20
    assert model.tta_cfg.nms.iou_threshold == 0.5


def test_instance_configs_define_flip_and_multiscale_tta():
    for name in ('maskdino_r50_coco_instance.py',
                 'maskdino_swin-l_coco_instance.py',
                 'maskdino_tiny_synthetic_instance.py'):
        cfg = Config.fromfile(osp.join(CONFIGS, name))
        assert cfg.tta_model.type == 'MaskDINOTTAModel'
        (tta, ) = [t for t in cfg.tta_pipeline if t.type == 'TestTimeAug']
        resizes, flips = tta.transforms[0], tta.transforms[1]
        assert len({tuple(r.scale) for r in resizes}) == 3
        assert sorted(f.prob for f in flips) == [0.0, 1.0]
        assert 'flip_direction' in tta.transforms[-1][0].meta_keys


@pytest.mark.parametrize('config', [
    'maskdino_tiny_synthetic_panoptic.py', 'maskdino_tiny_synthetic_semantic.py',
    'maskdino_r50_coco_panoptic.py', 'maskdino_r50_ade20k_semantic.py'
])
def test_tta_is_refused_for_panoptic_and_semantic_configs(config):
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    with pytest.raises(ValueError, match='--tta is not supported') as err:
        enable_tta(cfg)
    assert 'maskdino_r50_coco_instance.py' in str(err.value)


def test_tta_model_refuses_a_panoptic_model():
    cfg = Config.fromfile(
        osp.join(CONFIGS, 'maskdino_tiny_synthetic_panoptic.py'))
    with pytest.raises(ValueError, match='instance results'):
        MODELS.build(
            dict(type='MaskDINOTTAModel', module=cfg.model, tta_cfg=None))


# ------------------------------------------------------ tools/test.py
@pytest.fixture(scope='module')
def tta_workspace(tmp_path_factory):
    """2 synthetic val images, a config pointing at them and a checkpoint
    of the tiny instance model with random weights."""
    root = tmp_path_factory.mktemp('tta')
    config = root / 'tiny_tta.py'
    config.write_text(
        instance_config_on_new_data(
            TINY_INSTANCE, str(root), num_train=1, num_val=2))
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    checkpoint = root / 'random.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return root, config, checkpoint


@pytest.mark.integration  # a Runner tests
def test_tta_config_tests_and_merges(tta_workspace):
    """The config as ``tools/test.py --tta`` builds it (its package
    functions), tested by the config's runner."""
    root, config, checkpoint = tta_workspace
    cfg = enable_tta(
        load_tool_config(str(config), 'none', work_dir=str(root / 'work')))
    cfg.load_from = str(checkpoint)
    runner = RUNNERS.build(cfg)
    metrics = runner.test()

    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0
    model = runner.model
    assert isinstance(model, MaskDINOTTAModel)

    # the merged predictions of one batch: 6 views per image merged into
    # at most max_per_image (20) valid instances in the original frame
    batch = next(iter(runner.test_dataloader))
    assert len(batch['inputs']) == 6
    with torch.no_grad():
        results = model.test_step(batch)
    assert len(results) == len(batch['inputs'][0])
    for result in results:
        inst = result.pred_instances
        h, w = result.ori_shape
        assert 0 < len(inst) <= 20
        assert inst.masks.dtype == torch.bool
        assert inst.masks.shape[1:] == (h, w)
        assert inst.bboxes.shape == (len(inst), 4)
        assert (inst.bboxes[:, 0::2] >= 0).all()
        assert (inst.bboxes[:, 0::2] <= w).all()
        assert (inst.bboxes[:, 1::2] <= h).all()
        assert (inst.scores[:-1] >= inst.scores[1:]).all()
        assert result.flip is False


@pytest.mark.integration  # subprocess
def test_tools_test_py_runs_with_tta(tta_workspace):
    """The command line itself: ``--tta`` reaches the config (the merged
    model's metrics are printed)."""
    root, config, checkpoint = tta_workspace
    command = [
        sys.executable,
        osp.join(REPO, 'tools', 'test.py'),
        str(config),
        str(checkpoint), '--tta', '--work-dir',
        str(root / 'work_cli')
    ]
    proc = subprocess.run(
        command,
        cwd=str(root),
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert 'MaskDINOTTAModel' in out
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert re.search(key + r': \d+\.\d+', out), key
