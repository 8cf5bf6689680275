"""Several seeds per model, and the detection ablation of the learning
benchmark (``tools/benchmarks/learn_synthetic.py --seeds`` /
``--ablation``).

Each row of a table is a benchmark model (:data:`.learning.MODEL_SPECS`)
with ``cfg-options``-style overrides; it is trained once per seed (the data
stay those of the benchmark's ``--seed``) and reported as mean ± std over
the seeds. The ablation rows take the things-only tiny Mask DINO and switch
one of its differences to DINO (``configs/benchmarks/dino_tiny_synthetic.py``)
at a time.
"""
import json
import math
import multiprocessing
import os
import os.path as osp
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import learning

HEAD = 'model.panoptic_head.'
CRITERION = HEAD + 'criterion.'
# cfg-options that each switch one difference of the things-only Mask DINO
# (configs/maskdino_tiny_synthetic_instance.py) to DINO's choice
DINO_OPTIMISER = {
    'optim_wrapper.clip_grad.max_norm': 0.1,
    'optim_wrapper.optimizer.weight_decay': 1e-4,
}
ENCODER_ANCHORS = {HEAD + 'initialize_box_type': 'no'}
# the classification cost alone (the instance config's first cost)
NO_MASK_COSTS = {
    CRITERION + 'assigner.match_costs':
    [dict(type='FocalLossCost', weight=4.0, eps=1e-8)]
}
# DINO scores a box by its class alone; Mask DINO multiplies in the mean
# foreground probability of its mask
BOX_SCORES = {'model.test_cfg.focus_on_box': True}
ZERO_MASK_LOSSES = {
    CRITERION + 'loss_mask.loss_weight': 0.0,
    CRITERION + 'loss_dice.loss_weight': 0.0,
}
# Without mask losses the mask branch is untrained, so matching on its masks,
# anchors from them or scores weighted by them would be noise: detection-only
# training drops all of these. The mask branch still runs (losses weighted
# by 0); configs/maskdino_tiny_synthetic_detection.py is the same model
# without it (MaskDINOHead(with_mask=False); the test checks that the keys
# both set agree).
DETECTION_ONLY = {
    **ZERO_MASK_LOSSES,
    **NO_MASK_COSTS,
    **ENCODER_ANCHORS,
    **BOX_SCORES,
}
# DINO's CdnQueryGenerator: box noise 1.0 (Mask DINO: noise_scale 0.4 for
# both boxes and labels; labels are flipped with p = noise_scale / 2)
DINO_DN_NOISE = {HEAD + 'dn_cfg.noise_scale': 1.0}
# DINO: focal loss weight 1 and focal cost 2 (Mask DINO: 4 and 4)
DINO_CLS_WEIGHTS = {
    CRITERION + 'loss_cls.loss_weight': 1.0,
    CRITERION + 'assigner.match_costs.0.weight': 2.0,
}

ABLATION_ROWS = {
    'dino':
    dict(title='DINO (boxes)', model='dino', options={}),
    'maskdino_instance':
    dict(title='Mask DINO (instance)', model='maskdino_instance', options={}),
    'optimiser':
    dict(
        title="+ DINO's optimiser (clip 0.1, wd 1e-4)",
        model='maskdino_instance',
        options=DINO_OPTIMISER),
    'anchors':
    dict(
        title='+ anchors from encoder boxes (no mask2box)',
        model='maskdino_instance',
        options=ENCODER_ANCHORS),
    'mask_costs':
    dict(
        title='+ matching without mask costs',
        model='maskdino_instance',
        options=NO_MASK_COSTS),
    'box_scores':
    dict(
        title='+ scores from the classes alone (focus_on_box)',
        model='maskdino_instance',
        options=BOX_SCORES),
    'mask_losses':
    dict(
        title='+ no mask losses (so no mask costs, encoder anchors, class scores)',
        model='maskdino_instance',
        options=DETECTION_ONLY),
    'dn':
    dict(
        title="+ DINO's DN box noise (1.0)",
        model='maskdino_instance',
        options=DINO_DN_NOISE),
    'cls_weights':
    dict(
        title="+ DINO's class weights (loss 1, cost 2)",
        model='maskdino_instance',
        options=DINO_CLS_WEIGHTS),
}
ABLATION_BASELINE = 'maskdino_instance'
DEFAULT_ABLATION_SEEDS = (0, 1, 2)
METRICS = (('box_AP', 'box AP'), ('mask_AP', 'mask AP'))


def headline_rows(models: Sequence[str]) -> Dict[str, dict]:
    """Rows of the plain benchmark models, without overrides."""
    return {
        name: dict(
            title=learning.MODEL_SPECS[name]['title'],
            model=name,
            options={})
        for name in models
    }


def run_job(job: dict) -> dict:
    """Train and evaluate one row with one seed (in a worker process when
    several run at once).

    Args:
        job (dict): ``key``, ``title``, ``model``, ``options`` (the row),
            ``seed``, ``iters``, ``threads``, ``data_root`` and
            ``work_dir``.

    Returns:
        dict: :func:`.learning.train_and_test`'s result plus ``key`` and
        ``seed``.
    """
    warnings.filterwarnings('ignore', message='.*meshgrid.*')
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    torch.set_num_threads(job['threads'])
    cfg = learning.build_config(job['model'], job['data_root'],
                                job['work_dir'], job['iters'], job['seed'])
    cfg.merge_from_dict(job['options'])
    # visualizers are global by name: one per run
    cfg.visualizer.name = f'learn_synthetic_{job["key"]}_{job["seed"]}'
    learning.say(f'   {job["key"]}, seed {job["seed"]}: {job["title"]}')
    result = learning.train_and_test(
        cfg, f'{job["title"]} (seed {job["seed"]})', job['iters'])
    return dict(result, key=job['key'], seed=job['seed'])


def mean_std(values: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (nan for fewer than two values
    or when a value is nan)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return float(arr.mean()), std


def fmt_mean_std(mean: float, std: float) -> str:
    """``62.3 ± 1.2``; the mean alone without a spread; n/a for nan."""
    if mean != mean:
        return 'n/a'
    return f'{mean:.1f}' if std != std else f'{mean:.1f} ± {std:.1f}'


def summarise(rows: Dict[str, dict], runs: List[dict]) -> Dict[str, dict]:
    """Per row: its seeds, mean and std of each metric, mean s/it."""
    summary = {}
    for key, row in rows.items():
        done = sorted((r for r in runs if r['key'] == key),
                      key=lambda r: r['seed'])
        entry = dict(title=row['title'], seeds=[r['seed'] for r in done])
        for metric, _ in METRICS:
            entry[metric] = mean_std([r['metrics'][metric] for r in done])
        entry['s_per_iter'] = float(
            np.mean([r['s_per_iter'] for r in done])) if done else math.nan
        summary[key] = entry
    return summary


def table_lines(summary: Dict[str, dict],
                baseline: Optional[str] = None) -> List[str]:
    """The markdown table (with the box AP change from ``baseline``)."""
    head = '| row | seeds | ' + ' | '.join(label for _, label in METRICS)
    rule = '|---|---|' + '---:|' * len(METRICS)
    if baseline:
        head += ' | Δ box AP'
        rule += '---:|'
    lines = [head + ' | s/it |', rule + '---:|']
    base = summary.get(baseline, {}).get('box_AP', (math.nan, ))[0]
    for entry in summary.values():
        cells = [entry['title'], ' '.join(map(str, entry['seeds'])) or '-']
        cells += [fmt_mean_std(*entry[m]) for m, _ in METRICS]
        if baseline:
            delta = entry['box_AP'][0] - base
            cells.append('n/a' if delta != delta else f'{delta:+.1f}')
        s_it = entry['s_per_iter']
        cells.append('n/a' if s_it != s_it else f'{s_it:.2f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def write_report(report: dict, out_dir: str, name: str) -> None:
    """``<name>.json`` (every run) and ``<name>.md`` (the table)."""
    with open(osp.join(out_dir, f'{name}.json'), 'w') as f:
        json.dump(report, f, indent=1)
    env, data = report['environment'], report['data']
    lines = [
        f'# Learning benchmark: {name}', '',
        f'`{report["command"]}` ({report["date"]}, {env["cpu_count"]} CPU '
        f'core(s), {report["threads"]} torch thread(s) per run, '
        f'{report["jobs"]} run(s) at once, torch {env["torch"]}, mmdet '
        f'{env["mmdet"]}).', '',
        f'{report["iters"]} iterations per run, the lr schedule fitted to '
        f'them; {data["num_train"]} training / {data["num_val"]} held-out '
        f'images (data seed {data["seed"]}); training seeds '
        f'{" ".join(map(str, report["seeds"]))}; mean ± sample std over the '
        'seeds; AP in percent (COCO, 3 thing classes).', ''
    ] + table_lines(report['summary'], report.get('baseline')) + ['']
    for key, row in report['rows'].items():
        if row['options']:
            lines.append(f'- {row["title"]}: `{row["options"]}`')
    if report['pending']:
        lines += [
            '', 'Not run (interrupted or still running): ' +
            ', '.join(f'{k} seed {s}' for k, s in report['pending'])
        ]
    with open(osp.join(out_dir, f'{name}.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def run_seeded(rows: Dict[str, dict],
               seeds: Sequence[int],
               iters: int,
               out_dir: str,
               data_root: str,
               name: str,
               num_train: int = 200,
               num_val: int = 50,
               data_seed: int = 0,
               threads: int = 1,
               jobs: int = 1,
               baseline: Optional[str] = None,
               command: str = '') -> dict:
    """Train every row with every seed (all rows of a seed before the next
    seed, so an interrupted run still has whole seeds), ``jobs`` runs at
    once, and write ``<name>.md`` / ``<name>.json`` to ``out_dir`` after
    every run.

    Args:
        rows (dict): Row key -> ``title``, ``model`` (a key of
            :data:`.learning.MODEL_SPECS`) and ``options`` (cfg-options).
        seeds (Sequence[int]): Training seeds.
        iters (int): Training iterations per run.
        out_dir (str): Where the report and the work dirs go.
        data_root (str): Synthetic dataset root (generated if needed).
        name (str): Report name (``seeds`` or ``ablation``).
        num_train (int): Training images.
        num_val (int): Held-out images.
        data_seed (int): Seed of the dataset.
        threads (int): Torch threads per run.
        jobs (int): Runs at once (each in its own process when above 1).
        baseline (str, optional): Row the box AP changes are taken from.
        command (str): The command line, recorded in the report.

    Returns:
        dict: The report written to ``<name>.json``.
    """
    for key, row in rows.items():
        if row['model'] not in learning.MODEL_SPECS:
            raise KeyError(f'row {key}: unknown model {row["model"]!r}')
    if jobs < 1 or threads < 1:
        raise ValueError(f'jobs and threads must be positive, got {jobs} '
                         f'and {threads}')
    torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    learning.say(f'{name}: {len(rows)} rows x {len(seeds)} seeds, {iters} '
                 f'iterations each, {jobs} at once; outputs go to {out_dir}')
    data = learning.demo.prepare_data(data_root, num_train, num_val, 128,
                                      data_seed)
    todo = [
        dict(
            row,
            key=key,
            seed=seed,
            iters=iters,
            threads=threads,
            data_root=data['root'],
            work_dir=osp.join(out_dir, 'work_dirs', f'{key}_seed{seed}'))
        for seed in seeds for key, row in rows.items()
    ]
    report = dict(
        date=time.strftime('%Y-%m-%d %H:%M'),
        command=command,
        data=data,
        iters=iters,
        seeds=list(seeds),
        threads=threads,
        jobs=jobs,
        baseline=baseline,
        rows=rows,
        runs=[],
        pending=[[job['key'], job['seed']] for job in todo],
        environment=learning.demo.environment())

    def record(result: dict) -> None:
        report['runs'].append(result)
        report['pending'].remove([result['key'], result['seed']])
        report['summary'] = summarise(rows, report['runs'])
        report['total_minutes'] = round((time.time() - start) / 60, 1)
        write_report(report, out_dir, name)

    report['summary'] = summarise(rows, [])
    write_report(report, out_dir, name)
    if jobs == 1:
        for job in todo:
            record(run_job(job))
    else:
        # a fresh process per run: mmengine's registries and loggers are
        # global, and the processes do not share torch's thread pool
        with ProcessPoolExecutor(
                max_workers=jobs,
                mp_context=multiprocessing.get_context('spawn'),
                max_tasks_per_child=1) as pool:
            futures = {pool.submit(run_job, job): job for job in todo}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    record(future.result())
                except Exception as error:  # keep the other runs
                    learning.say(f'   {job["key"]}, seed {job["seed"]} '
                                 f'FAILED: {error!r}')

    learning.say(f'\n{name} ({iters} iterations per run):\n')
    for line in table_lines(report['summary'], baseline):
        learning.say('      ' + line)
    learning.say(f'\nDone in {report["total_minutes"]:.1f} min: '
                 f'{osp.join(out_dir, name + ".md")}')
    return report
