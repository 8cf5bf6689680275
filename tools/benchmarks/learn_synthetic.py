"""Learning benchmark: the tiny Mask DINO next to MMDetection's own
Mask2Former and DINO, trained from scratch on the synthetic shapes dataset
on the CPU, same backbone, image size, batch, iterations and lr schedule.

Stages (each prints what it does and how long it took):

1. generate the synthetic dataset under ``data/synthetic/`` (200 training
   + 50 held-out images of 128x128), or reuse it;
2. for every model: train for ``--iters`` iterations (the configs' lr
   schedule rescaled to that length: warm-up, x0.1 for the last 20%) with
   the mmengine ``Runner``, then evaluate on the held-out split;
3. print the side-by-side table (model, parameters, iterations, training
   wall and CPU time, box AP, mask AP, PQ, mIoU) and write ``results.md`` and
   ``results.json`` to ``outputs/benchmarks/learn_synthetic/`` (rewritten
   after every model, so an interrupted run keeps what it measured).

Models (``--models``, in this order by default):

- ``maskdino``: ``configs/maskdino_tiny_synthetic_panoptic.py``, one model
  for box AP, mask AP (things), PQ and mIoU;
- ``mask2former``: ``configs/benchmarks/mask2former_tiny_synthetic_panoptic
  .py``, MMDetection's Mask2Former (panoptic; instance output for AP, no
  boxes of its own: box AP is that of its mask boxes), plus Mask2Former's
  semantic inference for mIoU (``SemanticMask2Former`` below; MMDetection
  has none);
- ``dino``: ``configs/benchmarks/dino_tiny_synthetic.py``, MMDetection's
  DINO, box AP only (``AnyWidthDINO`` below: MMDetection's DINO decoder
  only runs at 256-d);
- ``maskdino_instance`` (not run by default):
  ``configs/maskdino_tiny_synthetic_instance.py``, the things-only Mask DINO
  (the like-for-like peer of DINO).

Every model is the same size class: ResNet-18 at 1/8 width with GN from
scratch, 32-d transformer with 1 encoder and 3 decoder layers, 20 queries;
the script checks that the peers keep Mask DINO's backbone, transformer
size, batch, pipelines (image size) and lr schedule and reports any
difference.

Examples (from the repository root)::

    # the run of the README (58.6 min on an idle 2-core machine; Mask DINO
    # trains for 25.6 min of it)
    python tools/benchmarks/learn_synthetic.py --threads 2
    python tools/benchmarks/learn_synthetic.py --iters 20  # smoke run
    python tools/benchmarks/learn_synthetic.py --models maskdino dino \\
        maskdino_instance --iters 2000 --threads 2
"""
import argparse
import contextlib
import functools
import importlib.util
import json
import os
import os.path as osp
import shlex
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # configs import projects.mask_dino

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmdet.models.detectors import DINO, Mask2Former  # noqa: E402
from mmdet.models.layers.transformer import dino_layers  # noqa: E402
from mmdet.models.layers.transformer.utils import (  # noqa: E402
    coordinate_to_encoding)
from mmdet.models.seg_heads.panoptic_fusion_heads import (  # noqa: E402
    MaskFormerFusionHead)
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config, ConfigDict  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from torch import Tensor  # noqa: E402


def _load_tool(name: str, path: str):
    """Import a script of tools/ as a module (once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


# The demo's data preparation, schedule rescaling, progress hook and metric
# summary are reused as they are.
demo = _load_tool('run_demo', osp.join(REPO, 'tools', 'demo', 'run_demo.py'))
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
# Peer adaptations, used by the configs in configs/benchmarks/ (they load
# this file with `custom_imports`). Registered with force=True: the file
# runs both as __main__ and as the module the configs import.
# ----------------------------------------------------------------------
@MODELS.register_module(force=True)
class SemanticMaskFormerFusionHead(MaskFormerFusionHead):
    """:class:`MaskFormerFusionHead` that also returns Mask2Former's
    semantic segmentation (``semantic_inference`` of the Mask2Former paper
    code): per-class score maps ``sum_q softmax(cls_q)[c] * sigmoid(m_q)``,
    the no-object column dropped.

    The masks are cropped and resized exactly as for the panoptic and
    instance results of the parent class.
    """

    def semantic_postprocess(self, mask_cls: Tensor,
                             mask_pred: Tensor) -> PixelData:
        """Per-class semantic scores of one image.

        Args:
            mask_cls (Tensor): Class logits with the no-object column,
                shape (Q, C + 1).
            mask_pred (Tensor): Mask logits, shape (Q, H, W).

        Returns:
            :obj:`PixelData`: ``sem_seg`` of shape (C, H, W).
        """
        probs = F.softmax(mask_cls, dim=-1)[:, :-1]
        return PixelData(
            sem_seg=torch.einsum('qc,qhw->chw', probs, mask_pred.sigmoid()))

    def predict(self,
                mask_cls_results: Tensor,
                mask_pred_results: Tensor,
                batch_data_samples: Sequence,
                rescale: bool = False,
                **kwargs) -> List[dict]:
        """The parent's post-processing with ``semantic_on`` allowed.

        Args:
            mask_cls_results (Tensor): Shape (B, Q, C + 1).
            mask_pred_results (Tensor): Shape (B, Q, h, w) at the padded
                input size.
            batch_data_samples (list[:obj:`DetDataSample`]): Metainfo
                (``img_shape``, ``ori_shape``) of each image.
            rescale (bool): Return results at ``ori_shape``.

        Returns:
            list[dict]: ``pan_results``, ``ins_results`` and
            ``sem_results`` per image, as switched on in ``test_cfg``.
        """
        cfg = self.test_cfg
        results = []
        for mask_cls, mask_pred, sample in zip(mask_cls_results,
                                               mask_pred_results,
                                               batch_data_samples):
            img_h, img_w = sample.metainfo['img_shape'][:2]
            mask_pred = mask_pred[:, :img_h, :img_w]
            if rescale:
                mask_pred = F.interpolate(
                    mask_pred[:, None],
                    size=sample.metainfo['ori_shape'][:2],
                    mode='bilinear',
                    align_corners=False)[:, 0]
            result = dict()
            if cfg.get('panoptic_on', True):
                result['pan_results'] = self.panoptic_postprocess(
                    mask_cls, mask_pred)
            if cfg.get('instance_on', False):
                result['ins_results'] = self.instance_postprocess(
                    mask_cls, mask_pred)
            if cfg.get('semantic_on', False):
                result['sem_results'] = self.semantic_postprocess(
                    mask_cls, mask_pred)
            results.append(result)
        return results


@MODELS.register_module(force=True)
class SemanticMask2Former(Mask2Former):
    """:class:`Mask2Former` that stores semantic results as
    ``pred_sem_seg`` (argmax of the score maps), which ``SemSegMetric``
    reads; the parent refuses them."""

    def add_pred_to_datasample(self, data_samples: list,
                               results_list: List[dict]) -> list:
        semantic = [r.pop('sem_results', None) for r in results_list]
        data_samples = super().add_pred_to_datasample(data_samples,
                                                      results_list)
        for sample, sem in zip(data_samples, semantic):
            if sem is not None:
                sample.pred_sem_seg = PixelData(
                    sem_seg=sem.sem_seg.argmax(dim=0, keepdim=True))
        return data_samples


@contextlib.contextmanager
def _sine_features(num_feats: int):
    """Within the block, mmdet's DINO decoder encodes reference points with
    ``num_feats`` sine features per coordinate instead of its default 128
    (the function is looked up in ``dino_layers`` at call time)."""
    default = dino_layers.coordinate_to_encoding
    dino_layers.coordinate_to_encoding = functools.partial(
        coordinate_to_encoding, num_feats=num_feats)
    try:
        yield
    finally:
        dino_layers.coordinate_to_encoding = default


class AnyWidthDinoTransformerDecoder(dino_layers.DinoTransformerDecoder):
    """DINO's decoder with the reference-point sine embedding sized to the
    model: ``embed_dims // 2`` features per box coordinate, i.e.
    ``2 * embed_dims`` channels, the input width of ``ref_point_head``.

    MMDetection's decoder always uses 128 features (512 channels), so it
    only runs at ``embed_dims=256``, where the two are the same; Mask DINO's
    decoder sizes the embedding this way at every width.
    """

    def forward(self, *args, **kwargs):
        with _sine_features(self.embed_dims // 2):
            return super().forward(*args, **kwargs)


@MODELS.register_module(force=True)
class AnyWidthDINO(DINO):
    """:class:`DINO` with :class:`AnyWidthDinoTransformerDecoder`, so that
    it can be built narrower than 256-d (identical at 256-d)."""

    def _init_layers(self) -> None:
        decoder_cfg = self.decoder  # still the config here
        super()._init_layers()
        self.decoder = AnyWidthDinoTransformerDecoder(**decoder_cfg)


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
            if metric.type == 'SemSegMetric':
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
        # the trained weights, for tools/test.py or DetInferencer
        runner.save_checkpoint(
            cfg.work_dir,
            'model_final.pth',
            save_optimizer=False,
            save_param_scheduler=False,
            by_epoch=False)
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
        checkpoint=osp.join(cfg.work_dir, 'model_final.pth'),
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


# ----------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        '--models',
        nargs='+',
        default=list(DEFAULT_MODELS),
        choices=list(MODEL_SPECS),
        help=f'models to train, in this order (default: '
        f'{" ".join(DEFAULT_MODELS)})')
    parser.add_argument(
        '--iters',
        type=int,
        default=DEFAULT_ITERS,
        help='training iterations per model (default %(default)s: about '
        '30 min for Mask DINO with one thread on an idle machine)')
    parser.add_argument(
        '--out-dir',
        default=osp.join(REPO, 'outputs', 'benchmarks', 'learn_synthetic'))
    parser.add_argument(
        '--data-root',
        default=osp.join(REPO, 'data', 'synthetic'),
        help='synthetic dataset root; generated there unless it holds one '
        'made with the same settings')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (default %(default)s, for which the default '
        '--iters is sized; 2 may be faster on an idle 2-core machine)')
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f'--iters must be positive, got {args.iters}')
    if args.threads < 1:
        parser.error(f'--threads must be positive, got {args.threads}')
    if len(set(args.models)) != len(args.models):
        parser.error(f'--models lists a model twice: {args.models}')
    args.data_root = osp.abspath(args.data_root)
    args.out_dir = osp.abspath(args.out_dir)
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings('ignore', message='.*meshgrid.*')
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    command = 'python tools/benchmarks/learn_synthetic.py' + ''.join(
        ' ' + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    total_start = time.time()
    steps = len(args.models) + 1
    say(f'Learning benchmark: {", ".join(args.models)}, {args.iters} '
        f'iterations each; outputs go to {args.out_dir}')

    t0 = demo.stage(1, steps, 'synthetic dataset')
    data = demo.prepare_data(args.data_root, args.num_train, args.num_val, 128,
                             args.seed)
    say(f'      {"reused" if data["reused"] else "generated"} '
        f'{data["root"]} ({args.num_train} training + {args.num_val} '
        f'held-out images, {time.time() - t0:.0f} s)')

    def config_of(name: str) -> Config:
        return build_config(name, data['root'],
                            osp.join(args.out_dir, 'work_dirs', name),
                            args.iters, args.seed)

    references = {}
    report = dict(
        date=time.strftime('%Y-%m-%d %H:%M'),
        command=command,
        data=data,
        iters=args.iters,
        results={},
        setup_differences={},
        pending=list(args.models),
        environment=demo.environment())
    for index, name in enumerate(args.models, start=2):
        spec = MODEL_SPECS[name]
        demo.stage(index, steps, f'{spec["title"]}: {spec["config"]}')
        cfg = config_of(name)
        ref_key = spec.get('reference')
        if ref_key:
            if ref_key not in references:
                references[ref_key] = Config.fromfile(
                    osp.join(REPO, REFERENCES[ref_key]))
                demo.scale_schedule(references[ref_key], args.iters)
            diffs = setup_differences(cfg, references[ref_key])
            if diffs:
                report['setup_differences'][name] = diffs
                for diff in diffs:
                    say(f'      WARNING: not as Mask DINO: {diff}')
        report['results'][name] = dict(
            train_and_test(cfg, spec['title'], args.iters),
            setup=describe_setup(cfg))
        report['pending'].remove(name)
        report['total_minutes'] = round((time.time() - total_start) / 60, 1)
        write_report(report, args.out_dir)

    say(f'\n{"":6}Results ({args.iters} iterations each):\n')
    for line in table_lines(report['results']):
        say('      ' + line)
    say(f'\nDone in {report["total_minutes"]:.1f} min: '
        f'{osp.join(args.out_dir, "results.md")}, '
        f'{osp.join(args.out_dir, "results.json")}')
    return report


if __name__ == '__main__':
    main()
