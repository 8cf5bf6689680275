"""The project's main demo (``make demo``, command line
``tools/demo/run_demo.py``): :func:`run_demo` generates the synthetic data,
trains the tiny panoptic Mask DINO on the CPU within a time budget
(:class:`DemoProgressHook`), evaluates it on the held-out split, predicts
on photographs and held-out images with the image demo
(:mod:`projects.mask_dino.apis.image_demo`) and writes ``report.md`` and
``report.json``.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import platform
import shutil
import sys
import time
import warnings
from collections import Counter
from typing import Dict, List, Optional

import cv2
import mmcv
import numpy as np
import torch
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmengine.structures import PixelData

from ..apis import image_demo
from ..benchmarks.checkpoint import save_final_checkpoint
from ..testing import synthetic_dataset

# the repository root: the config is read from its configs/, the report
# names files relative to it
REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONFIG = osp.join(REPO, 'configs', 'maskdino_tiny_synthetic_panoptic.py')
CONFIG_DATA_ROOT = 'data/synthetic/'  # what the tiny configs point at
OUTPUTS = ('train', 'inputs', 'photos', 'synthetic', 'report.md', 'report.json'
           )  # what this script writes to --out-dir
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
PHOTO_CREDITS = {
    'astronaut': 'Eileen Collins, NASA (public domain)',
    'coffee': 'Rachel Michetti (CC0)',
    'chelsea': 'Stefan van der Walt (CC0)',
    'rocket': 'SpaceX (public domain)',
}

CONSOLE = sys.stdout  # progress goes here while library output is captured


def say(msg: str = '') -> None:
    """Print a progress message at once."""
    print(msg, file=CONSOLE, flush=True)


def stage(index: int, total: int, title: str) -> float:
    say(f'\n[{index}/{total}] {title}')
    return time.time()


# ----------------------------------------------------------------------
# 1. data
# ----------------------------------------------------------------------
def prepare_data(root: str, num_train: int, num_val: int, size: int,
                 seed: int) -> dict:
    """Generate the dataset, or reuse one written with the same settings.

    Returns:
        dict: The generator's settings and whether it was reused.
    """
    wanted = dict(
        num_train=num_train, num_val=num_val, size=[size, size], seed=seed)
    marker = osp.join(root, synthetic_dataset.MARKER)
    if osp.isfile(marker):
        with open(marker) as f:
            found = json.load(f)
        if all(found.get(k) == v for k, v in wanted.items()):
            return dict(wanted, root=root, reused=True)
    synthetic_dataset.make_dataset(root, num_train, num_val, (size, size),
                                   seed)
    return dict(wanted, root=root, reused=False)


# ----------------------------------------------------------------------
# 2. training
# ----------------------------------------------------------------------
class DemoProgressHook(Hook):
    """Shows training progress (iteration, smoothed loss, speed, ETA) and
    keeps training within a time budget.

    After ``fit_after`` iterations it measures the speed; when the planned
    iterations do not fit in the budget, it shortens the run and its
    learning-rate schedule (milestones scaled alike) so that the lr still
    drops before the end. A run that slows down later is stopped when the
    budget is spent.

    Args:
        max_iters (int): Planned iterations.
        budget_s (float): Wall-clock budget for training, seconds.
        fit_after (int): Iterations timed before fitting the schedule.
        lines (int): Number of progress lines printed when the output is
            not a terminal (a live bar is shown when it is).
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 max_iters: int,
                 budget_s: float,
                 fit_after: int = 30,
                 lines: int = 20):
        self.max_iters = self.planned_iters = max_iters
        self.budget_s = budget_s
        self.fit_after = fit_after
        self.lines = lines
        self.every = max(1, max_iters // lines)
        self.losses: List[float] = []
        self.stopped_early = False
        self.bar = None

    def before_train(self, runner) -> None:
        self.start = time.time()
        if CONSOLE.isatty():
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                       TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self.bar = Progress(
                TextColumn('      train'),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn('{task.fields[info]}'),
                TimeElapsedColumn(),
                TextColumn('ETA'),
                TimeRemainingColumn(),
                console=Console(file=CONSOLE))
            self.task = self.bar.add_task(
                'train', total=self.max_iters, info='')
            self.bar.start()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        it = runner.iter + 1
        self.losses.append(float(torch.as_tensor(outputs['loss']).detach()))
        elapsed = time.time() - self.start
        if it == self.fit_after and it < self.max_iters:
            self.fit_schedule(runner, it, elapsed)
        self.show(it, elapsed)
        if elapsed > self.budget_s and it < self.max_iters:
            self.stopped_early = True
            runner.train_loop.stop_training = True
            say(f'      time budget of {self.budget_s / 60:.1f} min spent '
                f'at iteration {it}: stopping here')

    def show(self, it: int, elapsed: float) -> None:
        loss = float(np.mean(self.losses[-20:]))
        info = f'loss {loss:8.2f}  {elapsed / it:5.2f} s/it'
        if self.bar is not None:
            self.bar.update(self.task, completed=it, info=info)
        elif it == 1 or it % self.every == 0 or it == self.max_iters:
            eta = elapsed / it * (self.max_iters - it)
            say(f'      iter {it:5d}/{self.max_iters}  {info}  elapsed '
                f'{elapsed:4.0f} s  ETA {eta:4.0f} s')

    def fit_schedule(self, runner, it: int, elapsed: float) -> None:
        """Shorten the run and its lr schedule to fit the budget."""
        speed = elapsed / it
        fit = int(0.95 * self.budget_s / speed)
        if fit >= self.max_iters:
            return
        new = max(fit, it + 1)
        old = self.max_iters
        for sched in runner.param_schedulers:
            if sched.end >= old:
                sched.end = new
            if hasattr(sched, 'milestones'):
                sched.milestones = Counter({
                    max(it + 1, round(m * new / old)): n
                    for m, n in sched.milestones.items()
                })
        runner.train_loop._max_iters = new
        self.max_iters = new
        self.every = max(1, new // self.lines)
        if self.bar is not None:
            self.bar.update(self.task, total=new)
        say(f'      {speed:.2f} s/it on this machine: {old} iterations '
            f'would take {old * speed / 60:.1f} min, so the run and its lr '
            f'schedule are shortened to {new} iterations')

    def after_train(self, runner) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.seconds = time.time() - self.start


def retarget(node, old: str, new: str):
    """Replace the ``old`` path prefix by ``new`` in every string of a
    (nested) config node, in place for dicts and lists."""
    if isinstance(node, str):
        return new + node[len(old):] if node.startswith(old) else node
    if isinstance(node, dict):
        for key in list(node.keys()):
            node[key] = retarget(node[key], old, new)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            node[i] = retarget(item, old, new)
    return node


def scale_schedule(cfg: Config, iters: int) -> None:
    """Fit the config's iteration schedule (milestones, ends) to ``iters``
    and switch off validation and periodic checkpoints during training."""
    old = cfg.train_cfg.max_iters
    for sched in cfg.param_scheduler:
        if sched.get('end', 0) >= old:
            sched.end = iters
        if 'milestones' in sched:
            sched.milestones = [
                max(1, round(m * iters / old)) for m in sched.milestones
            ]
        elif sched.get('end', 0) > iters // 2:  # a warm-up
            sched.end = max(1, iters // 10)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_begin = iters + 1  # evaluated once, in stage 3
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook',
        interval=iters + 1,
        by_epoch=False,
        save_last=False)
    cfg.default_hooks.logger.interval = max(1, min(50, iters // 10))


def build_config(data_root: str, work_dir: str, iters: int,
                 seed: int) -> Config:
    """The tiny panoptic config pointed at ``data_root`` and the demo's
    work dir and schedule."""
    cfg = Config.fromfile(CONFIG)
    new_root = data_root.rstrip('/') + '/'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'test_evaluator'):
        retarget(cfg[key], CONFIG_DATA_ROOT, new_root)
    cfg.data_root = retarget(cfg.data_root, CONFIG_DATA_ROOT, new_root)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    for key in ('val_evaluator', 'test_evaluator'):
        metrics = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        for metric in metrics:
            if metric.type in ('SemSegMetric', 'MaskDINOSemSegMetric'):
                metric.setdefault('prefix', 'sem_seg')
    scale_schedule(cfg, iters)
    return cfg


class _DropNoise(logging.Filter):
    """Hide known harmless library warnings on the console (they stay in
    the log file)."""

    NOISE = ('FileClient', 'HardDiskBackend', 'registry tree')

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.NOISE)


def console_warnings_only() -> None:
    """The runner's log goes to its file; the console keeps warnings and
    errors next to this script's progress lines."""
    logger = MMLogger.get_current_instance()
    for handler in logger.handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(CONSOLE)
            handler.setLevel(logging.WARNING)
            handler.addFilter(_DropNoise())


def train(cfg: Config, iters: int, budget_s: float) -> tuple:
    """Build the runner and train; return it, the progress hook and the
    parameter count. What libraries print goes to ``stdout.txt``."""
    os.makedirs(cfg.work_dir, exist_ok=True)
    with open(osp.join(cfg.work_dir, 'stdout.txt'), 'w') as f, \
            contextlib.redirect_stdout(f):
        runner = Runner.from_cfg(cfg)
        console_warnings_only()
        n_params = sum(p.numel() for p in runner.model.parameters())
        say(f'      {cfg.model.type} from {osp.basename(CONFIG)}: '
            f'{n_params:,} parameters, batch '
            f'{cfg.train_dataloader.batch_size}, '
            f'{len(runner.train_dataloader.dataset)} training images, '
            f'{torch.get_num_threads()} thread(s)')
        say(f'      full log: '
            f'{osp.join(runner.log_dir, runner.timestamp)}.log')
        hook = DemoProgressHook(iters, budget_s)
        runner.register_hook(hook)
        runner.train()
    return runner, hook, n_params


# ----------------------------------------------------------------------
# 3. evaluation
# ----------------------------------------------------------------------
def summarise_metrics(raw: Dict[str, float]) -> Dict[str, float]:
    """Headline metrics in percent from the evaluators' keys."""

    def find(*names):
        for name in names:
            if name in raw:
                return float(raw[name])
        return float('nan')

    return dict(
        box_AP=100 * find('coco/bbox_mAP'),
        mask_AP=100 * find('coco/segm_mAP'),
        PQ=find('coco_panoptic/PQ'),
        SQ=find('coco_panoptic/SQ'),
        RQ=find('coco_panoptic/RQ'),
        PQ_things=find('coco_panoptic/PQ_th'),
        PQ_stuff=find('coco_panoptic/PQ_st'),
        mIoU=find('mIoU', 'sem_seg/mIoU'))


# ----------------------------------------------------------------------
# 4. predictions
# ----------------------------------------------------------------------
def write_photos(folder: str, names) -> List[str]:
    """Save scikit-image's bundled photographs as PNG inputs."""
    import skimage.data
    os.makedirs(folder, exist_ok=True)
    files = []
    for name in names:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        path = osp.join(folder, f'{name}.png')
        mmcv.imwrite(image[..., :3][..., ::-1], path)
        files.append(path)
    return files


def gt_panoptic(pan_json: dict, pan_dir: str, file_name: str, num_things: int,
                num_classes: int) -> np.ndarray:
    """A ground-truth panoptic PNG as ``label + instance * OFFSET`` (void =
    ``num_classes``), the encoding of the predictions."""
    ann = next(
        a for a in pan_json['annotations']
        if osp.splitext(a['file_name'])[0] == osp.splitext(file_name)[0])
    rgb = mmcv.imread(
        osp.join(pan_dir, ann['file_name']),
        channel_order='rgb').astype(np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    cat_to_label = {
        c['id']: i
        for i, c in enumerate(
            sorted(pan_json['categories'], key=lambda c: c['id']))
    }
    out = np.full(ids.shape, num_classes, np.int64)
    instance = 0
    for seg in ann['segments_info']:
        label = cat_to_label[seg['category_id']]
        if label < num_things:
            instance += 1
            out[ids == seg['id']] = label + instance * INSTANCE_OFFSET
        else:
            out[ids == seg['id']] = label
    return out


def titled(images: List[np.ndarray], titles: List[str]) -> np.ndarray:
    """Side-by-side pictures with a title above each."""
    height = max(im.shape[0] for im in images)
    panels = []
    for im, title in zip(images, titles):
        pad = np.full((height - im.shape[0], im.shape[1], 3), 255, np.uint8)
        head = np.full((28, im.shape[1], 3), 255, np.uint8)
        cv2.putText(head, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(np.concatenate([head, im, pad], 0))
        panels.append(np.full((height + 28, 6, 3), 255, np.uint8))
    return np.concatenate(panels[:-1], 1)


def compare_synthetic(demo: image_demo.ImageDemo, files: List[str],
                      pan_json_file: str, pan_dir: str,
                      out_dir: str) -> List[str]:
    """Input | ground truth | prediction (panoptic) for held-out images."""
    with open(pan_json_file) as f:
        pan_json = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for path in files:
        image = mmcv.imread(path, channel_order='rgb')
        sample = demo.predict(image)
        gt = gt_panoptic(pan_json, pan_dir, osp.basename(path),
                         demo.num_things, demo.num_classes)
        gt_sample = DetDataSample(metainfo=sample.metainfo)
        gt_sample.pred_panoptic_seg = PixelData(
            sem_seg=torch.from_numpy(gt)[None].int())
        factor = max(1, -(-demo.vis_size // max(image.shape[:2])))
        big = cv2.resize(
            image, (image.shape[1] * factor, image.shape[0] * factor),
            interpolation=cv2.INTER_CUBIC)
        pictures = [
            big,
            demo.draw(image, gt_sample, 'panoptic'),
            demo.draw(image, sample, 'panoptic'),
            demo.draw(image, sample, 'instance')
        ]
        out = osp.join(out_dir, osp.splitext(osp.basename(path))[0] + '.png')
        mmcv.imwrite(
            titled(pictures, [
                'input', 'ground truth (panoptic)', 'predicted panoptic',
                f'predicted instances (score > {demo.score_thr})'
            ])[..., ::-1], out)
        written.append(out)
    return written


def predict(cfg: Config, checkpoint: str, data: dict, out_dir: str,
            num_photos: int, num_synthetic: int, score_thr: float) -> dict:
    """Run the image demo on photographs and held-out synthetic images."""
    inferencer, tasks = image_demo.build_inferencer(
        cfg, checkpoint, device='cpu')
    result = {}
    photos = write_photos(
        osp.join(out_dir, 'inputs', 'photos'), PHOTOS[:num_photos])
    val_dir = osp.join(data['root'], 'coco', 'val2017')
    synthetic = sorted(osp.join(val_dir, n)
                       for n in os.listdir(val_dir))[:num_synthetic]
    for name, files in (('photos', photos), ('synthetic', synthetic)):
        folder = osp.join(out_dir, name)
        demo = image_demo.ImageDemo(inferencer, tasks, folder, score_thr)
        say(f'      {name}: {len(files)} image(s) -> {folder}/vis/'
            f'{{{",".join(tasks)}}}/')
        summary = demo.run(files, progress=CONSOLE.isatty())
        result[name] = dict(
            summary=osp.join(folder, 'summary.json'),
            images=summary['images'],
            seconds=summary['seconds'])
    ann = osp.join(data['root'], 'coco', 'annotations')
    compare_dir = osp.join(out_dir, 'synthetic', 'compare')
    result['compare'] = compare_synthetic(
        demo, synthetic, osp.join(ann, 'panoptic_val2017.json'),
        osp.join(ann, 'panoptic_val2017'), compare_dir)
    say(f'      ground truth vs prediction: {compare_dir}/')
    result['tasks'] = tasks
    return result


# ----------------------------------------------------------------------
# 5. report
# ----------------------------------------------------------------------
def environment() -> dict:
    import mmcv as _mmcv
    import mmdet
    import mmengine
    return dict(
        python=platform.python_version(),
        torch=torch.__version__,
        mmcv=_mmcv.__version__,
        mmengine=mmengine.__version__,
        mmdet=mmdet.__version__,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        machine=platform.machine(),
        system=platform.system())


def fmt(value: float) -> str:
    return 'n/a' if value != value else f'{value:.1f}'


def write_report(report: dict, out_dir: str) -> None:
    """report.json (everything) and report.md (for people)."""
    with open(osp.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    m, t, tr = report['metrics'], report['timings_s'], report['training']
    rel = lambda p: osp.relpath(p, REPO)  # noqa: E731
    lines = [
        '# Mask DINO demo report', '',
        f'Generated by `python tools/demo/run_demo.py` on '
        f'{report["date"]}; model `{rel(report["config"])}` (tiny Mask '
        f'DINO, {report["parameters"]:,} parameters, trained from scratch), '
        f'trained on the CPU ({report["environment"]["torch_threads"]} '
        'thread(s)).', '', '## Metrics on the held-out synthetic split', '',
        f'{report["data"]["num_val"]} images of '
        f'{report["data"]["size"][0]}x{report["data"]["size"][1]} px '
        f'never seen in training ({report["data"]["num_train"]} training '
        'images).', '',
        '| box AP | mask AP | PQ | PQ things | PQ stuff | SQ | RQ | mIoU |',
        '|---|---|---|---|---|---|---|---|',
        f'| {fmt(m["box_AP"])} | {fmt(m["mask_AP"])} | {fmt(m["PQ"])} | '
        f'{fmt(m["PQ_things"])} | {fmt(m["PQ_stuff"])} | {fmt(m["SQ"])} | '
        f'{fmt(m["RQ"])} | {fmt(m["mIoU"])} |', '',
        'A tiny model trained for minutes: these numbers show that '
        'training, inference and the COCO / panoptic / semantic '
        'evaluators work end to end; they are not comparable with the '
        'official COCO results (README, model zoo).', '', '## Training', '',
        f'{tr["iters_done"]} iterations (batch {tr["batch_size"]}) in '
        f'{tr["seconds"]:.0f} s ({tr["s_per_iter"]:.2f} s/iteration)' +
        (f'; {tr["iters_planned"]} were planned, the run and its lr '
         f'schedule were fitted to {tr["iters_scheduled"]} to stay within '
         f'the time budget'
         if tr['iters_scheduled'] < tr['iters_planned'] else '') +
        (', stopped by the time budget' if tr['stopped_early'] else '') +
        f'; loss {tr["loss_first"]:.1f} (first iteration) -> '
        f'{tr["loss_last20"]:.1f} (mean of the last 20).', '', '## Timings',
        '', '| stage | seconds |', '|---|---|'
    ] + [f'| {k} | {v:.1f} |' for k, v in t.items()] + [
        '',
        '## Files',
        '',
        f'- checkpoint: `{rel(report["checkpoint"])}` (loads with '
        '`init_detector(config, checkpoint)` / `DetInferencer`)',
        f'- training log: `{rel(report["log_dir"])}/`',
        f'- synthetic dataset: `{rel(report["data"]["root"])}/`',
    ]
    pred = report['predictions']
    for name in ('synthetic', 'photos'):
        lines.append(f'- {name}: pictures `{rel(osp.join(out_dir, name))}'
                     f'/vis/<task>/`, results `'
                     f'{rel(osp.join(out_dir, name))}/'
                     '{instance/results.json, panoptic/, semantic/}`')
    lines.append('- held-out synthetic images, input | ground truth | '
                 f'prediction: `{rel(osp.join(out_dir, "synthetic"))}'
                 '/compare/`')
    lines += ['', '## Predictions', '']
    for name in ('synthetic', 'photos'):
        for img in pred[name]['images']:
            lines.append(
                f'- {name} `{osp.basename(img["file"])}`: '
                f'{img.get("num_instances_above_thr", 0)} instance(s) '
                f'above {report["score_thr"]}, '
                f'{img.get("num_segments", 0)} panoptic segment(s), '
                f'classes in the semantic map: '
                f'{", ".join(img.get("semantic_classes", []))}')
    lines += [
        '', 'Photographs: scikit-image\'s bundled samples (' +
        '; '.join(f'{k}: {v}'
                  for k, v in PHOTO_CREDITS.items() if k in report['photos']) +
        '). The model only knows the '
        'synthetic classes, so on photographs it paints shapes and '
        'background regions, not real objects.', ''
    ]
    with open(osp.join(out_dir, 'report.md'), 'w') as f:
        f.write('\n'.join(lines))


def clean_previous_run(out_dir: str) -> None:
    """Remove what an earlier run of this script wrote to ``out_dir`` (it
    has a report.json), so no stale picture is left; nothing else."""
    if not osp.isfile(osp.join(out_dir, 'report.json')):
        return
    for name in OUTPUTS:
        path = osp.join(out_dir, name)
        if osp.isdir(path):
            shutil.rmtree(path)
        elif osp.isfile(path):
            os.remove(path)


# ----------------------------------------------------------------------
def run_demo(out_dir: str,
             data_root: str,
             num_train: int = 200,
             num_val: int = 50,
             iters: int = 2000,
             max_train_minutes: float = 8.0,
             num_photos: int = len(PHOTOS),
             num_synthetic: int = 6,
             score_thr: float = 0.3,
             seed: int = 0,
             threads: int = 1) -> dict:
    """Run the five stages and write the report to ``out_dir``.

    Args:
        out_dir (str): Output folder (absolute); what an earlier run wrote
            there is removed first.
        data_root (str): Synthetic dataset root (absolute), generated
            unless it holds one written with the same settings.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Held-out images. Defaults to 50.
        iters (int): Planned training iterations. Defaults to 2000.
        max_train_minutes (float): Time budget for training: fewer
            iterations (schedule shortened alike) on a slow machine.
            Defaults to 8.0.
        num_photos (int): Photographs to predict on. Defaults to all.
        num_synthetic (int): Held-out synthetic images to predict on.
            Defaults to 6.
        score_thr (float): Minimum instance score to draw. Defaults to 0.3.
        seed (int): Random seed of the data and the training. Defaults
            to 0.
        threads (int): Torch threads. Defaults to 1.

    Returns:
        dict: The report (also written as ``report.json``).
    """
    warnings.filterwarnings('ignore', message='.*meshgrid.*')
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    torch.set_num_threads(threads)
    clean_previous_run(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    timings, total_start = {}, time.time()
    say(f'Mask DINO demo: outputs go to {out_dir}')

    t0 = stage(1, 5, 'synthetic dataset')
    data = prepare_data(data_root, num_train, num_val, 128, seed)
    say(f'      {"reused" if data["reused"] else "generated"} '
        f'{data["root"]}: {num_train} training + {num_val} '
        'held-out images of 128x128 (COCO instance/panoptic, ADE20K, '
        'Cityscapes layouts)')
    timings['1 dataset'] = time.time() - t0

    t0 = stage(
        2, 5, f'training for {iters} iterations (at most '
        f'{max_train_minutes:g} min)')
    work_dir = osp.join(out_dir, 'train')
    cfg = build_config(data['root'], work_dir, iters, seed)
    runner, hook, n_params = train(cfg, iters, 60 * max_train_minutes)
    checkpoint = save_final_checkpoint(runner, work_dir)
    done = len(hook.losses)
    say(f'      {done} iterations in {hook.seconds:.0f} s '
        f'({hook.seconds / max(done, 1):.2f} s/it); loss '
        f'{hook.losses[0]:.1f} -> {np.mean(hook.losses[-20:]):.1f}; '
        f'checkpoint {checkpoint}')
    timings['2 training'] = time.time() - t0

    t0 = stage(3, 5, f'evaluation on {num_val} held-out images')
    eval_log = osp.join(work_dir, 'evaluation.txt')
    with open(eval_log, 'w') as f, contextlib.redirect_stdout(f):
        raw = runner.test()  # the COCO tables go to eval_log
    metrics = summarise_metrics(raw)
    say('      box AP {box_AP:.1f} | mask AP {mask_AP:.1f} | PQ {PQ:.1f} '
        '(things {PQ_things:.1f}, stuff {PQ_stuff:.1f}) | mIoU '
        '{mIoU:.1f}'.format(**metrics))
    say(f'      evaluator tables: {eval_log}')
    timings['3 evaluation'] = time.time() - t0

    t0 = stage(4, 5, 'predictions on photographs and held-out images')
    predictions = predict(cfg, checkpoint, data, out_dir, num_photos,
                          num_synthetic, score_thr)
    timings['4 predictions'] = time.time() - t0

    t0 = stage(5, 5, 'report')
    timings['total'] = time.time() - total_start
    report = dict(
        date=time.strftime('%Y-%m-%d %H:%M'),
        config=CONFIG,
        checkpoint=checkpoint,
        log_dir=runner.log_dir,
        parameters=n_params,
        data=data,
        training=dict(
            iters_planned=iters,
            iters_scheduled=hook.max_iters,
            iters_done=done,
            batch_size=cfg.train_dataloader.batch_size,
            seconds=hook.seconds,
            s_per_iter=hook.seconds / max(done, 1),
            stopped_early=hook.stopped_early,
            loss_first=hook.losses[0],
            loss_last20=float(np.mean(hook.losses[-20:]))),
        metrics=metrics,
        raw_metrics={
            k: float(v)
            for k, v in raw.items()
        },
        predictions=predictions,
        photos=list(PHOTOS[:num_photos]),
        score_thr=score_thr,
        timings_s={
            k: round(v, 1)
            for k, v in timings.items()
        },
        environment=environment())
    write_report(report, out_dir)
    say(f'      {osp.join(out_dir, "report.md")}\n'
        f'      {osp.join(out_dir, "report.json")}')
    say(f'\nDone in {timings["total"] / 60:.1f} min. Open '
        f'{osp.join(out_dir, "report.md")} and the pictures in '
        f'{osp.join(out_dir, "synthetic", "compare")}/')
    return report
