"""Training-time guards through the runner: a NaN loss stops the run with
the iteration, term and images and saves nothing; unreadable samples are
skipped and counted (or raise in strict mode); a data-loader worker that
dies is reported with its sample."""
import importlib.util
import os
import os.path as osp
import re
import signal
import uuid

import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmengine.hooks import Hook
from mmengine.runner import Runner
from robust_common import TRAIN_PY, make_tiny_coco, read_logs, runner_config

from projects.mask_dino.datasets.robust import (SampleError,
                                                SkipBadSamplesDataset,
                                                wrap_train_dataset)
from projects.mask_dino.engine.nonfinite_loss_hook import (NonFiniteLossError,
                                                           nonfinite_terms)
from projects.mask_dino.engine.sample_guard_hook import DataLoaderWorkerError


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('robust_guard_data'))
    return root, make_tiny_coco(root, num_images=4, num_classes=3)


def _runner(cfg, wrap=True):
    cfg.experiment_name = f'robust_{uuid.uuid4().hex}'
    if wrap:
        wrap_train_dataset(cfg)  # as tools/train.py
    return Runner.from_cfg(cfg)


class PoisonWeightsHook(Hook):
    """Sets the classifier bias to NaN before iteration ``at`` (1-based)."""

    def __init__(self, at):
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            with torch.no_grad():
                runner.model.panoptic_head.cls_embed.bias.fill_(float('nan'))


def test_nan_loss_stops_with_iteration_term_and_images(tmp_path, coco):
    root, ann = coco
    work = str(tmp_path)
    runner = _runner(
        runner_config(
            work,
            root,
            ann,
            max_iters=3,
            checkpoint=dict(interval=1, max_keep_ckpts=3)))
    runner.register_hook(PoisonWeightsHook(at=2))
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    msg = str(info.value)
    assert msg.startswith('Non-finite loss at iteration 2: loss=nan')
    assert 'loss_cls=nan' in msg and 'd0.loss_cls=nan' in msg
    # the second batch (shuffle off, batch size 2): images 2 and 3
    assert f'3 ({osp.join(root, "img", "0002.png")})' in msg
    assert f'4 ({osp.join(root, "img", "0003.png")})' in msg
    assert f'last checkpoint is {osp.join(work, "iter_1.pth")}' in msg
    # nothing was saved after the bad iteration; the last one is good
    assert sorted(n for n in os.listdir(work)
                  if n.endswith('.pth')) == ['iter_1.pth']
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work, 'iter_1.pth')
    state = torch.load(osp.join(work, 'iter_1.pth'))['state_dict']
    assert all(
        torch.isfinite(v).all() for v in state.values()
        if v.is_floating_point())


def _corrupt(root, name):
    with open(osp.join(root, 'img', name), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n this is not an image')


@pytest.fixture
def coco_with_bad_image(tmp_path):
    root = str(tmp_path / 'data')
    ann = make_tiny_coco(root, num_images=4, num_classes=3)
    _corrupt(root, '0000.png')
    return root, ann


@pytest.mark.parametrize('num_workers', [0, 1])
def test_unreadable_sample_is_skipped_and_counted(tmp_path,
                                                  coco_with_bad_image,
                                                  num_workers):
    root, ann = coco_with_bad_image
    work = str(tmp_path / 'work')
    runner = _runner(
        runner_config(work, root, ann, max_iters=1, num_workers=num_workers))
    dataset = runner.train_dataloader.dataset
    assert isinstance(dataset, SkipBadSamplesDataset) and not dataset.strict
    runner.train()
    assert runner.iter == 1
    logs = read_logs(work)
    bad = osp.join(root, 'img', '0000.png')
    # each skip is named with a running count (a worker prefetches, so
    # sample 0 may be met again before training ends)
    counts = [
        int(n) for n in re.findall(
            r'Skipped a bad training sample \((\d+) skipped so far\): '
            r'sample 0 \(img_path=' + re.escape(bad), logs)
    ]
    # (the replacement is drawn at random and may be sample 0 again)
    assert len(counts) >= 1 and counts == list(range(1, len(counts) + 1))
    assert 'failed to load image' in logs
    # the main process reports the count of all workers
    assert re.search(
        r'[1-9]\d* unreadable or invalid training samples skipped so far',
        logs)
    assert f'Training skipped {counts[-1]} unreadable or invalid samples ' \
        'in total' in logs


def test_strict_mode_raises_naming_the_file(tmp_path, coco_with_bad_image):
    root, ann = coco_with_bad_image
    cfg = runner_config(str(tmp_path / 'work'), root, ann, max_iters=1)
    # the documented switch: --cfg-options skip_bad_samples.strict=True
    cfg.merge_from_dict({'skip_bad_samples.strict': True})
    runner = _runner(cfg)
    with pytest.raises(SampleError) as info:
        runner.train()
    assert str(info.value).startswith(
        f'sample 0 (img_path={osp.join(root, "img", "0000.png")}')
    assert info.value.index == 0


def test_wrapper_can_be_switched_off(tmp_path, coco):
    root, ann = coco
    cfg = runner_config(str(tmp_path), root, ann)
    cfg.merge_from_dict({'skip_bad_samples': None})
    wrap_train_dataset(cfg)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    cfg2 = runner_config(str(tmp_path), root, ann)
    wrap_train_dataset(wrap_train_dataset(cfg2))  # idempotent
    assert cfg2.train_dataloader.dataset.type == 'SkipBadSamplesDataset'
    assert cfg2.train_dataloader.dataset.dataset.type == 'CocoDataset'


@TRANSFORMS.register_module(name='RobustTestKillWorker', force=True)
class KillWorkerOn:
    """Test transform: SIGKILLs the data-loader worker that loads
    ``filename`` for the second time (the first batches are prefetched
    while the runner is still starting)."""

    def __init__(self, filename):
        self.filename = filename
        self.seen = 0

    def __call__(self, results):
        if results['img_path'].endswith(self.filename) and \
                torch.utils.data.get_worker_info() is not None:
            self.seen += 1
            if self.seen == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return results


def test_dying_worker_is_reported_with_its_sample(tmp_path, coco):
    root, ann = coco
    pipeline = [
        dict(type='RobustTestKillWorker', filename='0001.png'),
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs')
    ]
    runner = _runner(
        runner_config(
            str(tmp_path),
            root,
            ann,
            max_iters=4,
            num_workers=1,
            pipeline=pipeline))
    previous = signal.getsignal(signal.SIGCHLD)
    try:
        with pytest.raises(DataLoaderWorkerError) as info:
            runner.train()
    finally:
        signal.signal(signal.SIGCHLD, previous)
    msg = str(info.value)
    assert 'killed by signal SIGKILL while loading sample 1 ' \
        f'(img_path={osp.join(root, "img", "0001.png")}' in msg


def test_nonfinite_terms_checks_losses_only():
    outputs = {
        'loss': torch.tensor(float('inf')),
        'loss_cls': torch.tensor(1.5),
        'd2.dn_loss_bbox': torch.tensor(float('-inf')),
        'acc': torch.tensor(float('nan')),  # not a loss: not checked
    }
    assert nonfinite_terms(outputs) == {
        'loss': float('inf'),
        'd2.dn_loss_bbox': float('-inf')
    }
    assert nonfinite_terms({'loss': torch.tensor(2.0)}) == {}


def test_train_py_wraps_the_dataset_and_takes_the_switches(tmp_path, coco):
    root, ann = coco
    cfg_path = str(tmp_path / 'cfg.py')
    runner_config(str(tmp_path), root, ann).dump(cfg_path)
    spec = importlib.util.spec_from_file_location('robust_train_py', TRAIN_PY)
    train_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_py)

    def dataset_of(*options):
        args = train_py.parse_args([cfg_path, *options])
        return train_py.build_cfg(args).train_dataloader.dataset

    wrapped = dataset_of()
    assert wrapped.type == 'SkipBadSamplesDataset' and not wrapped.strict
    assert wrapped.dataset.type == 'CocoDataset'
    assert dataset_of('--cfg-options', 'skip_bad_samples.strict=True').strict
    assert dataset_of('--cfg-options',
                      'skip_bad_samples=None').type == 'CocoDataset'
