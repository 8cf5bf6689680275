"""End-to-end tests of the launchers on the tiny synthetic instance config
(CPU): 2-process DDP with gloo, kill-and-resume, evaluation with
tools/test.py (and mmdet's own test.py, as ``mim test`` runs it), bf16
``--amp`` and the all-reduced loss normaliser."""
import json
import math
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, REPO, TINY_CONFIGS
from data_helpers import instance_config_on_new_data

# tools/train.py, test.py and dist_train.sh run as subprocesses
pytestmark = pytest.mark.integration
TOOLS = osp.join(REPO, 'tools')
CONFIG = osp.join(CONFIGS, TINY_CONFIGS['instance'])
TIMEOUT = 300

KILL_HOOK = '''
import os
import signal

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """SIGKILL this process when ``kill_iter`` iterations are done."""

    def __init__(self, kill_iter):
        self.kill_iter = kill_iter

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.kill_iter:
            os.kill(os.getpid(), signal.SIGKILL)
'''

NORMALISER_SCRIPT = '''
import json
import sys

import torch
import torch.distributed as dist
from mmengine.structures import InstanceData

sys.path.insert(0, {repo!r})
from projects.mask_dino.losses import MaskDINOCriterion

dist.init_process_group('gloo')
rank = dist.get_rank()
criterion = MaskDINOCriterion(
    num_classes=3,
    assigner=dict(
        type='HybridHungarianAssigner',
        match_costs=[dict(type='FocalLossCost')],
        box_match_costs=[]))
values = []
for counts in {cases}:
    labels = torch.zeros(counts[rank], dtype=torch.long)
    gts = [InstanceData(labels=labels)]
    values.append(criterion._get_num_total_gt(gts, torch.zeros(1)))
with open(sys.argv[1] + f'.{{rank}}', 'w') as f:
    json.dump(values, f)
dist.destroy_process_group()
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run(cmd, cwd, extra_env=None, timeout=TIMEOUT):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable)
    env.pop('PYTHONPATH', None)
    env.update(extra_env or {})
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def check(proc, rc=0):
    assert proc.returncode == rc, proc.stdout[-6000:]
    return proc.stdout


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """4 train / 2 val synthetic images and a config that points at them:
    4 iterations, a checkpoint every 2, no validation, seed 0,
    deterministic."""
    root = tmp_path_factory.mktemp('train_tools')
    data = instance_config_on_new_data(CONFIG, str(root), num_train=4,
                                       num_val=2)
    (root / 'tiny.py').write_text(data + '''
train_cfg = dict(max_iters=4, val_begin=1000)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=2, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
''')
    (root / 'kill_hook.py').write_text(KILL_HOOK)
    (root / 'tiny_kill.py').write_text('''
_base_ = './tiny.py'
custom_imports = dict(
    imports=[*_base_.custom_imports.imports, 'kill_hook'],
    allow_failed_imports=False)
custom_hooks = [dict(type='KillAtIterHook', kill_iter=3)]
''')
    return root


@pytest.fixture(scope='module')
def full_run(workspace):
    """An uninterrupted 4-iteration run (tools/train.py, one process)."""
    out = check(
        run([
            sys.executable,
            osp.join(TOOLS, 'train.py'), 'tiny.py', '--work-dir', 'full'
        ], workspace))
    return workspace / 'full', out


def load_state(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def train_losses(log_text):
    """Total loss of every logged training iteration."""
    return [
        float(v)
        for v in re.findall(r'Iter\(train\).*?  loss: (\S+)', log_text)
    ]


def test_full_run_logs_grouped_losses(full_run):
    work_dir, out = full_run
    assert sorted(p.name for p in work_dir.glob('*.pth')) == [
        'iter_2.pth', 'iter_4.pth'
    ]
    losses = train_losses(out)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    line = re.search(r'Iter\(train\) \[4/4\].*', out).group(0)
    for key in ('loss_cls', 'aux_loss', 'enc_loss', 'dn_loss', 'eta'):
        assert f'{key}: ' in line
    assert 'd0.loss_cls' not in line
    # all 45 terms are in the scalar backend
    scalars = [
        json.loads(s) for s in next(work_dir.glob(
            '*/vis_data/scalars.json')).read_text().splitlines()
    ]
    assert len(scalars) == 4
    terms = [
        k for k in scalars[-1] if re.match(r'(d\d\.)?(enc_|dn_)?loss_', k)
    ]
    assert len(terms) == 45
    assert scalars[-1]['aux_loss'] == pytest.approx(
        sum(v for k, v in scalars[-1].items() if re.match(r'd\d\.loss_', k)),
        rel=1e-6)


def test_kill_and_resume_matches_uninterrupted_run(workspace, full_run):
    full_dir, _ = full_run
    # SIGKILL at the start of iteration 4: iteration 3 is done but lost,
    # the checkpoint of iteration 2 is the last one
    killed = run([
        sys.executable,
        osp.join(TOOLS, 'train.py'), 'tiny_kill.py', '--work-dir', 'resumed'
    ], workspace, dict(PYTHONPATH=str(workspace)))
    assert killed.returncode == -9, killed.stdout[-3000:]
    resumed_dir = workspace / 'resumed'
    assert sorted(p.name for p in resumed_dir.glob('*.pth')) == ['iter_2.pth']
    out = check(
        run([
            sys.executable,
            osp.join(TOOLS, 'train.py'), 'tiny.py', '--work-dir', 'resumed',
            '--resume'
        ], workspace))
    assert 'resumed epoch: 0, iter: 2' in out
    # only iterations 3 and 4 were (re)done
    assert re.findall(r'Iter\(train\) \[(\d)/4\]', out) == ['3', '4']

    full = load_state(full_dir / 'iter_4.pth')
    resumed = load_state(resumed_dir / 'iter_4.pth')
    assert full['meta']['iter'] == resumed['meta']['iter'] == 4
    assert full['state_dict'].keys() == resumed['state_dict'].keys()
    mid = load_state(full_dir / 'iter_2.pth')['state_dict']
    moved = 0.0
    for name, value in full['state_dict'].items():
        diff = (resumed['state_dict'][name].double() - value.double()).abs()
        assert diff.max().item() <= 1e-6, name
        moved = max(moved,
                    (value.double() - mid[name].double()).abs().max().item())
    assert moved > 1e-5  # iterations 3-4 did change the weights
    # the optimizer state resumed too
    for full_s, res_s in zip(full['optimizer']['state'].values(),
                             resumed['optimizer']['state'].values()):
        torch.testing.assert_close(
            res_s['exp_avg'], full_s['exp_avg'], rtol=0, atol=1e-6)


def test_dist_train_two_processes_gloo(workspace):
    proc = run([
        'bash',
        osp.join(TOOLS, 'dist_train.sh'), 'tiny.py', '2', '--work-dir', 'dist',
        '--cfg-options', 'train_cfg.max_iters=3',
        'default_hooks.checkpoint.interval=3'
    ], workspace, dict(PORT=str(free_port())))
    out = check(proc)  # torchrun fails unless both ranks exit with 0
    assert out.count('using the gloo backend instead of nccl') == 2
    assert 'Distributed training: True' in out
    assert 'GPU number: 2' in out
    assert 'MMDistributedDataParallel' in out
    assert out.count('Saving checkpoint at 3 iterations') == 1
    work_dir = workspace / 'dist'
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_3.pth']
    ckpt = load_state(work_dir / 'iter_3.pth')
    assert ckpt['meta']['iter'] == 3
    losses = train_losses(out)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


def test_loss_normaliser_is_averaged_over_ranks(workspace):
    """num_masks = mean over ranks of the GT count, clamped to >= 1."""
    cases = [[3, 0], [0, 0], [5, 2]]  # GT count of rank 0, rank 1
    script = workspace / 'normaliser.py'
    script.write_text(NORMALISER_SCRIPT.format(repo=REPO, cases=cases))
    out_file = workspace / 'normaliser_out'
    check(
        run([
            sys.executable, '-m', 'torch.distributed.run',
            '--nproc_per_node=2', f'--master_port={free_port()}',
            str(script),
            str(out_file)
        ], workspace))
    for rank in range(2):
        values = json.loads((workspace / f'normaliser_out.{rank}').read_text())
        assert values == [1.5, 1.0, 3.5], rank


def test_test_py_prints_metrics(workspace, full_run):
    full_dir, _ = full_run
    out = check(
        run([
            sys.executable,
            osp.join(TOOLS, 'test.py'), 'tiny.py',
            str(full_dir / 'iter_4.pth'), '--work-dir', 'test_out', '--out',
            'preds.pkl'
        ], workspace))
    metrics = dict(re.findall(r'coco/(\w+): (-?[\d.]+)', out))
    for key in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50'):
        assert 0.0 <= float(metrics[key]) <= 1.0, key
    assert 'Iter(test) [1/1]' in out  # 2 val images, batch 2
    import pickle
    with open(workspace / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 2
    assert preds[0]['pred_instances']['masks'] is not None


def test_mmdet_test_py_as_mim_runs_it(workspace, full_run):
    """``mim test mmdet CONFIG --checkpoint X`` runs the installed mmdet's
    .mim/tools/test.py with sys.path[0] = that tools folder: the config's
    custom_imports then need the installed package (pip install -e .)."""
    import mmdet
    mmdet_test = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'tools', 'test.py')
    if not osp.isfile(mmdet_test):
        pytest.skip('mmdet was installed without its .mim tools')
    probe = run([sys.executable, '-c', 'import projects.mask_dino'],
                str(workspace))
    if probe.returncode != 0:
        pytest.skip('projects.mask_dino is not installed (pip install -e .)')
    full_dir, _ = full_run
    out = check(
        run([
            sys.executable, mmdet_test, 'tiny.py',
            str(full_dir / 'iter_4.pth'), '--work-dir', 'mim_out',
            '--launcher', 'none'
        ], workspace))
    assert re.search(r'coco/segm_mAP: [\d.]+', out)


def test_amp_on_cpu_trains_with_bf16(workspace):
    if torch.cuda.is_available():
        pytest.skip('checks the CPU (bf16) path of --amp')
    out = check(
        run([
            sys.executable,
            osp.join(TOOLS, 'train.py'), 'tiny.py', '--work-dir', 'amp',
            '--amp', '--cfg-options', 'train_cfg.max_iters=3',
            'default_hooks.checkpoint.interval=3'
        ], workspace))
    assert 'bfloat16 autocast' in out
    assert "type='BF16AmpOptimWrapper'" in out
    losses = train_losses(out)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    ckpt = load_state(workspace / 'amp' / 'iter_3.pth')
    assert all(
        torch.isfinite(v).all() for v in ckpt['state_dict'].values()
        if v.is_floating_point())
