"""Training-time guards through the runner: a NaN loss stops the run with
the iteration, term and images and saves nothing; unreadable samples are
skipped and counted (or raise in strict mode), by the config's runner with
this project's tools/train.py and MMDetection's alike; a data-loader worker
that dies is reported with its sample."""
import copy
import os
import os.path as osp
import re
import signal
import uuid

import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS
from robust_common import (MMDET_TRAIN_PY, TRAIN_PY, make_tiny_coco, read_logs,
                           run_train_py, runner_config)

from projects.mask_dino.runtime import MaskDINORunner
from projects.mask_dino.runtime.nonfinite_loss_hook import (NonFiniteLossError,
                                                            nonfinite_terms)
from projects.mask_dino.runtime.robust_dataset import (SampleError,
                                                       SkipBadSamplesDataset,
                                                       wrap_train_dataset)
from projects.mask_dino.runtime.sample_guard_hook import \
    DataLoaderWorkerError


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('robust_guard_data'))
    return root, make_tiny_coco(root, num_images=4, num_classes=3)


def _runner(cfg):
    """The runner of the config (``runner_type`` of the default runtime),
    built as MMDetection's and this project's tools/train.py do."""
    cfg.experiment_name = f'robust_{uuid.uuid4().hex}'
    return RUNNERS.build(cfg)


class PoisonWeightsHook(Hook):
    """Sets the classifier bias to NaN before iteration ``at`` (1-based)."""

    def __init__(self, at):
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            with torch.no_grad():
                runner.model.panoptic_head.cls_embed.bias.fill_(float('nan'))


@pytest.mark.integration  # Runner
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


@pytest.mark.integration  # Runner
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


@pytest.mark.integration  # Runner
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


@pytest.mark.integration  # Runner
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


@pytest.fixture
def default_sigchld():
    """The default SIGCHLD handler while the test runs child processes:
    torch's handler, left by a DataLoader with workers of an earlier test
    (one of them killed on purpose), would raise for the killed worker."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGCHLD, previous)


@pytest.mark.integration  # Runner
def test_runner_wraps_the_dataset_and_takes_the_switches(
        tmp_path, coco, default_sigchld):
    root, ann = coco
    cfg = runner_config(str(tmp_path), root, ann)
    assert RUNNERS.get(cfg.runner_type) is MaskDINORunner
    original = copy.deepcopy(cfg)

    def dataset_of(options=None):
        run_cfg = copy.deepcopy(cfg)
        run_cfg.merge_from_dict(options or {})
        return _runner(run_cfg).train_dataloader.dataset

    wrapped = dataset_of()
    assert isinstance(wrapped, SkipBadSamplesDataset) and not wrapped.strict
    assert type(wrapped.dataset).__name__ == 'CocoDataset'
    assert wrapped.max_consecutive_failures == 50
    assert dataset_of({'skip_bad_samples.strict': True}).strict
    assert type(dataset_of({'skip_bad_samples': None})).__name__ == \
        'CocoDataset'
    # the caller's config is not changed
    assert cfg.to_dict() == original.to_dict()


@pytest.mark.integration  # subprocess
@pytest.mark.parametrize(
    'train_py', [TRAIN_PY, MMDET_TRAIN_PY],
    ids=['tools/train.py', 'mmdet/tools/train.py'])
def test_train_tools_skip_bad_samples_alike(tmp_path, coco_with_bad_image,
                                            train_py, default_sigchld):
    """The same config skips the unreadable image with this project's
    tools/train.py and with MMDetection's (``mim train``), and raises
    naming it in strict mode with both."""
    assert osp.isfile(train_py), train_py
    root, ann = coco_with_bad_image
    cfg_path = str(tmp_path / 'cfg.py')
    runner_config(
        str(tmp_path / 'unused'), root, ann, max_iters=1).dump(cfg_path)
    bad = osp.join(root, 'img', '0000.png')

    work = str(tmp_path / 'lenient')
    proc = run_train_py(cfg_path, work, train_py=train_py)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = read_logs(work)
    assert re.search(
        r'Skipped a bad training sample \(1 skipped so far\): sample 0 '
        r'\(img_path=' + re.escape(bad), logs)
    assert 'Training skipped' in logs

    proc = run_train_py(
        cfg_path,
        str(tmp_path / 'strict'),
        '--cfg-options',
        'skip_bad_samples.strict=True',
        train_py=train_py)
    assert proc.returncode != 0
    assert f'SampleError: sample 0 (img_path={bad}' in proc.stderr
