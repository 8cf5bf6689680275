"""Facts stated once: the head passes class counts and point counts down,
the detector passes them to the fusion head and ``test_cfg``."""
import pytest
from conftest import tiny_cfg
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

from projects.mask_dino.utils import pass_down


def test_pass_down_sets_agrees_and_refuses():
    cfg = dict(type='X', a=1)
    out = pass_down(cfg, 'Owner', 'sub', a=1, b=2, c=None)
    assert out == dict(type='X', a=1, b=2)
    assert cfg == dict(type='X', a=1)  # the input is not changed
    with pytest.raises(ValueError, match=r'sub\.a=1 contradicts a=3 of '
                       'Owner'):
        pass_down(cfg, 'Owner', 'sub', a=3)


@pytest.mark.parametrize('task,counts', [('instance', (3, 0)),
                                         ('panoptic', (3, 2)),
                                         ('semantic', (0, 5))])
def test_built_parts_take_the_heads_counts(task, counts):
    init_default_scope('mmdet')
    cfg = tiny_cfg(task)
    head_cfg = cfg.panoptic_head
    assert (head_cfg.num_things_classes, head_cfg.num_stuff_classes) == counts
    model = MODELS.build(cfg)
    criterion = model.panoptic_head.criterion
    assert criterion.num_classes == sum(counts)
    assert criterion.num_things_classes == counts[0]
    assert criterion.assigner.num_things_classes == counts[0]
    # matching points default to the loss points
    assert criterion.assigner.num_points == criterion.num_points == 256
    fusion = model.panoptic_fusion_head
    assert (fusion.num_things_classes, fusion.num_stuff_classes) == counts
    assert fusion.test_cfg.semantic_ce == (task == 'semantic')


@pytest.mark.parametrize('where', ['criterion', 'assigner', 'fusion',
                                   'test_cfg'])
def test_a_contradicting_repeat_is_a_build_error(where):
    init_default_scope('mmdet')
    cfg = tiny_cfg('instance')
    if where == 'criterion':
        cfg.panoptic_head.criterion.num_classes = 4
    elif where == 'assigner':
        cfg.panoptic_head.criterion.assigner.num_things_classes = 80
    elif where == 'fusion':
        cfg.panoptic_fusion_head.num_things_classes = 80
    else:
        cfg.test_cfg.semantic_ce = True
    with pytest.raises(ValueError, match='contradicts'):
        MODELS.build(cfg)
