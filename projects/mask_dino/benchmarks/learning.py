"""The learning benchmark: the tiny Mask DINO next to MMDetection's own
Mask2Former and DINO, trained from scratch on the synthetic shapes dataset
on the CPU with the same backbone, image size, batch, iterations and lr
schedule, then evaluated on the held-out split and tabulated (command
line, stages and models: ``tools/benchmarks/learn_synthetic.py``).

The peers' configs are in ``configs/benchmarks/``; their adaptations
(Mask2Former's semantic output, DINO at any width) in :mod:`.peers`.
:func:`setup_differences` checks that each peer keeps Mask DINO's backbone,
transformer size, batch, pipelines and lr schedule.
"""
import contextlib
import json
import os
import os.path as osp
import time
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

# the demo's data preparation, schedule rescaling, progress hook and metric
# summary are reused as they are
from ..demo import end_to_end as demo
from .checkpoint import save_final_checkpoint

# the repository root: the configs are read from its configs/
REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
say = demo.say

MODEL_SPECS = {
    'maskdino':
    dict(
        title='Mask DINO (panoptic)',
        config='configs/maskdino_tiny_synthetic_panoptic.py'),
    'mask2former':
    dict(
        title='Mask2Former (panoptic)',
        config='configs/benchmarks/mask2former_tiny_synthetic_panoptic.py',
        reference='maskdino_panoptic_ref'),
    'dino':
    dict(
        title='DINO (boxes)',
        config='configs/benchmarks/dino_tiny_synthetic.py',
        reference='maskdino_instance_ref'),
    'maskdino_instance':
    dict(
        title='Mask DINO (instance)',
        config='configs/maskdino_tiny_synthetic_instance.py'),
    'maskdino_detection':
    dict(
        title='Mask DINO (boxes only)',
        config='configs/maskdino_tiny_synthetic_detection.py'),
}
DEFAULT_MODELS = ('maskdino', 'mask2former', 'dino')
# the Mask DINO config each peer must match in backbone, batch, image size
# and schedule
REFERENCES = {
    'maskdino_panoptic_ref': 'configs/maskdino_tiny_synthetic_panoptic.py',
    'maskdino_instance_ref': 'configs/maskdino_tiny_synthetic_instance.py',
}
BACKBONE_KEYS = ('depth', 'base_channels', 'norm_cfg', 'norm_eval',
                 'frozen_stages', 'init_cfg', 'style')
METRIC_COLUMNS = (('box_AP', 'box AP'), ('mask_AP', 'mask AP'), ('PQ', 'PQ'),
                  ('mIoU', 'mIoU'))
# Default --iters: at most 30 min of training for the tiny Mask DINO on an
# idle 2-core machine. Measured: 25.6 min with 2 threads (0.11 s/it, full
# run); with 1 thread 0.125 s of CPU time per iteration (40 iterations).
DEFAULT_ITERS = 14000


# ----------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------
def build_config(name: str, data_root: str, work_dir: str, iters: int,
                 seed: int) -> Config:
    """A benchmark model's config pointed at ``data_root``, ``work_dir``
    and an ``iters``-long schedule (evaluated once, after training)."""
    spec = MODEL_SPECS[name]
    path = osp.join(REPO, spec['config'])
    if not osp.isfile(path):
        raise FileNotFoundError(f'{name}: config {path} not found')
    cfg = Config.fromfile(path)
    new_root = data_root.rstrip('/') + '/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator'):
        cfg[key] = demo.retarget(cfg[key], demo.CONFIG_DATA_ROOT, new_root)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    # one visualizer instance per model (they are global by name)
    cfg.visualizer.name = f'learn_synthetic_{name}'
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    for key in ('val_evaluator', 'test_evaluator'):
        metrics = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        for metric in metrics:
            if metric.type in ('SemSegMetric', 'MaskDINOSemSegMetric'):
                metric.setdefault('prefix', 'sem_seg')
    demo.scale_schedule(cfg, iters)
    return cfg


def _pipeline_geometry(pipeline: list) -> list:
    """The train pipeline without its annotation loader (which differs
    between panoptic and instance data) as plain dicts."""
    return [
        t.to_dict() if isinstance(t, ConfigDict) else dict(t) for t in pipeline
        if 'Annotations' not in t['type']
    ]


def transformer_size(cfg: Config) -> dict:
    """Width, queries and layer counts of a MaskFormer-style model (Mask
    DINO, Mask2Former) or a DETR-style one (DINO)."""
    model = cfg.model
    if 'panoptic_head' in model:
        head = model.panoptic_head
        decoder = head.get('decoder') or head.get('transformer_decoder')
        encoder = head.pixel_decoder.encoder
        embed_dims = head.get('embed_dims') or head.get('feat_channels')
        num_queries = head.num_queries
    else:
        decoder, encoder = model.decoder, model.encoder
        embed_dims = encoder.layer_cfg.self_attn_cfg.embed_dims
        num_queries = model.num_queries
    return dict(
        embed_dims=embed_dims,
        num_queries=num_queries,
        encoder_layers=encoder.num_layers,
        decoder_layers=decoder.num_layers)


def shared_setup(cfg: Config) -> dict:
    """What every model of the benchmark must share with Mask DINO."""
    backbone = cfg.model.backbone
    return dict(
        backbone=dict(
            type=backbone.type, **{k: backbone.get(k)
                                   for k in BACKBONE_KEYS}),
        transformer=transformer_size(cfg),
        batch_size=cfg.train_dataloader.batch_size,
        train_pipeline=_pipeline_geometry(
            cfg.train_dataloader.dataset.pipeline),
        test_pipeline=_pipeline_geometry(cfg.test_dataloader.dataset.pipeline),
        lr=cfg.optim_wrapper.optimizer.lr,
        backbone_lr_mult=cfg.optim_wrapper.get('paramwise_cfg', {}).get(
            'custom_keys', {}).get('backbone', {}).get('lr_mult', 1.0),
        param_scheduler=[dict(s) for s in cfg.param_scheduler],
        max_iters=cfg.train_cfg.max_iters)


def setup_differences(cfg: Config, reference: Config) -> List[str]:
    """Human-readable differences in the shared setup, empty if none."""
    ours, ref = shared_setup(cfg), shared_setup(reference)
    return [
        f'{key}: {ours[key]} (Mask DINO: {ref[key]})' for key in ref
        if ours[key] != ref[key]
    ]


def describe_setup(cfg: Config) -> str:
    """One line: backbone, transformer size, batch and lr."""
    setup = shared_setup(cfg)
    bb, tr = setup['backbone'], setup['transformer']
    return (f'{bb["type"]}-{bb["depth"]} (stem {bb["base_channels"]} ch, '
            f'{bb["norm_cfg"]["type"]}, '
            f'{"from scratch" if not bb["init_cfg"] else "pretrained"}), '
            f'{tr["embed_dims"]}-d, {tr["encoder_layers"]} encoder + '
            f'{tr["decoder_layers"]} decoder layers, {tr["num_queries"]} '
            f'queries, batch {setup["batch_size"]}, lr {setup["lr"]:g}')


# ----------------------------------------------------------------------
# training and evaluation
# ----------------------------------------------------------------------
def train_and_test(cfg: Config, title: str, iters: int) -> dict:
    """Train one model with a progress display, then evaluate it.

    What the libraries print goes to ``stdout.txt`` and ``evaluation.txt``
    in its work dir.

    Returns:
        dict: Parameters, training figures and metrics.
    """
    os.makedirs(cfg.work_dir, exist_ok=True)
    with open(osp.join(cfg.work_dir, 'stdout.txt'), 'w') as f, \
            contextlib.redirect_stdout(f):
        runner = Runner.from_cfg(cfg)
        demo.console_warnings_only()
        n_params = sum(p.numel() for p in runner.model.parameters())
        say(f'      {cfg.model.type}: {n_params:,} parameters, batch '
            f'{cfg.train_dataloader.batch_size}, '
            f'{len(runner.train_dataloader.dataset)} training images, '
            f'{torch.get_num_threads()} thread(s); log '
            f'{osp.join(runner.log_dir, runner.timestamp)}.log')
        # a fixed number of iterations: no time budget, no schedule fitting
        hook = demo.DemoProgressHook(
            iters, budget_s=float('inf'), fit_after=iters + 1)
        runner.register_hook(hook)
        cpu_start = time.process_time()
        runner.train()
        cpu_seconds = time.process_time() - cpu_start
        checkpoint = save_final_checkpoint(runner, cfg.work_dir)
    done = len(hook.losses)
    say(f'      trained {done} iterations in {hook.seconds:.0f} s '
        f'({hook.seconds / max(done, 1):.2f} s/it); loss '
        f'{hook.losses[0]:.1f} -> {np.mean(hook.losses[-20:]):.1f}')
    start = time.time()
    eval_log = osp.join(cfg.work_dir, 'evaluation.txt')
    with open(eval_log, 'w') as f, contextlib.redirect_stdout(f):
        raw = runner.test()
    metrics = demo.summarise_metrics(raw)
    say('      ' + ' | '.join(f'{label} {demo.fmt(metrics[key])}'
                              for key, label in METRIC_COLUMNS) +
        f'  ({time.time() - start:.0f} s; tables in {eval_log})')
    return dict(
        title=title,
        config=osp.relpath(cfg.filename, REPO),
        checkpoint=checkpoint,
        parameters=n_params,
        iters=done,
        train_seconds=round(hook.seconds, 1),
        s_per_iter=round(hook.seconds / max(done, 1), 3),
        # CPU time of this process (all its threads): with one thread, the
        # wall time the run would take on an idle machine
        train_cpu_seconds=round(cpu_seconds, 1),
        eval_seconds=round(time.time() - start, 1),
        loss_first=hook.losses[0],
        loss_last20=float(np.mean(hook.losses[-20:])),
        metrics=metrics,
        raw_metrics={
            k: float(v)
            for k, v in raw.items()
        })


# ----------------------------------------------------------------------
# report
# ----------------------------------------------------------------------
def table_lines(results: Dict[str, dict]) -> List[str]:
    """The side-by-side markdown table."""
    lines = [
        '| model | parameters | iters | train time | s/it | CPU time | ' +
        ' | '.join(label for _, label in METRIC_COLUMNS) + ' |',
        '|---|---:|---:|---:|---:|---:|' + '---:|' * len(METRIC_COLUMNS)
    ]
    for res in results.values():
        m = res['metrics']
        lines.append(
            f'| {res["title"]} | {res["parameters"]:,} | {res["iters"]} | '
            f'{res["train_seconds"] / 60:.1f} min | {res["s_per_iter"]:.2f} '
            f'| {res["train_cpu_seconds"] / 60:.1f} min | ' +
            ' | '.join(demo.fmt(m[key]) for key, _ in METRIC_COLUMNS) + ' |')
    return lines


def write_report(report: dict, out_dir: str) -> None:
    """results.json (everything) and results.md (the table and how it was
    made)."""
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(report, f, indent=1)
    env, data = report['environment'], report['data']
    lines = [
        '# Learning benchmark on the synthetic shapes dataset', '',
        f'`{report["command"]}` ({report["date"]}, '
        f'{env["cpu_count"]} CPU core(s), {env["torch_threads"]} torch '
        f'thread(s), torch {env["torch"]}, mmdet {env["mmdet"]}).', '',
        f'Trained from scratch on {data["num_train"]} images, evaluated on '
        f'{data["num_val"]} held-out images of '
        f'{data["size"][0]}x{data["size"][1]} px (seed {data["seed"]}); '
        f'{report["iters"]} iterations each, the lr schedule of the tiny '
        'configs fitted to them (warm-up, x0.1 for the last 20%). AP in '
        'percent (COCO, things); PQ and mIoU over all 5 classes; n/a = '
        'the model has no such output.', ''
    ] + table_lines(
        report['results']) + ['', '| model | setup |', '|---|---|']
    lines += [
        f'| {res["title"]} | {res["setup"]} |'
        for res in report['results'].values()
    ] + ['']
    if report['setup_differences']:
        lines += ['Setup differences from Mask DINO:', ''] + [
            f'- {name}: {diff}'
            for name, diffs in report['setup_differences'].items()
            for diff in diffs
        ] + ['']
    if report['pending']:
        lines += [
            'Not run yet (interrupted or still running): ' +
            ', '.join(report['pending']), ''
        ]
    lines += [
        'Train time: wall time of the training loop (data loading '
        'included), on a machine that may be shared; CPU time: what this '
        'process used meanwhile, all threads (with one thread, about the '
        'wall time on an idle machine). The models share the iteration '
        'budget, not the time.', ''
    ]
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write('\n'.join(lines))


def run_learning_benchmark(models: Sequence[str] = DEFAULT_MODELS,
                           iters: int = DEFAULT_ITERS,
                           out_dir: str = osp.join(REPO, 'outputs',
                                                   'benchmarks',
                                                   'learn_synthetic'),
                           data_root: str = osp.join(REPO, 'data',
                                                     'synthetic'),
                           num_train: int = 200,
                           num_val: int = 50,
                           seed: int = 0,
                           threads: int = 1,
                           command: str = '') -> dict:
    """Generate (or reuse) the dataset, train and evaluate every model,
    print the table and write ``results.md`` / ``results.json`` to
    ``out_dir`` (rewritten after every model).

    Args:
        models (Sequence[str]): Keys of :data:`MODEL_SPECS`, run in this
            order.
        iters (int): Training iterations per model.
        out_dir (str): Where the results and work dirs go.
        data_root (str): Synthetic dataset root; generated there unless it
            holds one made with the same settings.
        num_train (int): Training images.
        num_val (int): Held-out images.
        seed (int): Seed of the dataset and of the training runs.
        threads (int): Torch threads.
        command (str): The command line, recorded in the report.

    Returns:
        dict: The report written to ``results.json``.
    """
    warnings.filterwarnings('ignore', message='.*meshgrid.*')
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    total_start = time.time()
    steps = len(models) + 1
    say(f'Learning benchmark: {", ".join(models)}, {iters} '
        f'iterations each; outputs go to {out_dir}')

    t0 = demo.stage(1, steps, 'synthetic dataset')
    data = demo.prepare_data(data_root, num_train, num_val, 128, seed)
    say(f'      {"reused" if data["reused"] else "generated"} '
        f'{data["root"]} ({num_train} training + {num_val} '
        f'held-out images, {time.time() - t0:.0f} s)')

    def config_of(name: str) -> Config:
        return build_config(name, data['root'],
                            osp.join(out_dir, 'work_dirs', name), iters,
                            seed)

    references = {}
    report = dict(
        date=time.strftime('%Y-%m-%d %H:%M'),
        command=command,
        data=data,
        iters=iters,
        results={},
        setup_differences={},
        pending=list(models),
        environment=demo.environment())
    for index, name in enumerate(models, start=2):
        spec = MODEL_SPECS[name]
        demo.stage(index, steps, f'{spec["title"]}: {spec["config"]}')
        cfg = config_of(name)
        ref_key = spec.get('reference')
        if ref_key:
            if ref_key not in references:
                references[ref_key] = Config.fromfile(
                    osp.join(REPO, REFERENCES[ref_key]))
                demo.scale_schedule(references[ref_key], iters)
            diffs = setup_differences(cfg, references[ref_key])
            if diffs:
                report['setup_differences'][name] = diffs
                for diff in diffs:
                    say(f'      WARNING: not as Mask DINO: {diff}')
        report['results'][name] = dict(
            train_and_test(cfg, spec['title'], iters),
            setup=describe_setup(cfg))
        report['pending'].remove(name)
        report['total_minutes'] = round((time.time() - total_start) / 60, 1)
        write_report(report, out_dir)

    say(f'\n{"":6}Results ({iters} iterations each):\n')
    for line in table_lines(report['results']):
        say('      ' + line)
    say(f'\nDone in {report["total_minutes"]:.1f} min: '
        f'{osp.join(out_dir, "results.md")}, '
        f'{osp.join(out_dir, "results.json")}')
    return report


def run_benchmark(models: Sequence[str] = DEFAULT_MODELS,
                  iters: int = DEFAULT_ITERS,
                  out_dir: str = osp.join(REPO, 'outputs', 'benchmarks',
                                          'learn_synthetic'),
                  data_root: str = osp.join(REPO, 'data', 'synthetic'),
                  seed: int = 0,
                  seeds: Optional[Sequence[int]] = None,
                  ablation: Optional[Sequence[str]] = None,
                  jobs: int = 1,
                  **kwargs) -> dict:
    """What ``tools/benchmarks/learn_synthetic.py`` runs: the single-run
    table of ``models``, or, with several ``seeds`` or with ``ablation``
    rows, their per-seed means (``seeds.md``) or the detection ablation
    (``ablation.md``).

    Args:
        models (Sequence[str]): Keys of :data:`MODEL_SPECS` (ignored with
            ``ablation``).
        iters (int): Training iterations per run.
        out_dir (str): Where the results and work dirs go.
        data_root (str): Synthetic dataset root.
        seed (int): Seed of the dataset (and of the single run).
        seeds (Sequence[int], optional): Training seeds; one seed alone
            trains a single run with it.
        ablation (Sequence[str], optional): Rows of
            :data:`.ablation.ABLATION_ROWS`.
        jobs (int): Runs at once for the seeded and ablation runs.
        **kwargs: ``num_train``, ``num_val``, ``threads`` and ``command``
            of :func:`run_learning_benchmark`.

    Returns:
        dict: The report written to ``results.json``, ``seeds.json`` or
        ``ablation.json``.
    """
    # imported here: the ablation builds on this module
    from . import ablation as abl
    if ablation is None and (not seeds or len(seeds) == 1):
        return run_learning_benchmark(
            models,
            iters,
            out_dir,
            data_root,
            seed=seeds[0] if seeds else seed,
            **kwargs)
    if ablation is not None:
        rows = {key: abl.ABLATION_ROWS[key] for key in ablation}
    else:
        rows = abl.headline_rows(models)
    return abl.run_seeded(
        rows,
        seeds or abl.DEFAULT_ABLATION_SEEDS,
        iters,
        out_dir,
        data_root,
        'ablation' if ablation is not None else 'seeds',
        data_seed=seed,
        jobs=jobs,
        baseline=abl.ABLATION_BASELINE if ablation is not None else None,
        **kwargs)
