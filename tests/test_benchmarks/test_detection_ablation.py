"""The box-only config and the detection ablation of the learning
benchmark (issue #19)."""
import glob
import json
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmdet.apis import inference_detector, init_detector
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner

from projects.mask_dino.benchmarks import ablation, learning

REPO = learning.REPO
SCRIPT = osp.join(REPO, 'tools', 'benchmarks', 'learn_synthetic.py')
INSTANCE = osp.join(REPO, 'configs', 'maskdino_tiny_synthetic_instance.py')
DETECTION = osp.join(REPO, 'configs', 'maskdino_tiny_synthetic_detection.py')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """6 training + 4 held-out synthetic images."""
    root = tmp_path_factory.mktemp('synthetic')
    return learning.demo.prepare_data(str(root), 6, 4, 128, 0)['root']


def _lookup(cfg: Config, dotted: str):
    """The value at a cfg-options key; KeyError if any part is missing."""
    node = cfg
    for part in dotted.split('.'):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


# The box-only switch and what it requires, on top of the instance config.
# The DETECTION_ONLY ablation row is the same model trained with the mask
# branch in place (loss weights 0, scores from the classes).
BOX_ONLY = {
    ablation.HEAD + 'with_mask': False,
    ablation.CRITERION + 'loss_mask': None,
    ablation.CRITERION + 'loss_dice': None,
    **ablation.NO_MASK_COSTS,
    **ablation.ENCODER_ANCHORS,
}


def test_detection_config_is_instance_with_box_only_options():
    instance = Config.fromfile(INSTANCE)
    instance.merge_from_dict(BOX_ONLY)
    detection = Config.fromfile(DETECTION)
    assert detection.model.to_dict() == instance.model.to_dict()
    # where the DETECTION_ONLY row sets the same keys, it sets the same
    # values (matching and anchors)
    row = ablation.DETECTION_ONLY
    assert {k: v for k, v in BOX_ONLY.items() if k in row} == {
        k: v for k, v in row.items() if k in BOX_ONLY}
    assert detection.custom_imports == instance.custom_imports
    # no masks are loaded, and only boxes are evaluated
    pipelines = (detection.train_dataloader.dataset.pipeline +
                 detection.test_dataloader.dataset.pipeline)
    loaders = [t for t in pipelines if t.type == 'LoadAnnotations']
    assert len(loaders) == 2
    assert not any(t.get('with_mask', False) for t in loaders)
    assert detection.test_evaluator.metric == 'bbox'


@pytest.mark.parametrize('key', [
    k for k, row in ablation.ABLATION_ROWS.items()
    if row['model'] == 'maskdino_instance' and row['options']
])
def test_each_ablation_row_changes_existing_keys(key):
    """Every override names a key of the instance config (merge_from_dict
    would silently add a misspelt one) and changes its value."""
    options = ablation.ABLATION_ROWS[key]['options']
    baseline = Config.fromfile(INSTANCE)
    changed = Config.fromfile(INSTANCE)
    changed.merge_from_dict(options)
    for dotted, value in options.items():
        before = _lookup(baseline, dotted)
        assert before != value, (key, dotted, before)
        assert _lookup(changed, dotted) == value, (key, dotted)


def test_detection_training_step_has_no_mask_terms(tiny_data):
    """The box-only dataset (no masks loaded) trains with three losses per
    set, each reaching the class or box heads."""
    torch.manual_seed(0)
    cfg = learning.build_config('maskdino_detection', tiny_data,
                                '/tmp/unused', 2, 0)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batch = next(iter(loader))
    gts = [s.gt_instances for s in batch['data_samples']]
    assert sum(len(gt) for gt in gts) > 0
    assert not any('masks' in gt for gt in gts)
    model = MODELS.build(cfg.model)
    model.train()
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert {k.rsplit('loss_', 1)[1] for k in losses} == {'cls', 'bbox', 'iou'}
    # 3 losses x (final + 3 aux + interm + dn + 3 dn aux)
    assert len(losses) == 3 * 9
    for name in ('loss_cls', 'loss_bbox', 'loss_iou'):
        assert float(losses[name]) > 0, name


@pytest.mark.integration
def test_detection_short_run_evaluates_box_ap(tiny_data, tmp_path):
    """3 iterations of the box-only config, its bbox CocoMetric, and
    ``inference_detector`` on the checkpoint: boxes without masks."""
    cfg = learning.build_config('maskdino_detection', tiny_data,
                                str(tmp_path / 'work'), 3, 0)
    result = learning.train_and_test(cfg, 'Mask DINO (boxes only)', 3)
    assert result['iters'] == 3
    assert 0 <= result['metrics']['box_AP'] <= 100
    assert math.isnan(result['metrics']['mask_AP'])
    assert 'coco/bbox_mAP' in result['raw_metrics']
    assert 'coco/segm_mAP' not in result['raw_metrics']
    assert osp.isfile(result['checkpoint'])

    model = init_detector(cfg, result['checkpoint'], device='cpu')
    img = glob.glob(osp.join(tiny_data, '**', '*.png'), recursive=True)[0]
    pred = inference_detector(model, img).pred_instances
    assert set(pred.keys()) == {'bboxes', 'scores', 'labels'}
    assert pred.bboxes.shape == (cfg.model.test_cfg.max_per_image, 4)


def test_mean_std_and_table():
    assert ablation.mean_std([1.0, 2.0, 6.0]) == pytest.approx(
        (3.0, math.sqrt(7.0)))
    mean, std = ablation.mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)
    rows = {
        'a': dict(title='A', model='dino', options={}),
        'b': dict(title='B', model='dino', options={}),
    }
    runs = [
        dict(key='a', seed=s, s_per_iter=0.1,
             metrics=dict(box_AP=ap, mask_AP=math.nan))
        for s, ap in ((0, 60.0), (1, 64.0))
    ] + [
        dict(key='b', seed=0, s_per_iter=0.2,
             metrics=dict(box_AP=70.0, mask_AP=50.0))
    ]
    summary = ablation.summarise(rows, runs)
    lines = ablation.table_lines(summary, baseline='a')
    assert lines[2] == '| A | 0 1 | 62.0 ± 2.8 | n/a | +0.0 | 0.10 |'
    assert lines[3] == '| B | 0 | 70.0 | 50.0 | +8.0 | 0.20 |'


@pytest.mark.integration  # subprocesses training the tiny models
def test_ablation_command_runs_seeds_in_parallel(tiny_data, tmp_path):
    """Two rows x two seeds, 2 iterations each, two runs at once."""
    out_dir = tmp_path / 'out'
    cmd = [
        sys.executable, SCRIPT, '--ablation', 'maskdino_instance',
        'mask_losses', '--seeds', '0', '1', '--iters', '2', '--jobs', '2',
        '--num-train', '6', '--num-val', '4', '--data-root', tiny_data,
        '--out-dir',
        str(out_dir)
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out_dir / 'ablation.json').read_text())
    assert report['pending'] == []
    assert sorted((r['key'], r['seed']) for r in report['runs']) == [
        ('mask_losses', 0), ('mask_losses', 1), ('maskdino_instance', 0),
        ('maskdino_instance', 1)
    ]
    assert all(r['iters'] == 2 for r in report['runs'])
    for key in ('maskdino_instance', 'mask_losses'):
        assert report['summary'][key]['seeds'] == [0, 1]
        mean, std = report['summary'][key]['box_AP']
        assert 0 <= mean <= 100 and std >= 0
    table = [
        line.strip() for line in proc.stdout.splitlines()
        if line.strip().startswith('| ')
    ]
    assert table[0] == '| row | seeds | box AP | mask AP | Δ box AP | s/it |'
    # (the rule line starts with '|---')
    assert table[1].startswith('| Mask DINO (instance) | 0 1 | ')
    assert table[2].startswith('| + no mask losses')
    assert len(table) == 3
    assert all(line in (out_dir / 'ablation.md').read_text()
               for line in table)
