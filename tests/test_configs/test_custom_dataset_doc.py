"""docs/custom_dataset.md works as written: its config resolves with the
class count everywhere and loads the generated COCO-format data, and its
fine-tuning recipe (drop the class-dependent weights, then ``load_from``)
loads everything else of a checkpoint trained with another class count."""
import os.path as osp
import re

import numpy as np
import pytest
import torch
from conftest import REPO, set_num_classes, tiny_cfg
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from projects.mask_dino.testing import make_dataset

DOC = osp.join(REPO, 'docs', 'custom_dataset.md')
# every test builds a Runner
pytestmark = pytest.mark.integration
CLASS_KEYS = ('panoptic_head.cls_embed.weight', 'panoptic_head.cls_embed.bias',
              'panoptic_head.dn_generator.label_embedding.weight')


def _tiny_model(cfg):
    """The tiny instance model with the class count of ``cfg``."""
    return set_num_classes(tiny_cfg(),
                           cfg.model.panoptic_head.num_things_classes)


def _python_blocks():
    with open(DOC) as f:
        return re.findall(r'```python\n(.*?)```', f.read(), flags=re.S)


def _doc_block(marker):
    blocks = [b for b in _python_blocks() if marker in b]
    assert len(blocks) == 1, f'{DOC}: no single python block with {marker}'
    return blocks[0]


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data') / 'synthetic')
    make_dataset(out=root, num_train=4, num_val=2)
    return osp.join(root, 'coco') + '/'


@pytest.fixture
def doc_config(tmp_path, coco_root):
    """The doc's config, written next to the repo configs' absolute path
    and pointed at the generated dataset."""
    text = _doc_block('# configs/my_dataset/')
    base = osp.join(REPO, 'configs', 'maskdino_r50_coco_instance.py')
    assert "_base_ = '../maskdino_r50_coco_instance.py'" in text
    text = text.replace("'../maskdino_r50_coco_instance.py'", repr(base))
    assert "'data/synthetic/coco/'" in text
    text = text.replace("'data/synthetic/coco/'", repr(coco_root))
    path = tmp_path / 'maskdino_r50_my_dataset_instance.py'
    path.write_text(text)
    return str(path)


def test_doc_config_sets_the_class_count_everywhere(doc_config, tmp_path):
    cfg = Config.fromfile(doc_config)
    head = cfg.model.panoptic_head
    assert head.num_things_classes == 3 and head.num_stuff_classes == 0
    # stated on the head only, the built parts all have it
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    criterion = model.panoptic_head.criterion
    assert (criterion.num_classes, criterion.num_things_classes) == (3, 3)
    assert criterion.assigner.num_things_classes == 3
    fusion = model.panoptic_fusion_head
    assert (fusion.num_things_classes, fusion.num_stuff_classes) == (3, 0)
    assert model.panoptic_head.cls_embed.out_features == 3
    del model
    assert cfg.train_cfg.max_iters == cfg.param_scheduler[0].end == 16000
    # the data: 3 classes in json order, labels within range
    cfg.model = _tiny_model(cfg)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    runner = Runner.from_cfg(cfg)
    dataset = runner.train_dataloader.dataset
    assert dataset.metainfo['classes'] == ('disc', 'square', 'triangle')
    assert dataset.cat_ids == [1, 2, 3]
    batch = next(iter(runner.train_dataloader))
    for sample in batch['data_samples']:
        assert set(sample.gt_instances.labels.tolist()) <= {0, 1, 2}
    assert len(runner.val_dataloader.dataset) == 2


def _checkpoint_80_classes(path):
    """A random 80-class model of the same architecture, saved as the
    converter does (state_dict + meta)."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(set_num_classes(tiny_cfg(), 80))
    model.init_weights()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = tuple(f'class{i}' for i in range(80))
    torch.save(
        dict(state_dict=state, meta=dict(dataset_meta=dict(classes=classes))),
        path)
    return state


def _loaded_model(doc_config, tmp_path, load_from):
    """Runner built from the doc config (tiny widths) with ``load_from``
    applied as at the start of training (``Runner.load_or_resume``)."""
    cfg = Config.fromfile(doc_config)
    cfg.model = _tiny_model(cfg)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    cfg.load_from = load_from
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    return runner.model.state_dict()


def _assert_loaded_except_class_keys(state, src):
    for key, value in src.items():
        if key in CLASS_KEYS:
            assert state[key].shape[0] == 3  # this model's class count
            assert state[key].shape[1:] == value.shape[1:]
        else:
            assert torch.equal(state[key], value), key


def test_doc_recipe_drops_class_weights_then_loads(doc_config, tmp_path):
    src = str(tmp_path / 'coco80.pth')
    dst = str(tmp_path / 'coco80_noclass.pth')
    src_state = _checkpoint_80_classes(src)
    snippet = _doc_block('class_keys')
    snippet = snippet.replace(
        "'checkpoints/maskdino_r50_coco_instance.pth'", repr(src)).replace(
            "'checkpoints/maskdino_r50_coco_instance_noclass.pth'", repr(dst))
    assert repr(src) in snippet and repr(dst) in snippet
    exec(compile(snippet, DOC, 'exec'), {})
    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(src_state) - set(saved['state_dict']) == set(CLASS_KEYS)
    assert 'dataset_meta' not in saved['meta']
    # the three keys the doc names are exactly the class-dependent ones
    dims = {k for k, v in src_state.items() if v.dim() and v.shape[0] == 80}
    assert dims == set(CLASS_KEYS)

    state = _loaded_model(doc_config, tmp_path, dst)
    _assert_loaded_except_class_keys(state, src_state)


def test_plain_load_from_skips_mismatched_class_weights(doc_config, tmp_path):
    """The doc's note: without dropping, mmengine loads non-strictly and
    leaves the three class tensors at their initialisation."""
    src = str(tmp_path / 'coco80.pth')
    src_state = _checkpoint_80_classes(src)
    state = _loaded_model(doc_config, tmp_path, src)
    _assert_loaded_except_class_keys(state, src_state)


def test_keeping_a_subset_of_classes_by_rows(doc_config, tmp_path):
    """The doc's note: select rows to keep old classes."""
    src = str(tmp_path / 'coco80.pth')
    dst = str(tmp_path / 'coco80_subset.pth')
    src_state = _checkpoint_80_classes(src)
    ckpt = torch.load(src, map_location='cpu', weights_only=True)
    keep = [5, 0, 7]
    for key in CLASS_KEYS:
        ckpt['state_dict'][key] = ckpt['state_dict'][key][keep]
    torch.save(ckpt, dst)
    state = _loaded_model(doc_config, tmp_path, dst)
    for key, value in src_state.items():
        expected = value[keep] if key in CLASS_KEYS else value
        np.testing.assert_array_equal(state[key].numpy(), expected.numpy())
