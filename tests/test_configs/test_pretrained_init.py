"""The R50 configs' ImageNet initialisation resolves on this project's
environment (no torchvision), offline, from the torch hub cache."""
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

# full-size R50 backbones
pytestmark = pytest.mark.integration
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
R50_CONFIGS = [
    'maskdino_r50_coco_instance.py', 'maskdino_r50_coco_panoptic.py',
    'maskdino_r50_ade20k_semantic.py', 'maskdino_r50_cityscapes_semantic.py'
]


def stand_in_resnet50(backbone: torch.nn.Module) -> dict:
    """A torchvision-layout ResNet-50 state dict (with its ``fc`` head) of
    seeded random values, different from the backbone's own init."""
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.rand(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in backbone.state_dict().items()
    }
    state['fc.weight'] = torch.rand(1000, 2048, generator=gen)
    state['fc.bias'] = torch.rand(1000, generator=gen)
    return state


@pytest.mark.parametrize('name', R50_CONFIGS)
def test_r50_backbone_loads_imagenet_weights_without_torchvision(
        name, tmp_path, monkeypatch):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    init_cfg = cfg.model.backbone.init_cfg
    assert init_cfg.type == 'Pretrained'
    # the file mmengine would fetch: put a stand-in in the hub cache
    url = init_cfg.checkpoint
    assert url.startswith('https://'), url  # no torchvision:// indirection
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    backbone = MODELS.build(cfg.model.backbone)
    state = stand_in_resnet50(backbone)
    cache = tmp_path / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    torch.save(state, cache / osp.basename(url))

    backbone.init_weights()

    loaded = backbone.state_dict()
    for key in ('conv1.weight', 'layer1.0.conv1.weight',
                'layer4.2.conv3.weight', 'layer4.2.bn3.running_var'):
        assert torch.equal(loaded[key], state[key]), key
