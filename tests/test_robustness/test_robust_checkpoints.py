"""Checkpoint faults: SIGKILL while a checkpoint is written (previous one
stays valid, --resume uses it), checkpoints of another class count (clear
error on resume, documented fine-tuning with load_from), and no pickled
code runs when the runner loads a checkpoint."""
import os
import os.path as osp
import uuid

import pytest
import torch
from mmengine.runner import Runner
from robust_common import (make_tiny_coco, read_logs, run_train_py,
                           runner_config)

from projects.mask_dino.runtime.compat import UnsafeCheckpointError
from projects.mask_dino.runtime.safe_checkpoint_hook import (
    CheckpointMismatchError, SafeCheckpointHook, atomic_write)

# Imported by the training subprocess (custom_imports): SIGKILLs the
# process half-way through the n-th write of a ``*.pth*`` file.
KILLER = '''
import builtins
import os
import signal

_real_open = builtins.open
_kill_at = int(os.environ.get('ROBUST_KILL_AT_PTH_WRITE', '0'))
_count = [0]


class _HalfWriter:
    def __init__(self, f):
        self._f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def write(self, data):
        self._f.write(data[:len(data) // 2])
        self._f.flush()
        os.fsync(self._f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _open(file, mode='r', *args, **kwargs):
    f = _real_open(file, mode, *args, **kwargs)
    if _kill_at and 'w' in mode and 'b' in mode and \\
            '.pth' in os.path.basename(str(file)):
        _count[0] += 1
        if _count[0] == _kill_at:
            return _HalfWriter(f)
    return f


builtins.open = _open
'''


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('robust_ckpt_data'))
    return root, make_tiny_coco(root, num_images=4, num_classes=3)


def _runner(cfg):
    cfg.experiment_name = f'robust_{uuid.uuid4().hex}'
    return Runner.from_cfg(cfg)


def _load(path):
    return torch.load(path, map_location='cpu')


def _write_config(tmp_path, coco, name, **kwargs):
    root, ann = coco
    cfg = runner_config(
        str(tmp_path / 'unused'),
        root,
        ann,
        max_iters=3,
        custom_imports=['killer'],
        **kwargs)
    path = tmp_path / f'{name}.py'
    cfg.dump(str(path))
    (tmp_path / 'killer.py').write_text(KILLER)
    return str(path)


def _kill_during_second_checkpoint(tmp_path, cfg_path, work_dir):
    proc = run_train_py(
        cfg_path,
        work_dir,
        env=dict(ROBUST_KILL_AT_PTH_WRITE='2'),
        cwd=str(tmp_path))
    assert proc.returncode == -9, proc.stderr[-3000:]


@pytest.mark.integration  # subprocess
def test_sigkill_while_writing_keeps_previous_checkpoint(tmp_path, coco):
    # max_keep_ckpts=1 as the tiny synthetic configs: the only other
    # checkpoint must not be deleted before the new one is complete
    cfg_path = _write_config(
        tmp_path, coco, 'safe', checkpoint=dict(interval=1, max_keep_ckpts=1))
    work = str(tmp_path / 'safe')
    _kill_during_second_checkpoint(tmp_path, cfg_path, work)

    names = sorted(os.listdir(work))
    # iter_1 is only pruned once iter_2 is complete
    assert 'iter_2.pth' not in names and 'iter_1.pth' in names
    # the half-written file is a temporary one, never a checkpoint name
    assert [n for n in names if n.startswith('iter_2.pth.tmp-')]
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'iter_1.pth')
    ckpt = _load(osp.join(work, 'iter_1.pth'))
    assert ckpt['meta']['iter'] == 1
    assert all(
        torch.isfinite(v).all() for v in ckpt['state_dict'].values()
        if v.is_floating_point())

    # --resume (cfg.resume with no load_from) finds it via last_checkpoint
    root, ann = coco
    cfg = runner_config(
        work,
        root,
        ann,
        max_iters=3,
        checkpoint=dict(interval=1, max_keep_ckpts=1))
    cfg.resume = True
    runner = _runner(cfg)
    runner.train()
    assert 'resumed epoch: 0, iter: 1' in read_logs(work)
    assert runner.iter == 3
    assert _load(osp.join(work, 'iter_3.pth'))['meta']['iter'] == 3
    # the resumed run prunes as usual, after each complete save
    assert sorted(n for n in os.listdir(work)
                  if n.endswith('.pth')) == ['iter_3.pth']


@pytest.mark.integration  # Runner
def test_plain_checkpoint_hook_loses_the_run(tmp_path, coco):
    """Control: mmengine's own hook, same kill. It deletes iter_1 before
    writing iter_2, so nothing valid is left (what the hook above fixes)."""
    cfg_path = _write_config(
        tmp_path,
        coco,
        'plain',
        checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1))
    work = str(tmp_path / 'plain')
    _kill_during_second_checkpoint(tmp_path, cfg_path, work)
    names = sorted(os.listdir(work))
    assert 'iter_1.pth' not in names and 'iter_2.pth' in names
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'iter_1.pth')  # gone
    with pytest.raises(Exception):
        _load(osp.join(work, 'iter_2.pth'))  # truncated


def test_atomic_write_replaces_whole_files(tmp_path):
    path = str(tmp_path / 'a' / 'f.bin')
    atomic_write(b'old', path)
    atomic_write(b'new content', path)
    with open(path, 'rb') as f:
        assert f.read() == b'new content'
    assert os.listdir(tmp_path / 'a') == ['f.bin']

    # a failing write leaves the old content and no temporary file
    with pytest.raises(TypeError):
        atomic_write(object(), path)  # type: ignore[arg-type]
    with open(path, 'rb') as f:
        assert f.read() == b'new content'
    assert os.listdir(tmp_path / 'a') == ['f.bin']


# ----------------------------------------------------------------------
# another class count
# ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def three_class_ckpt(tmp_path_factory, coco):
    work = str(tmp_path_factory.mktemp('robust_three'))
    root, ann = coco
    cfg = runner_config(
        work,
        root,
        ann,
        num_classes=3,
        max_iters=1,
        checkpoint=dict(interval=1))
    _runner(cfg).train()
    return osp.join(work, 'iter_1.pth')


@pytest.mark.integration  # Runner
def test_resume_with_another_class_count_is_a_clear_error(
        tmp_path, coco, three_class_ckpt):
    root, ann = coco
    cfg = runner_config(str(tmp_path), root, ann, num_classes=5, max_iters=2)
    cfg.resume = True
    cfg.load_from = three_class_ckpt
    runner = _runner(cfg)
    with pytest.raises(CheckpointMismatchError) as info:
        runner.train()
    msg = str(info.value)
    assert 'panoptic_head.cls_embed.weight: checkpoint (3, 32), model ' \
        '(5, 32)' in msg
    assert 'dn_generator.label_embedding.weight' in msg
    assert 'trained on 3 classes' in msg
    assert 'load_from=CHECKPOINT' in msg and 'without --resume' in msg


@pytest.mark.integration  # Runner
def test_fine_tune_from_another_class_count_with_load_from(
        tmp_path, coco, three_class_ckpt):
    # a checkpoint whose backbone is far from any fresh initialisation
    ckpt = _load(three_class_ckpt)
    ckpt['state_dict']['backbone.conv1.weight'] += 1.0
    marked = str(tmp_path / 'marked.pth')
    torch.save(ckpt, marked)
    root, ann = coco
    cfg = runner_config(str(tmp_path), root, ann, num_classes=5, max_iters=1)
    cfg.load_from = marked
    runner = _runner(cfg)
    runner.train()
    logs = read_logs(str(tmp_path))
    assert 'Fine-tuning: 3 checkpoint tensors do not fit the model' in logs
    assert 'trained on 3 classes' in logs
    # everything but the class-specific tensors was loaded (then moved by
    # one AdamW step of lr 1e-4)
    conv1 = runner.model.backbone.conv1.weight.detach().cpu()
    diff = (conv1 - ckpt['state_dict']['backbone.conv1.weight']).abs()
    assert float(diff.max()) < 3e-4
    head = runner.model.panoptic_head
    assert head.cls_embed.weight.shape == (5, 32)
    assert head.dn_generator.label_embedding.weight.shape == (5, 32)


@pytest.mark.integration  # Runner
def test_runner_never_runs_pickled_code(tmp_path, coco):
    marker = tmp_path / 'side_effect'

    class Payload:

        def __reduce__(self):
            return os.system, (f'touch {marker}', )

    ckpt = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=dict(x=Payload())), ckpt)
    root, ann = coco
    for resume in (False, True):
        cfg = runner_config(
            str(tmp_path / f'r{resume}'), root, ann, max_iters=1)
        cfg.load_from = ckpt
        cfg.resume = resume
        with pytest.raises(UnsafeCheckpointError) as info:
            _runner(cfg).train()
        assert ckpt in str(info.value) and 'posix.system' in str(info.value)
        assert not marker.exists()


@pytest.mark.integration  # Runner
def test_hook_is_wired_into_default_runtime(coco, tmp_path):
    root, ann = coco
    runner = _runner(runner_config(str(tmp_path), root, ann))
    types = [type(h).__name__ for h in runner.hooks]
    assert 'SafeCheckpointHook' in types and 'NonFiniteLossHook' in types
    assert 'SampleGuardHook' in types and 'CheckpointHook' not in types
    assert sum(isinstance(h, SafeCheckpointHook) for h in runner.hooks) == 1
