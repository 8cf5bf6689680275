"""``--cfg-options data_root=ROOT`` moves a whole config to another copy of
its dataset."""
import os.path as osp

import pytest
from conftest import REPO
from mmengine.config import Config

from projects.mask_dino.engine import load_tool_config, merge_cfg_options


def config(name: str) -> str:
    return osp.join(REPO, 'configs', name)


def data_paths(cfg: Config) -> dict:
    """Every path of the dataloaders and evaluators, by key path."""
    found = {}

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f'{where}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{where}.{i}')
        elif isinstance(node, str) and (
                '/' in node or node.endswith('.json')):
            found[where] = node

    for key in cfg.keys():
        if key.endswith(('_dataloader', '_evaluator')):
            walk(cfg[key], key)
    return found


def test_panoptic_config_moves_with_data_root(tmp_path):
    root = str(tmp_path / 'my coco')
    cfg = load_tool_config(
        config('maskdino_r50_coco_panoptic.py'), 'none',
        dict(data_root=root))
    paths = data_paths(cfg)
    expected = {
        'train_dataloader.dataset.data_root': root,
        'val_dataloader.dataset.data_root': root,
        'test_dataloader.dataset.data_root': root,
    }
    for split in ('val', 'test'):
        expected.update({
            f'{split}_evaluator.0.ann_file':
            osp.join(root, 'annotations/panoptic_val2017.json'),
            f'{split}_evaluator.0.seg_prefix':
            osp.join(root, 'annotations/panoptic_val2017/'),
            f'{split}_evaluator.1.ann_file':
            osp.join(root, 'annotations/instances_val2017.json'),
        })
    for key, value in expected.items():
        assert paths[key] == value, key
    # nothing is left under the old root
    assert not [p for p in paths.values() if p.startswith('data/coco')]
    # relative parts stay relative to the dataset root
    assert cfg.test_dataloader.dataset.ann_file == \
        'annotations/panoptic_val2017.json'


@pytest.mark.parametrize('name,old', [
    ('maskdino_r50_coco_instance.py', 'data/coco'),
    ('maskdino_r50_ade20k_semantic.py', 'data/ade/ADEChallengeData2016'),
    ('maskdino_r50_cityscapes_semantic.py', 'data/cityscapes'),
    ('maskdino_tiny_synthetic_panoptic.py', 'data/synthetic/coco'),
    ('maskdino_tiny_synthetic_semantic.py',
     'data/synthetic/ade/ADEChallengeData2016'),
])
def test_every_task_config_moves(name, old):
    before = data_paths(Config.fromfile(config(name)))
    assert any(p.startswith(old) for p in before.values())
    cfg = Config.fromfile(config(name))
    merge_cfg_options(cfg, dict(data_root='/mnt/x'))
    after = data_paths(cfg)
    assert after.keys() == before.keys()
    for key, path in before.items():
        if path.rstrip('/') == old:  # a dataset's data_root
            assert after[key] == '/mnt/x', key
        elif path.startswith(old + '/'):  # a file under it
            assert after[key] == '/mnt/x/' + path[len(old) + 1:], key
        else:
            assert after[key] == path, key


def test_new_root_inside_old_root_moves_once():
    # test_evaluator is the same object as val_evaluator in the config
    cfg = Config.fromfile(config('maskdino_r50_coco_panoptic.py'))
    merge_cfg_options(cfg, dict(data_root='data/coco/v2'))
    assert cfg.test_evaluator[1].ann_file == \
        'data/coco/v2/annotations/instances_val2017.json'
    assert cfg.val_evaluator[0].seg_prefix == \
        'data/coco/v2/annotations/panoptic_val2017/'


def test_explicit_path_overrides_are_kept():
    cfg = Config.fromfile(config('maskdino_r50_coco_instance.py'))
    merge_cfg_options(
        cfg, {
            'data_root': '/data/coco/',
            'test_evaluator.ann_file': '/elsewhere/instances_test.json'
        })
    assert cfg.test_evaluator.ann_file == '/elsewhere/instances_test.json'
    assert cfg.val_evaluator.ann_file == \
        '/data/coco/annotations/instances_val2017.json'
    assert cfg.train_dataloader.dataset.data_root == '/data/coco/'


def test_other_options_leave_paths_alone():
    name = config('maskdino_r50_coco_panoptic.py')
    before = data_paths(Config.fromfile(name))
    cfg = Config.fromfile(name)
    merge_cfg_options(cfg, {'train_cfg.max_iters': 10})
    assert data_paths(cfg) == before and cfg.train_cfg.max_iters == 10
