"""projects/mask_dino/analysis (tools/analysis_tools/benchmark.py and
benchmark_peers.py): FLOP count of deformable attention, peak memory, stage
timing and the peer table, on tiny models."""
import copy
import os.path as osp
import time

import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from projects.mask_dino.analysis import benchmark
from projects.mask_dino.analysis import peers as benchmark_peers

TINY = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'maskdino_tiny_synthetic_instance.py')


def test_msda_flops_hand_count():
    attn = MultiScaleDeformableAttention(
        embed_dims=16, num_heads=2, num_levels=2, num_points=3,
        batch_first=True)
    model = nn.Sequential(attn)
    shapes = torch.tensor([[4, 4], [2, 2]])
    with benchmark.count_msda_flops(model) as total:
        attn(torch.randn(2, 5, 16), value=torch.randn(2, 20, 16),
             reference_points=torch.rand(2, 5, 2, 2), spatial_shapes=shapes,
             level_start_index=torch.tensor([0, 16]))
    # 2 images x 5 queries x 2 heads x 2 levels x 3 points = 120 samples of
    # 8 channels, 5 multiply-adds each
    assert total[0] == 120 * 8 * 5 * 2
    # hooks are removed afterwards
    assert not attn._forward_hooks


def test_peak_memory_sees_a_large_temporary():
    mem = benchmark.PeakMemory('cpu')
    with mem.measure():
        big = torch.ones(50 * 2**20)  # 200 MB, touched
        del big
    assert mem.delta > 150 * 2**20
    assert mem.peak >= mem.delta
    with mem.measure():
        torch.ones(2**10)
    assert mem.delta < 100 * 2**20


def test_stage_timer_hooks_and_wrappers():
    timer = benchmark.StageTimer('cpu')

    class Slow(nn.Module):

        def forward(self, x):
            time.sleep(0.02)
            return x

        def post(self, x):
            time.sleep(0.01)
            return x + 1

    m = Slow()
    timer.add_module('a', m)
    timer.add_method('b', m, 'post')
    assert m.post(m(1)) == 2
    assert 0.02 <= timer.times['wall']['a'] < 0.5
    assert 0.01 <= timer.times['wall']['b'] < 0.5
    # sleeping costs no CPU time
    assert timer.times['cpu']['a'] < 0.015
    timer.remove()
    timer.reset()
    m.post(m(1))
    assert not timer.times['wall']
    assert 'post' not in vars(m)


@pytest.mark.parametrize('train', [False, True])
def test_model_bench_on_the_tiny_config(train):
    bench = benchmark.ModelBench(
        'tiny', TINY, (64, 96), batch_size=2, train=train, num_gt=3)
    bench.run_once(record=False)
    bench.run_once()
    res = bench.results()
    stages = benchmark.TRAIN_STAGES if train else benchmark.STAGES
    for clock in ('timing', 'cpu_timing'):
        parts = sum(res[clock][k]['median'] for k in stages)
        assert parts == pytest.approx(res[clock]['total']['median'],
                                      rel=1e-6)
    for k in stages:
        assert res['timing'][k]['median'] > 0, k
    assert res['input_shape'] == [64, 96]
    assert res['params']['total'] == sum(
        p.numel() for p in bench.model.parameters())
    assert res['fps'] == pytest.approx(
        2 / res['timing']['total']['median'])
    table = benchmark.format_result(res)
    assert 'pixel decoder' in table and 'total' in table
    flops = bench.flops()
    assert flops['msda_sampling'] > 0
    assert flops['total'] == flops['dense'] + flops['msda_sampling']
    if train:
        # the iteration's count holds the backward: every trained product
        # counts again twice there (input and weight gradients)
        samples = copy.deepcopy(bench.samples)
        with FlopCounterMode(display=False) as forward:
            bench.model.loss(bench.inputs, samples)
        assert 2 * forward.get_total_flops() < flops['dense'] \
            < 3 * forward.get_total_flops()


def test_peer_table_ratios():

    def fake(name, total, mem, params, flops):
        stage = {k: dict(median=total / 4) for k in benchmark.STAGES}
        stage['total'] = dict(median=total)
        return dict(name=name, timing=stage, cpu_timing=stage,
                    peak_memory_delta_mb=mem, params=dict(total=params),
                    flops=dict(total=flops))

    table = benchmark_peers.compare(
        [fake('ours', 2.0, 300, 50e6, 4e11),
         fake('peer', 8.0, 600, 40e6, 2e11)], benchmark.STAGES)
    ratio = table.splitlines()[-1].split()
    assert ratio[:3] == ['ratio', '/', 'peer']
    # 4 stages and total: 0.25; memory 0.5; params 1.25; FLOPs 2.0
    assert ratio[3:] == ['0.25'] * 5 + ['0.50', '1.25', '2.00']


def test_shape_argument_parsing():
    assert benchmark_peers.parse_shape('800x1333') == (800, 1333)
    with pytest.raises(Exception, match='HxW'):
        benchmark_peers.parse_shape('800')


def test_timed_runs_are_apart_from_the_memory_run(monkeypatch):
    """Timed runs have no memory measurement around them (its heap release
    makes the next allocations page-fault); one memory run per model
    follows them."""
    bench = benchmark.ModelBench(
        'tiny', TINY, (64, 64), batch_size=1, train=True, num_gt=2)
    measured = []
    measure = benchmark.PeakMemory.measure

    def counting(self):
        measured.append(len(bench.records))
        return measure(self)

    monkeypatch.setattr(benchmark.PeakMemory, 'measure', counting)
    benchmark.run_interleaved([bench], warmup=1, repeat=2)
    assert len(bench.records) == 2 and measured == [2]
    assert len(bench.peaks) == 1 and bench.peaks[0][0] > 0
    assert bench.results()['peak_memory_mb'] == bench.peaks[0][0] / 2**20
