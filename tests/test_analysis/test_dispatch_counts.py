"""projects/mask_dino/analysis/benchmark.py, DispatchCounter: operators and
host-synchronising calls counted exactly on small functions, and the counts
of ``benchmark.py --train`` on the tiny config."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from projects.mask_dino.analysis import benchmark
from projects.mask_dino.analysis import peers as benchmark_peers

TINY = osp.join(REPO, 'configs', 'maskdino_tiny_synthetic_instance.py')
THIS_FILE = osp.relpath(osp.abspath(__file__), REPO)


def three_items_and_a_nonzero(x):
    x.sum().item()
    x.max().item()
    x.min().item()
    torch.nonzero(x > 0)
    return (x * 2).sum()


def test_counts_of_a_known_function_forward_and_backward():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    counter = benchmark.DispatchCounter()
    with counter.count('forward'):
        loss = three_items_and_a_nonzero(x)
    with counter.count('backward'):
        loss.backward()
    res = counter.results()

    fwd = res['forward']
    assert fwd['ops_by_name'] == {
        'aten._local_scalar_dense.default': 3,  # the 3 item() calls
        'aten.sum.default': 2,
        'aten.max.default': 1,
        'aten.min.default': 1,
        'aten.gt.Scalar': 1,
        'aten.nonzero.default': 1,
        'aten.mul.Tensor': 1,
        'aten.detach.default': 2,  # autograd saves the max and the min
    }
    assert fwd['ops'] == 12 and fwd['views'] == 2
    # item() is counted once, not again as its _local_scalar_dense
    assert fwd['sync_kinds'] == {'Tensor.item': 3, 'aten::nonzero': 1}
    assert fwd['syncs'] == 4
    first = three_items_and_a_nonzero.__code__.co_firstlineno
    site = f'{THIS_FILE}:{{}} (three_items_and_a_nonzero)'
    assert fwd['sync_sites'] == [
        dict(site=site.format(first + 1), kind='Tensor.item', count=1),
        dict(site=site.format(first + 2), kind='Tensor.item', count=1),
        dict(site=site.format(first + 3), kind='Tensor.item', count=1),
        dict(site=site.format(first + 4), kind='aten::nonzero', count=1),
    ]

    # backward ops are seen: the gradient of x * 2 is a mul
    bwd = res['backward']
    assert bwd['ops_by_name'].get('aten.mul.Tensor') == 1
    assert bwd['syncs'] == 0
    assert x.grad.tolist() == [2.0, 2.0, 2.0]
    total = res['total']
    assert total['ops'] == fwd['ops'] + bwd['ops']
    assert total['sync_kinds'] == fwd['sync_kinds']


def _set_masked(x):
    y = x.clone()
    y[x > 0] = 0
    return y


SYNC_CASES = [
    (lambda x: bool(x[0] > 0), {'Tensor.__bool__': 1}),
    (lambda x: int(x[0]), {'Tensor.__int__': 1}),
    (lambda x: float(x[0]), {'Tensor.__float__': 1}),
    (lambda x: range(x[0].long()), {'Tensor.__index__': 1}),
    (lambda x: x.tolist(), {'Tensor.tolist': 1}),
    (lambda x: x.cpu().numpy(), {'Tensor.cpu': 1}),
    (lambda x: x.numpy(), {}),
    (lambda x: x.to('cpu'), {'Tensor.to (to host)': 1}),
    (lambda x: x.to(x.device), {}),
    (lambda x: x.to(torch.float64), {}),
    # host-to-device copies
    (lambda x: x.new_tensor([1, 2]), {'Tensor.new_tensor (to device)': 1}),
    (lambda x: x.new_tensor(x), {}),
    (lambda x: torch.tensor([1.0], device=x.device),
     {'torch.tensor (to device)': 1}),
    (lambda x: torch.tensor([1.0]), {}),
    (lambda x: torch.tensor([1.0], device='cpu'), {}),
    (lambda x: torch.as_tensor(np.arange(3), device=x.device),
     {'torch.as_tensor (to device)': 1}),
    (lambda x: torch.from_numpy(np.arange(3)).to(x.device),
     {'Tensor.to (to device)': 1}),
    (lambda x: torch.from_numpy(np.arange(3)).to(torch.float32), {}),
    # a dtype change keeps the tensor on the host
    (lambda x: torch.tensor([1, 2]).to(torch.float32).to(x),
     {'Tensor.to (to device)': 1}),
    (lambda x: x.cpu().to(x.device),
     {'Tensor.cpu': 1, 'Tensor.to (to device)': 1}),
    (lambda x: x[x > 0], {'aten::index (boolean mask)': 1}),
    (lambda x: x[torch.tensor([0, 2])], {}),
    (_set_masked, {'aten::index_put_ (boolean mask)': 1}),
    (lambda x: torch.where(x > 0), {'aten::nonzero': 1}),
    (lambda x: torch.masked_select(x, x > 0), {'aten::masked_select': 1}),
    (lambda x: torch.unique(x), {'aten::_unique2': 1}),
    (lambda x: torch.equal(x, x), {'aten::equal': 1}),
    (lambda x: torch.repeat_interleave(torch.tensor([1, 2])),
     {'aten::repeat_interleave (no output_size)': 1}),
    (lambda x: torch.repeat_interleave(
        x, torch.tensor([1, 2, 0]), output_size=3), {}),
    (lambda x: F.one_hot(torch.tensor([0, 2]), 3), {}),
    (lambda x: F.one_hot(torch.tensor([0, 2])),
     {'F.one_hot (no num_classes)': 1}),
    (lambda x: (x.topk(2).values * 2).sum(), {}),
]


@pytest.mark.parametrize('fn, kinds', SYNC_CASES)
def test_sync_kinds(fn, kinds):
    x = torch.tensor([1.0, -2.0, 3.0])
    counter = benchmark.DispatchCounter()
    with counter.count('run'):
        fn(x)
    res = counter.results()['run']
    assert res['sync_kinds'] == kinds
    assert res['syncs'] == sum(kinds.values())
    assert 'total' not in counter.results()  # one phase only


def test_counting_stops_at_the_end_of_the_block():
    counter = benchmark.DispatchCounter()
    with counter.count('run'):
        torch.ones(2).sum().item()
    torch.ones(2).sum().item()
    with counter.count('run'):  # a second block adds to the same phase
        torch.ones(2)
    # ones, sum, _local_scalar_dense; then ones
    assert counter.results()['run']['ops'] == 4
    assert counter.results()['run']['syncs'] == 1


def test_train_counts_on_the_tiny_config(tmp_path, capsys):
    out = tmp_path / 'counts.json'
    res = benchmark.run_benchmark(
        TINY, (64, 96), batch_size=2, train=True, num_gt=3, repeat=0,
        sync_sites=3, out=str(out))
    counts = res['counts']
    assert list(counts) == ['forward_loss', 'backward', 'total']
    fwd, bwd, total = counts['forward_loss'], counts['backward'], \
        counts['total']
    assert fwd['ops'] > 1000 and bwd['ops'] > 500
    assert 0 < fwd['views'] < fwd['ops']
    assert total['ops'] == fwd['ops'] + bwd['ops']
    # matching reads the cost matrices on the host
    assert fwd['syncs'] >= 1
    assert total['syncs'] == fwd['syncs'] + bwd['syncs']
    assert sum(s['count'] for s in fwd['sync_sites']) == fwd['syncs']
    sites = [s['site'] for s in fwd['sync_sites']]
    # constants filled on the device since #15
    assert not any('utils/point_ops.py' in s or 'utils/box_ops.py' in s
                   for s in sites)
    # a site in mmdet / mmcv names the project line that led there, also
    # where the environment lies inside the repository
    for site in sites:
        assert not site.startswith(('.venv', 'site-packages')), site
        if site.startswith(('mmdet/', 'mmcv/')):
            assert ' <- projects/mask_dino/' in site, site
    assert 'timing' not in res  # --repeat 0: counts only
    saved = json.loads(out.read_text())
    assert saved['counts']['total']['ops'] == total['ops']
    text = capsys.readouterr().out
    assert 'top host-sync sites, forward + losses' in text
    # 3 sites printed under the heading
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines)
                if line.startswith('top host-sync sites, forward'))
    assert lines[head + 1].split()[0] == str(fwd['sync_sites'][0]['count'])
    assert lines[head + 4].startswith('results written')


def test_site_paths_of_installed_packages():
    in_repo_env = osp.join(REPO, '.venv', 'lib', 'python3.11',
                           'site-packages', 'mmdet', 'x.py')
    assert benchmark._is_installed(in_repo_env)
    assert benchmark._short_path(in_repo_env) == osp.join('mmdet', 'x.py')
    own = osp.join(REPO, 'projects', 'mask_dino', 'utils', 'box_ops.py')
    assert not benchmark._is_installed(own)
    assert benchmark._short_path(own) == osp.join('projects', 'mask_dino',
                                                  'utils', 'box_ops.py')


def test_count_ops_is_repeatable_and_leaves_the_timing_alone():
    bench = benchmark.ModelBench(
        'tiny', TINY, (64, 96), batch_size=1, train=True, num_gt=2)
    first = bench.count_ops()
    second = bench.count_ops()
    for phase in ('forward_loss', 'backward'):
        assert first[phase]['ops_by_name'] == second[phase]['ops_by_name']
        assert first[phase]['sync_sites'] == second[phase]['sync_sites']
    assert not bench.records
    assert all(p.grad is None for p in bench.model.parameters())


def test_peer_count_table_ratios():

    def fake(name, fwd, bwd):
        return dict(
            name=name,
            counts=dict(
                forward_loss=dict(ops=fwd[0], syncs=fwd[1]),
                backward=dict(ops=bwd[0], syncs=bwd[1])))

    table = benchmark_peers.compare_counts(
        [fake('ours', (1000, 30), (400, 0)),
         fake('peer', (500, 10), (800, 2))])
    header, ours, peer, ratio = table.splitlines()
    assert header.split()[1:] == [
        'fwd+loss', 'ops', 'backward', 'ops', 'fwd+loss', 'syncs',
        'backward', 'syncs'
    ]
    assert ours.split()[1:] == ['1000', '400', '30', '0']
    assert ratio.split()[3:] == ['2.00', '0.50', '3.00', '-']
