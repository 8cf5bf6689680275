"""Tests for :mod:`projects.mask_dino.runtime.compat`.

mmengine-saved checkpoints must load under torch's safe (``weights_only``)
loader through every entry point the project uses, while anything outside
the allow-list is still refused with a clear error.
"""
import os
import uuid
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint, save_checkpoint
from mmengine.runner import checkpoint as mmengine_checkpoint
from torch.utils.data import Dataset

from projects.mask_dino.runtime import compat  # installs the compat layer


class ToyModel(BaseModel):
    """Linear regression ``y = w x + b`` on 2-d inputs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - labels)**2).mean())
        return out


class ToyDataset(Dataset):
    """Eight fixed samples of ``y = x0 - 2 x1 + 0.5``."""

    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.rand(8, 2, generator=gen)
        self.y = self.x @ torch.tensor([[1.], [-2.]]) + 0.5

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return dict(inputs=self.x[idx], labels=self.y[idx])


def _build_runner(work_dir, model, max_iters, resume=False, load_from=None):
    return Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f'compat_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(
            type='MultiStepLR', milestones=[1], by_epoch=False),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=max_iters, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        default_scope='mmengine',
        resume=resume,
        load_from=load_from)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A runner trained for 2 iterations and its saved checkpoint."""
    work_dir = tmp_path_factory.mktemp('toy_runner')
    torch.manual_seed(0)
    runner = _build_runner(work_dir, ToyModel(), max_iters=2)
    runner.train()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()
    return runner, str(ckpt)


@contextmanager
def _only_safe_globals(safe_globals):
    """Temporarily replace torch's user allow-list by ``safe_globals``."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(list(safe_globals))
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.integration  # a Runner trains and resumes
def test_runner_checkpoint_needs_every_safe_global(trained):
    _, ckpt = trained
    # Aliases for checkpoints saved under the other numpy major version
    # cannot be exercised by a checkpoint saved here.
    numpy_2 = int(np.__version__.split('.')[0]) >= 2
    alias_prefix = 'numpy.core.' if numpy_2 else 'numpy._core.'
    needed = [g for g in compat.SAFE_GLOBALS
              if not (isinstance(g, tuple) and g[1].startswith(alias_prefix))]
    with _only_safe_globals(compat.SAFE_GLOBALS):
        assert isinstance(load_checkpoint(ToyModel(), ckpt), dict)
    for dropped in needed:
        with _only_safe_globals([g for g in needed if g is not dropped]):
            with pytest.raises(compat.UnsafeCheckpointError):
                load_checkpoint(ToyModel(), ckpt)


@pytest.mark.integration  # a Runner trains and resumes
def test_load_checkpoint_restores_runner_checkpoint(trained):
    runner, ckpt = trained
    model = ToyModel()
    nn.init.zeros_(model.linear.weight)
    checkpoint = load_checkpoint(model, ckpt, map_location='cpu')

    for key, value in runner.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert checkpoint['meta']['iter'] == 2
    assert checkpoint['meta']['seed'] == 0
    saved_loss = checkpoint['message_hub']['log_scalars']['train/loss']
    live_loss = runner.message_hub.get_scalar('train/loss')
    assert isinstance(saved_loss, HistoryBuffer)
    logs, counts = saved_loss.data
    assert logs.dtype == np.float64 and len(logs) == 2
    np.testing.assert_array_equal(logs, live_loss.data[0])
    np.testing.assert_array_equal(counts, live_loss.data[1])


@pytest.mark.integration  # a Runner trains and resumes
def test_runner_resume_restores_state(trained, tmp_path):
    runner, ckpt = trained
    model = ToyModel()
    nn.init.zeros_(model.linear.weight)
    nn.init.zeros_(model.linear.bias)
    # max_iters equals the resumed iteration, so no step runs after the
    # resume: a failed resume would instead train 2 steps from zeros.
    resumed = _build_runner(
        tmp_path, model, max_iters=2, resume=True, load_from=ckpt)
    resumed.train()

    assert resumed.iter == 2
    for key, value in runner.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    old_state = runner.optim_wrapper.state_dict()['state']
    new_state = resumed.optim_wrapper.state_dict()['state']
    assert old_state.keys() == new_state.keys() and len(old_state) == 2
    for idx, state in old_state.items():
        assert torch.equal(new_state[idx]['momentum_buffer'],
                           state['momentum_buffer'])
    np.testing.assert_array_equal(
        resumed.message_hub.get_scalar('train/loss').data[0],
        runner.message_hub.get_scalar('train/loss').data[0])


def _tiny_retinanet_cfg():
    return Config(
        dict(
            default_scope='mmdet',
            model=dict(
                type='RetinaNet',
                data_preprocessor=dict(
                    type='DetDataPreprocessor',
                    mean=[0., 0., 0.],
                    std=[1., 1., 1.],
                    pad_size_divisor=32),
                backbone=dict(
                    type='ResNet',
                    depth=18,
                    base_channels=8,
                    out_indices=(3, ),
                    norm_cfg=dict(type='BN', requires_grad=True),
                    norm_eval=False,
                    init_cfg=None),
                neck=dict(
                    type='FPN', in_channels=[64], out_channels=16,
                    num_outs=1),
                bbox_head=dict(
                    type='RetinaHead',
                    num_classes=2,
                    in_channels=16,
                    stacked_convs=1,
                    feat_channels=16,
                    anchor_generator=dict(
                        type='AnchorGenerator',
                        octave_base_scale=4,
                        scales_per_octave=1,
                        ratios=[1.0],
                        strides=[32]),
                    bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                    loss_cls=dict(
                        type='FocalLoss', use_sigmoid=True, gamma=2.0,
                        alpha=0.25, loss_weight=1.0),
                    loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
                test_cfg=dict(
                    nms_pre=10,
                    min_bbox_size=0,
                    score_thr=0.05,
                    nms=dict(type='nms', iou_threshold=0.5),
                    max_per_img=10)),
            test_dataloader=dict(
                dataset=dict(
                    type='CocoDataset',
                    lazy_init=True,
                    metainfo=dict(
                        classes=('cat', 'dog'),
                        palette=[(255, 0, 0), (0, 255, 0)])))))


def test_init_detector_loads_mmengine_checkpoint(tmp_path):
    from mmdet.apis import init_detector
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()

    cfg = _tiny_retinanet_cfg()
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model)
    with torch.no_grad():
        detector.bbox_head.retina_cls.bias.copy_(torch.tensor([0.25, -1.5]))
    # Message-hub-like meta as a Runner writes it: numpy scalars and a
    # HistoryBuffer of numpy arrays.
    meta = dict(
        iter=np.int64(7),
        seed=np.int64(3),
        best_score=np.float64(0.125),
        dataset_meta=dict(classes=('cat', 'dog')),
        message_hub=dict(
            log_scalars={'train/loss': HistoryBuffer([0.5, 0.25], [1, 1])},
            runtime_info=dict(iter=np.int64(7))))
    ckpt = str(tmp_path / 'retinanet.pth')
    save_checkpoint(
        dict(meta=meta, state_dict=detector.state_dict()), ckpt)

    loaded = init_detector(cfg, ckpt, device='cpu')
    torch.testing.assert_close(
        loaded.bbox_head.retina_cls.bias,
        torch.tensor([0.25, -1.5]),
        rtol=0,
        atol=0)
    for key, value in detector.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.dataset_meta['classes'] == ('cat', 'dog')


def _write_marker(path):
    """Side effect a malicious checkpoint would trigger when unpickled."""
    with open(path, 'w') as f:
        f.write('pwned')
    return path


class _Foreign:
    """An object whose unpickling writes a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _write_marker, (self.marker, )


class _ShellCommand:
    """An object whose unpickling runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


class _GetattrGadget:
    """An object unpickled as ``getattr(HistoryBuffer, '__init__')``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


@pytest.mark.parametrize(('payload', 'refused'), [
    (_Foreign, f'{__name__}._write_marker'),
    (_ShellCommand, f'{os.system.__module__}.system'),
    (_GetattrGadget, 'mmengine.logging.history_buffer.HistoryBuffer.__init__'),
])
def test_foreign_object_is_refused(tmp_path, payload, refused):
    marker = tmp_path / 'side_effect'
    ckpt = str(tmp_path / 'evil.pth')
    torch.save(
        dict(state_dict=ToyModel().state_dict(),
             meta=dict(note=payload(str(marker)))), ckpt)

    with pytest.raises(compat.UnsafeCheckpointError) as info:
        load_checkpoint(ToyModel(), ckpt)

    err = info.value
    assert ckpt in str(err)
    assert f'`{refused}`' in str(err)
    assert 'safe' in str(err) and 'allow-list' in str(err)
    assert err.filename == ckpt and err.refused_global == refused
    assert 'weights_only' in str(err.__cause__)
    assert not marker.exists()


def test_plain_state_dict_loads(tmp_path):
    source = ToyModel()
    with torch.no_grad():
        source.linear.weight.copy_(torch.tensor([[1.5, -2.0]]))
        source.linear.bias.fill_(0.25)
    ckpt = str(tmp_path / 'plain.pth')
    torch.save(source.state_dict(), ckpt)

    target = ToyModel()
    load_checkpoint(target, ckpt)
    assert torch.equal(target.linear.weight, torch.tensor([[1.5, -2.0]]))
    assert torch.equal(target.linear.bias, torch.tensor([0.25]))


def test_install_is_idempotent():
    compat.install()
    compat.install()
    loader = mmengine_checkpoint.CheckpointLoader._get_checkpoint_loader(
        'work_dir/latest.pth')
    # Wrapped exactly once around mmengine's own loader, and still named
    # like it because mmengine logs the backend from the name.
    assert loader.__wrapped__ is mmengine_checkpoint.load_from_local
    assert loader.__name__ == 'load_from_local'
    registered = set(torch.serialization.get_safe_globals())
    assert set(compat.SAFE_GLOBALS) <= registered
