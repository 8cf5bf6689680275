"""Speed, memory, parameters and FLOPs of a detector.

Inference (default): ``model.predict`` on a synthetic batch, the way
mmengine's test loop calls it (``torch.no_grad``, data already
pre-processed), timed after warm-up and split into stages:

- ``backbone``: the backbone (and neck, if any);
- ``pixel_decoder``: Mask DINO / Mask2Former pixel decoder, or the
  transformer encoder of DETR-like detectors;
- ``decoder_heads``: everything else up to the raw predictions (query
  selection, transformer decoder, prediction heads);
- ``postprocess``: the fusion head's ``predict`` (masks resized to the
  image, top-k, panoptic merge) or ``bbox_head.predict_by_feat``.

``--train`` times one training iteration instead: forward, matching and
losses (``model.loss``), then ``backward`` (no optimizer step), with the
``matching`` stage (every ``assigner.assign`` call, or Mask DINO's batched
``_match_sets``) reported separately.

Memory: peak RSS on CPU (``VmHWM`` of ``/proc/self/status``, reset before
every run; RSS sampling where that is unavailable), ``max_memory_allocated``
on CUDA; reported as the absolute peak and as the increase over the idle
process (model and inputs loaded). FLOPs: ``torch.utils.flop_counter``
(2 per multiply-add; convolutions, matmuls, einsums) plus the bilinear
sampling of deformable attention, which no counter sees (5 multiply-adds
per sampled channel: 4 corners and the attention weight). Without
``--checkpoint`` the weights are random (``init_weights``, no pretrained
backbone), which is enough for speed; data-dependent steps (panoptic
merge) may differ with trained weights.

Operators and host syncs (:class:`DispatchCounter`): one more run after
the timed ones counts the aten operators dispatched and the calls that make
the host wait for the device on CUDA (``.item()``, ``.cpu()``,
``nonzero``, boolean-mask indexing, blocking host-to-device copies, ...;
:data:`SYNC_METHODS`, :data:`HOST_DATA_FACTORIES`, :func:`sync_op_kind`),
with the Python lines that make them, separately for
forward + losses and backward. Counted on any device, they stand in for GPU
efficiency where no GPU is measured.

Front ends: ``tools/analysis_tools/benchmark.py`` (one model, see
:func:`run_benchmark`) and ``tools/analysis_tools/benchmark_peers.py``
(:mod:`.peers`).
"""
import copy
import ctypes
import gc
import json
import logging
import os
import os.path as osp
import platform
import re
import statistics
import sys
import threading
import time
import weakref
from collections import Counter, defaultdict
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.structures import InstanceData, PixelData
from mmengine.utils import import_modules_from_strings
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

STAGES = ('backbone', 'pixel_decoder', 'decoder_heads', 'postprocess')
TRAIN_STAGES = ('backbone', 'pixel_decoder', 'matching', 'decoder_heads',
                'backward')
STAGE_TITLES = dict(
    backbone='backbone (+neck)',
    pixel_decoder='pixel decoder / encoder',
    decoder_heads='decoder + heads',
    postprocess='post-processing',
    matching='matching',
    backward='backward',
    total='total')
PHASE_TITLES = dict(
    forward_loss='forward + losses',
    backward='backward',
    predict='predict',
    total='total')
MB = 1024.0**2


# ----------------------------------------------------------------------
# model and data
# ----------------------------------------------------------------------
def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file, or an MMDetection one as ``mmdet::rel/path``."""
    if '::' in path:
        from mmengine.hub import get_config
        cfg = get_config(path)
    else:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file not found: {path}')
        cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'{path} has no "model" field')
    return cfg


def build_detector(cfg: Config,
                   checkpoint: Optional[str] = None,
                   device: str = 'cpu') -> nn.Module:
    """Build ``cfg.model`` for benchmarking.

    The data preprocessor's ``batch_augments`` (LSJ fixed-size padding)
    are dropped so that the input is exactly the requested shape (padded
    to the size divisor); without a checkpoint the backbone's pretrained
    init is switched off and the model keeps its own random init.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    model_cfg = copy.deepcopy(cfg.model)
    if model_cfg.get('data_preprocessor') is not None:
        model_cfg.data_preprocessor['batch_augments'] = None
    if checkpoint is None and 'backbone' in model_cfg:
        model_cfg.backbone['init_cfg'] = None
    model = MODELS.build(model_cfg)
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
        load_checkpoint(model, checkpoint, map_location='cpu')
    else:
        with _quiet_logger():
            model.init_weights()
    return model.to(device)


@contextmanager
def _quiet_logger() -> Iterator[None]:
    """Silence mmengine's per-parameter init report."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def class_counts(model: nn.Module) -> Tuple[int, int]:
    """(thing, stuff) class counts of a MaskFormer- or DETR-like model."""
    head = getattr(model, 'panoptic_head', None)
    if head is not None and hasattr(head, 'num_things_classes'):
        return int(head.num_things_classes), int(head.num_stuff_classes)
    head = getattr(model, 'bbox_head', None)
    if head is not None and hasattr(head, 'num_classes'):
        return int(head.num_classes), 0
    raise AttributeError(f'{type(model).__name__}: cannot find the number '
                         'of classes (no panoptic_head / bbox_head)')


def _synthetic_image(h: int, w: int, rng: np.random.Generator) -> Tensor:
    """A smooth random uint8 image (3, h, w) (low-frequency colour blobs
    plus noise), so that nothing is trivially constant."""
    coarse = rng.uniform(0, 255, (3, max(h // 32, 1), max(w // 32, 1)))
    img = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None].float(), size=(h, w),
        mode='bilinear')[0]
    img = img + torch.from_numpy(rng.normal(0, 20, (3, h, w))).float()
    return img.clamp(0, 255).to(torch.uint8)


def _synthetic_gt(h: int, w: int, num_gt: int, num_things: int,
                  num_stuff: int, rng: np.random.Generator
                  ) -> Tuple[InstanceData, Optional[PixelData]]:
    """Elliptic thing instances inside random boxes and, when the model has
    stuff classes, a semantic map of 4x4 blocks of random stuff classes
    with the things painted over."""
    masks = np.zeros((num_gt if num_things else 0, h, w), dtype=np.uint8)
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    yy, xx = np.mgrid[:h, :w]
    for i in range(len(masks)):
        bw, bh = rng.uniform(0.05, 0.4) * w, rng.uniform(0.05, 0.4) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        cx, cy = x0 + bw / 2, y0 + bh / 2
        masks[i] = (((xx + 0.5 - cx) / (bw / 2))**2 +
                    ((yy + 0.5 - cy) / (bh / 2))**2) <= 1
        boxes[i] = (x0, y0, x0 + bw, y0 + bh)
    labels = rng.integers(0, max(num_things, 1), len(masks))
    gt = InstanceData(
        bboxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels).long(),
        masks=BitmapMasks(masks, h, w))
    if num_stuff == 0:
        return gt, None
    blocks = rng.integers(num_things, num_things + num_stuff, (4, 4))
    sem = np.kron(blocks, np.ones((h // 4 + 1, w // 4 + 1), np.int64))
    sem = sem[:h, :w].copy()
    for mask, label in zip(masks, labels):
        sem[mask.astype(bool)] = label
    return gt, PixelData(sem_seg=torch.from_numpy(sem)[None])


def make_batch(model: nn.Module,
               shape: Tuple[int, int],
               batch_size: int = 1,
               train: bool = False,
               num_gt: int = 10,
               seed: int = 0) -> Tuple[Tensor, List[DetDataSample]]:
    """A pre-processed synthetic batch (``model.data_preprocessor``):
    images of ``shape`` (padded to the size divisor), with ground truth
    when ``train``."""
    h, w = shape
    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    if train:
        num_things, num_stuff = class_counts(model)
    for i in range(batch_size):
        inputs.append(_synthetic_image(h, w, rng))
        sample = DetDataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(h, w),
                ori_shape=(h, w),
                scale_factor=(1.0, 1.0)))
        if train:
            gt, sem = _synthetic_gt(h, w, num_gt, num_things, num_stuff,
                                    rng)
            sample.gt_instances = gt
            if sem is not None:
                sample.gt_sem_seg = sem
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=inputs, data_samples=samples), train)
    return data['inputs'], data['data_samples']


# ----------------------------------------------------------------------
# measurement helpers
# ----------------------------------------------------------------------
def synchronize(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class StageTimer:
    """Accumulates time per stage from forward hooks on modules and wrappers
    around bound methods (e.g. ``fusion_head.predict``), on two clocks:
    ``wall`` (``perf_counter``) and ``cpu`` (``process_time``, CPU seconds
    of all threads of the process; much less sensitive than wall time to
    other processes sharing the machine).

    Args:
        device (str): Synchronised before every reading when CUDA.
    """
    CLOCKS = dict(wall=time.perf_counter, cpu=time.process_time)

    def __init__(self, device: str = 'cpu') -> None:
        self.device = device
        self.reset()
        self._handles = []
        self._wrapped = []

    def now(self) -> Dict[str, float]:
        """Readings of both clocks (after a CUDA synchronisation)."""
        synchronize(self.device)
        return {name: clock() for name, clock in self.CLOCKS.items()}

    def _add(self, stage: str, start: Dict[str, float]) -> None:
        end = self.now()
        for name in end:
            self.times[name][stage] += end[name] - start[name]

    def add_module(self, stage: str, module: nn.Module) -> None:
        starts = []

        def pre_hook(*args):
            starts.append(self.now())

        def post_hook(*args):
            self._add(stage, starts.pop())

        self._handles += [
            module.register_forward_pre_hook(pre_hook),
            module.register_forward_hook(post_hook)
        ]

    def add_method(self, stage: str, obj: object, name: str) -> None:
        method = getattr(obj, name)

        def timed(*args, **kwargs):
            start = self.now()
            try:
                return method(*args, **kwargs)
            finally:
                self._add(stage, start)

        setattr(obj, name, timed)
        self._wrapped.append((obj, name))

    def reset(self) -> None:
        self.times = {name: defaultdict(float) for name in self.CLOCKS}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for obj, name in self._wrapped:
            delattr(obj, name)  # the instance attribute shadowed the method
        self._handles, self._wrapped = [], []


def attach_stages(model: nn.Module, timer: StageTimer, train: bool) -> None:
    """Register the stage boundaries of MaskFormer-like (Mask DINO,
    Mask2Former) and DETR-like (DINO) detectors on ``timer``."""
    timer.add_module('backbone', model.backbone)
    if getattr(model, 'neck', None) is not None:
        timer.add_module('backbone', model.neck)
    head = getattr(model, 'panoptic_head', None)
    if head is not None and hasattr(head, 'pixel_decoder'):
        timer.add_module('pixel_decoder', head.pixel_decoder)
    elif getattr(model, 'encoder', None) is not None:
        timer.add_module('pixel_decoder', model.encoder)
    if train:
        seen = set()
        for module in model.modules():
            assigner = getattr(module, 'assigner', None)
            if assigner is None or id(assigner) in seen:
                continue
            seen.add(id(assigner))
            # Mask DINO's criterion matches all sets of a step in one
            # batched call; the peers call ``assign`` per set and image.
            if hasattr(module, '_match_sets'):
                timer.add_method('matching', module, '_match_sets')
            elif hasattr(assigner, 'assign'):
                timer.add_method('matching', assigner, 'assign')
    elif getattr(model, 'panoptic_fusion_head', None) is not None:
        timer.add_method('postprocess', model.panoptic_fusion_head,
                         'predict')
    elif getattr(model, 'bbox_head', None) is not None:
        timer.add_method('postprocess', model.bbox_head, 'predict_by_feat')


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so that the RSS
    baseline of the next run does not include another run's leftovers."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    import psutil
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak memory of a code block: ``max_memory_allocated`` on CUDA, peak
    RSS on CPU (``VmHWM``, reset through ``/proc/self/clear_refs``; RSS
    sampled every millisecond where that is not possible).

    After the block: ``peak`` (bytes, absolute) and ``delta`` (increase over
    the memory in use when the block started).
    """

    def __init__(self, device: str = 'cpu') -> None:
        self.device = device
        self.peak = self.delta = 0
        self._use_hwm = self._hwm_resettable()

    @staticmethod
    def _read_hwm() -> Optional[int]:
        try:
            with open('/proc/self/status') as f:
                match = re.search(r'VmHWM:\s+(\d+) kB', f.read())
        except OSError:
            return None
        return int(match.group(1)) * 1024 if match else None

    @classmethod
    def _reset_hwm(cls) -> bool:
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except OSError:
            return False
        return True

    @classmethod
    def _hwm_resettable(cls) -> bool:
        return cls._read_hwm() is not None and cls._reset_hwm()

    @contextmanager
    def measure(self) -> Iterator['PeakMemory']:
        gc.collect()
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            yield self
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            self.delta = self.peak - base
            return
        _malloc_trim()
        base = _rss_bytes()
        if self._use_hwm:
            self._reset_hwm()
            yield self
            self.peak = max(self._read_hwm(), _rss_bytes())
        else:
            peak = [base]
            stop = threading.Event()

            def sample():
                while not stop.wait(0.001):
                    peak[0] = max(peak[0], _rss_bytes())

            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            try:
                yield self
            finally:
                stop.set()
                thread.join()
            self.peak = max(peak[0], _rss_bytes())
        self.delta = self.peak - base


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Total parameters and those of the main parts."""
    counts = dict(total=sum(p.numel() for p in model.parameters()))
    for name in ('backbone', 'neck', 'encoder', 'decoder', 'panoptic_head',
                 'bbox_head'):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            counts[name] = sum(p.numel() for p in part.parameters())
    head = getattr(model, 'panoptic_head', None)
    if head is not None and hasattr(head, 'pixel_decoder'):
        counts['pixel_decoder'] = sum(
            p.numel() for p in head.pixel_decoder.parameters())
    return counts


@contextmanager
def count_msda_flops(model: nn.Module) -> Iterator[List[int]]:
    """Count the bilinear-sampling FLOPs of every deformable attention call
    in ``model`` (mmcv's class and its subclasses): 5 multiply-adds per
    sampled channel (4 bilinear corners and the attention weight), 2 FLOPs
    each. Yields a one-element list holding the running total."""
    total = [0]

    def hook(module, args, kwargs, output):
        query = kwargs['query'] if 'query' in kwargs else args[0]
        batch_dim = 0 if module.batch_first else 1
        samples = query.shape[batch_dim] * query.shape[1 - batch_dim] * \
            module.num_heads * module.num_levels * module.num_points
        total[0] += 2 * 5 * samples * (module.embed_dims // module.num_heads)

    handles = [
        m.register_forward_hook(hook, with_kwargs=True)
        for m in model.modules()
        if isinstance(m, MultiScaleDeformableAttention)
    ]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


def count_flops(model: nn.Module, run: Callable[[], object]) -> Dict:
    """FLOPs of one call of ``run`` (which runs ``model``).

    ``dense``: the matrix products and convolutions that torch's
    ``FlopCounterMode`` knows, forward and (in a training step) backward.
    ``msda_sampling``: the bilinear sampling of the deformable attention
    calls, forward only (no operator of the backward is counted there).
    Element-wise work is in neither."""
    from torch.utils.flop_counter import FlopCounterMode
    with count_msda_flops(model) as msda, \
            FlopCounterMode(display=False) as counter:
        run()
    dense = int(counter.get_total_flops())
    return dict(total=dense + msda[0], dense=dense, msda_sampling=msda[0])


# ----------------------------------------------------------------------
# operator and host-synchronisation counts
# ----------------------------------------------------------------------
#: Tensor methods that read tensor data on the host, caught at the Python
#: level (``TorchFunctionMode``) because on a CPU tensor most of them
#: dispatch no operator; on CUDA each waits for the GPU. Counted whatever
#: the tensor's device (a CPU run has CPU tensors only). ``numpy`` /
#: ``__array__`` are left out: they fail on a CUDA tensor, so in code that
#: runs on a GPU they read a host copy whose sync was counted where it was
#: made (``.cpu()``).
SYNC_METHODS = frozenset(
    {'item', 'tolist', 'cpu', '__bool__', '__int__', '__float__', '__index__'})
_SYNC_METHOD_FUNCS = frozenset(getattr(Tensor, name) for name in SYNC_METHODS)
#: Functions that make a tensor from host data (Python numbers, lists, numpy
#: arrays). On CUDA a copy from (pageable) host memory to the device waits
#: for the GPU stream to drain (``cudaStreamSynchronize``), so these sync
#: when they target the device: ``x.new_tensor(data)`` (the device of ``x``,
#: a device tensor in model code), ``torch.tensor(data, device=d)`` with
#: ``d`` not the string ``'cpu'``, and ``.to(d)`` of a tensor made on the
#: host in the counted run (``torch.from_numpy``, ``torch.tensor`` without a
#: device, ``.cpu()``). ``.to('cpu')`` is a device-to-host copy.
HOST_DATA_FACTORIES = frozenset(
    {torch.tensor, torch.as_tensor, torch.asarray})

_ATEN = torch.ops.aten
#: Operators whose result is a Python value or whose output size depends
#: on tensor values: on CUDA the host waits for the GPU before it can go on.
SYNC_OPS = frozenset({
    _ATEN._local_scalar_dense,  # item(), bool(), int(), float() in C++
    _ATEN.nonzero,  # also torch.where(cond), argwhere
    _ATEN.masked_select,
    _ATEN._unique,
    _ATEN._unique2,
    _ATEN.unique_dim,
    _ATEN.unique_consecutive,
    _ATEN.unique_dim_consecutive,
    _ATEN.equal,
    _ATEN.allclose,
    _ATEN.bincount,  # output size max(input) + 1
})
#: Operators that sync only with some arguments (see :func:`sync_op_kind`).
_BOOL_INDEX_OPS = frozenset(
    {_ATEN.index, _ATEN.index_put, _ATEN.index_put_, _ATEN._index_put_impl_})
_HOST_COPY_OPS = frozenset({_ATEN._to_copy, _ATEN.copy_})
_CHECKED_OPS = SYNC_OPS | _BOOL_INDEX_OPS | _HOST_COPY_OPS | {
    _ATEN.repeat_interleave
}

_TORCH_DIR = osp.dirname(torch.__file__) + os.sep
_ANALYSIS_DIR = osp.dirname(osp.abspath(__file__)) + os.sep
_PACKAGE_DIR = osp.dirname(osp.dirname(_ANALYSIS_DIR)) + os.sep
_REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(_PACKAGE_DIR))) + os.sep


def sync_op_kind(func: torch._ops.OpOverload, args: tuple, kwargs: dict,
                 out: object) -> Optional[str]:
    """The kind of host synchronisation of one dispatched operator (None if
    it does not sync): the ops of :data:`SYNC_OPS`; boolean-mask indexing
    (``x[mask]``, ``x[mask] = v``: the kernel counts the mask first);
    ``repeat_interleave`` without ``output_size``; a copy from a device to
    the host (GPU runs)."""
    packet = func.overloadpacket
    if packet not in _CHECKED_OPS:
        return None
    name = f'aten::{packet.__name__}'
    if packet in SYNC_OPS:
        return name
    if packet in _BOOL_INDEX_OPS:
        if any(
                isinstance(i, Tensor) and i.dtype in (torch.bool, torch.uint8)
                for i in args[1]):
            return f'{name} (boolean mask)'
        return None
    if packet is _ATEN.repeat_interleave:
        if func is _ATEN.repeat_interleave.Tensor and \
                kwargs.get('output_size') is None:
            return f'{name} (no output_size)'
        return None
    src = args[1] if packet is _ATEN.copy_ else args[0]
    if isinstance(out, Tensor) and out.device.type == 'cpu' and \
            src.device.type != 'cpu':
        return f'{name} (device to host)'
    return None


_INSTALL_DIRS = tuple(d + os.sep for d in ('site-packages', 'dist-packages'))


def _is_installed(path: str) -> bool:
    """Whether a file belongs to an installed package (mmdet, mmcv, ...),
    also where the environment lies inside the repository (``.venv``)."""
    return any(d in path for d in _INSTALL_DIRS)


def _short_path(path: str) -> str:
    """A file path relative to site-packages or to the repository."""
    for install_dir in _INSTALL_DIRS:
        if install_dir in path:
            return path.split(install_dir, 1)[1]
    if path.startswith(_REPO_ROOT):
        return path[len(_REPO_ROOT):]
    return path


class DispatchCounter:
    """Counts, per named phase of a run, the operators dispatched (every
    aten operator below autograd, backward included, through a
    ``TorchDispatchMode``) and the host-synchronising calls, with the
    Python line that made each: through a ``TorchFunctionMode``, the
    methods of :data:`SYNC_METHODS` and the copies between host and device
    of :data:`HOST_DATA_FACTORIES`; then the operators of
    :func:`sync_op_kind` not already inside such a call.

    The counts do not depend on the device, except where a kernel or
    composite op takes another path on CPU than on CUDA: the CPU path is
    the one counted (except ``F.one_hot``, counted as on CUDA, where it
    syncs only without ``num_classes``). Counting slows the run down: time
    other runs.

    Example::

        counter = DispatchCounter()
        with counter.count('forward'):
            loss = model(x).sum()
        with counter.count('backward'):
            loss.backward()
        counter.results()['forward']['syncs']
    """

    _OWN_FUNCTIONS = frozenset({
        '__torch_dispatch__', '__torch_function__', '_on_op', '_on_function',
        '_record_sync'
    })

    def __init__(self) -> None:
        self.phases: Dict[str, Dict] = {}
        self._current: Optional[Dict] = None
        self._inside_method = 0  # counted functions on the stack
        # tensors made on the host in the counted run, by id
        self._host_tensors = weakref.WeakValueDictionary()
        counter = self

        class OpMode(TorchDispatchMode):

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                counter._on_op(func, args, kwargs, out)
                return out

        class MethodMode(TorchFunctionMode):

            def __torch_function__(self, func, types, args=(), kwargs=None):
                return counter._on_function(func, args, kwargs or {})

        self._modes = (MethodMode, OpMode)

    @contextmanager
    def count(self, phase: str) -> Iterator[None]:
        """Count what runs inside the block under ``phase`` (added to the
        counts of earlier blocks with the same name)."""
        self._current = self.phases.setdefault(
            phase, dict(ops=Counter(), syncs=Counter(), sites=Counter()))
        from_numpy = torch.from_numpy
        # no mode sees torch.from_numpy: wrapped to know its results are on
        # the host
        torch.from_numpy = self._host_result(from_numpy)
        try:
            with self._modes[0](), self._modes[1]():
                yield
        finally:
            self._current = None
            torch.from_numpy = from_numpy

    def _host_result(self, func: Callable) -> Callable:

        def wrapped(*args, **kwargs):
            out = func(*args, **kwargs)
            self._host_tensors[id(out)] = out
            return out

        return wrapped

    def _on_op(self, func, args, kwargs, out) -> None:
        self._current['ops'][func] += 1
        if not self._inside_method:
            kind = sync_op_kind(func, args, kwargs, out)
            if kind is not None:
                self._record_sync(kind)

    def _on_function(self, func, args, kwargs):
        kind, on_host = self._transfer(func, args, kwargs)
        if kind is not None:
            self._record_sync(kind)
        if kind is None and func is not torch.nn.functional.one_hot:
            out = func(*args, **kwargs)
        else:
            # the operators these run (_local_scalar_dense, _to_copy, ...)
            # are counted as operators, not as syncs a second time
            self._inside_method += 1
            try:
                out = func(*args, **kwargs)
            finally:
                self._inside_method -= 1
        if on_host and isinstance(out, Tensor):
            self._host_tensors[id(out)] = out
        return out

    def _transfer(self, func, args: tuple,
                  kwargs: dict) -> Tuple[Optional[str], bool]:
        """The sync kind of a Python-level call (None if it does not sync)
        and whether its result is a tensor on the host."""
        if func in _SYNC_METHOD_FUNCS:
            return f'Tensor.{func.__name__}', func is Tensor.cpu
        if func is Tensor.to:
            return self._to_kind('Tensor.to', args[0], *args[1:], **kwargs)
        if func is Tensor.new_tensor and not isinstance(args[1], Tensor):
            return 'Tensor.new_tensor (to device)', False
        if func in HOST_DATA_FACTORIES:
            device = kwargs.get('device')
            if isinstance(args[0], Tensor):
                if device is None:
                    return None, self._on_host(args[0])
                return self._to_kind(f'torch.{func.__name__}', args[0],
                                     device)
            if device is None or device == 'cpu':
                return None, True
            return f'torch.{func.__name__} (to device)', False
        if func is torch.nn.functional.one_hot:
            # on CUDA it skips the range checks that sync on CPU and syncs
            # only to find the number of classes when none is given
            num_classes = args[1] if len(args) > 1 else kwargs.get(
                'num_classes', -1)
            return ('F.one_hot (no num_classes)'
                    if num_classes < 0 else None), False
        return None, False

    def _to_kind(self, name: str, tensor: Tensor, *args,
                 **kwargs) -> Tuple[Optional[str], bool]:
        """``tensor.to(*args, **kwargs)``: to the host when the device is
        the string ``'cpu'``, to the device when a device is given for a
        tensor made on the host; a dtype change keeps it where it is."""
        literal = kwargs.get('device', args[0] if args else None)
        if isinstance(literal, str) and literal.startswith('cpu'):
            return f'{name} (to host)', True
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is None:
            return None, self._on_host(tensor)
        if self._on_host(tensor):
            return f'{name} (to device)', False
        return None, False

    def _on_host(self, tensor: Tensor) -> bool:
        return self._host_tensors.get(id(tensor)) is tensor

    def _record_sync(self, kind: str) -> None:
        self._current['syncs'][kind] += 1
        self._current['sites'][(self._call_site(), kind)] += 1

    def _call_site(self) -> str:
        """``file:line (function)`` of the innermost caller outside torch
        and this counter; when that is outside the repository, followed by
        ``<- `` and the innermost caller in the package (``mask_dino``,
        not its ``analysis``)."""
        frame = sys._getframe(1)
        while frame is not None and (
                frame.f_code.co_filename.startswith(_TORCH_DIR) or
                (frame.f_code.co_filename == __file__
                 and frame.f_code.co_name in self._OWN_FUNCTIONS)):
            frame = frame.f_back
        if frame is None:
            return '<no Python caller>'
        site = self._frame_text(frame)
        filename = frame.f_code.co_filename
        if not filename.startswith(_REPO_ROOT) or _is_installed(filename):
            outer = frame.f_back
            while outer is not None and (
                    not outer.f_code.co_filename.startswith(_PACKAGE_DIR)
                    or outer.f_code.co_filename.startswith(_ANALYSIS_DIR)):
                outer = outer.f_back
            if outer is not None:
                site += ' <- ' + self._frame_text(outer)
        return site

    @staticmethod
    def _frame_text(frame) -> str:
        code = frame.f_code
        return (f'{_short_path(code.co_filename)}:{frame.f_lineno} '
                f'({code.co_name})')

    def results(self) -> Dict[str, Dict]:
        """Per phase, and ``total`` over the phases when there are several:

        - ``ops`` (int): operators dispatched; ``views``: of which views
          (alias outputs, no GPU kernel); ``ops_by_name``: per operator
          overload, most frequent first;
        - ``syncs`` (int): host synchronisations; ``sync_kinds``: per kind
          (``Tensor.item``, ``aten::nonzero``, ...); ``sync_sites``: per
          call site and kind (``site``, ``kind``, ``count``), most
          frequent first.
        """
        res = {name: self._summary(**c) for name, c in self.phases.items()}
        if len(self.phases) > 1:
            total = dict(ops=Counter(), syncs=Counter(), sites=Counter())
            for counts in self.phases.values():
                for key, value in counts.items():
                    total[key].update(value)
            res['total'] = self._summary(**total)
        return res

    @staticmethod
    def _summary(ops: Counter, syncs: Counter, sites: Counter) -> Dict:
        return dict(
            ops=sum(ops.values()),
            views=sum(n for f, n in ops.items() if f.is_view),
            syncs=sum(syncs.values()),
            sync_kinds=dict(syncs.most_common()),
            sync_sites=[
                dict(site=site, kind=kind, count=n)
                for (site, kind), n in sites.most_common()
            ],
            ops_by_name={str(f): n
                         for f, n in ops.most_common()})


def gemm_gflops(device: str, size: int = 2048, repeat: int = 3) -> float:
    """Best fp32 throughput of a ``size``^3 matrix product, GFLOP/s: the
    machine's ceiling, to turn FLOPs into a time floor."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float('inf')
    for _ in range(repeat + 1):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine_info(device: str) -> Dict:
    info = dict(
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        cpu=platform.processor() or platform.machine())
    try:
        with open('/proc/cpuinfo') as f:
            match = re.search(r'model name\s*:\s*(.*)', f.read())
        if match:
            info['cpu'] = match.group(1).strip()
    except OSError:
        pass
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name()
    return info


def summarize(values: List[float]) -> Dict[str, float]:
    return dict(
        median=statistics.median(values),
        min=min(values),
        max=max(values),
        runs=list(values))


# ----------------------------------------------------------------------
# one model
# ----------------------------------------------------------------------
class ModelBench:
    """Benchmark state of one model and one input shape.

    Args:
        name (str): Name in tables.
        config (str): Config path (or ``mmdet::...``).
        shape (tuple[int]): Image (H, W).
        batch_size (int): Images per batch.
        train (bool): Time training iterations instead of inference.
        device (str): 'cpu' or 'cuda'.
        checkpoint (str, optional): Weights; random init when None.
        amp (bool): fp16 autocast (CUDA).
        cfg_options (dict, optional): Config overrides.
        num_gt (int): Instances per image for training.
        seed (int): Seed of the synthetic data and of the model's random
            init / denoising noise.
    """

    def __init__(self,
                 name: str,
                 config: str,
                 shape: Tuple[int, int],
                 batch_size: int = 1,
                 train: bool = False,
                 device: str = 'cpu',
                 checkpoint: Optional[str] = None,
                 amp: bool = False,
                 cfg_options: Optional[dict] = None,
                 num_gt: int = 10,
                 seed: int = 0) -> None:
        self.name, self.config, self.shape = name, config, tuple(shape)
        self.batch_size, self.train, self.device = batch_size, train, device
        self.amp, self.seed = amp, seed
        torch.manual_seed(seed)
        self.cfg = load_config(config, cfg_options)
        self.model = build_detector(self.cfg, checkpoint, device)
        self.model.train(train)
        self.inputs, self.samples = make_batch(self.model, self.shape,
                                               batch_size, train, num_gt,
                                               seed)
        self.timer = StageTimer(device)
        attach_stages(self.model, self.timer, train)
        self.memory = PeakMemory(device)
        self.records: List[Dict[str, float]] = []
        self.peaks: List[Tuple[int, int]] = []

    def _autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type='cuda', dtype=torch.float16)

    def _predict(self, counter: Optional[DispatchCounter] = None) -> None:
        samples = copy.deepcopy(self.samples)
        with self._phase(counter, 'predict'), torch.no_grad(), \
                self._autocast():
            self.model.predict(self.inputs, samples)

    def _train_step(self,
                    counter: Optional[DispatchCounter] = None
                    ) -> List[Dict[str, float]]:
        """One training iteration; clock readings at its start, after the
        losses and after ``backward``."""
        samples = copy.deepcopy(self.samples)
        torch.manual_seed(self.seed)  # same denoising noise every run
        marks = [self.timer.now()]
        with self._phase(counter, 'forward_loss'):
            with self._autocast():
                losses = self.model.loss(self.inputs, samples)
            loss, _ = self.model.parse_losses(losses)
        marks.append(self.timer.now())
        with self._phase(counter, 'backward'):
            loss.backward()
        marks.append(self.timer.now())
        self.model.zero_grad(set_to_none=True)
        return marks

    @staticmethod
    def _phase(counter: Optional[DispatchCounter], name: str):
        return nullcontext() if counter is None else counter.count(name)

    def _run(self) -> List[Dict[str, float]]:
        """One inference batch or training iteration; clock readings at
        its start, (training) after the losses, and at its end."""
        if self.train:
            return self._train_step()
        marks = [self.timer.now()]
        self._predict()
        marks.append(self.timer.now())
        return marks

    def measure_memory(self) -> Tuple[int, int]:
        """One run inside :class:`PeakMemory`, kept apart from the timed
        runs: its heap release (``malloc_trim``) and peak reset make the
        next allocations page-fault, which a training or inference loop
        does not pay. Returns (and keeps) the (peak, increase) bytes."""
        with self.memory.measure():
            self._run()
        self.peaks.append((self.memory.peak, self.memory.delta))
        return self.peaks[-1]

    def run_once(self, record: bool = True) -> Dict[str, Dict[str, float]]:
        """One timed run (inference batch or training iteration), in the
        steady state of the process (no memory measurement around it).

        Returns:
            dict: per clock (``wall``, ``cpu``), seconds per stage and
            ``total``.
        """
        self.timer.reset()
        marks = self._run()
        record_ = {}
        for clock, times in self.timer.times.items():
            span = [m[clock] for m in marks]
            stages = dict(
                backbone=times.get('backbone', 0.0),
                pixel_decoder=times.get('pixel_decoder', 0.0))
            if self.train:
                stages['matching'] = times.get('matching', 0.0)
                stages['decoder_heads'] = span[1] - span[0] - sum(
                    stages.values())
                stages['backward'] = span[2] - span[1]
            else:
                stages['postprocess'] = times.get('postprocess', 0.0)
                stages['decoder_heads'] = span[1] - span[0] - sum(
                    stages.values())
            stages['total'] = span[-1] - span[0]
            record_[clock] = stages
        if record:
            self.records.append(record_)
        return record_

    def count_ops(self) -> Dict[str, Dict]:
        """Operator and host-sync counts (:class:`DispatchCounter`) of one
        extra, untimed run: phases ``forward_loss`` (``model.loss`` and
        ``parse_losses``), ``backward`` and ``total`` when training,
        ``predict`` at inference."""
        counter = DispatchCounter()
        if self.train:
            self._train_step(counter)
        else:
            self._predict(counter)
        return counter.results()

    def flops(self) -> Dict:
        """FLOPs (:func:`count_flops`) of one inference batch or one
        training iteration (forward, losses and backward), in an extra
        untimed run."""
        run = self._train_step if self.train else self._predict
        return count_flops(self.model, run)

    def profile(self, row_limit: int = 25) -> str:
        """A ``torch.profiler`` table of one run (ops by self time)."""
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU]
        if self.device.startswith('cuda'):
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            self.run_once(record=False)
        sort = 'self_cuda_time_total' if self.device.startswith('cuda') \
            else 'self_cpu_time_total'
        return prof.key_averages().table(sort_by=sort, row_limit=row_limit)

    def describe(self) -> Dict:
        """What was measured: model, mode, input and parameters."""
        pad_h, pad_w = self.inputs.shape[-2:]
        return dict(
            name=self.name,
            config=self.config,
            mode='train' if self.train else 'inference',
            device=self.device,
            amp=self.amp,
            batch_size=self.batch_size,
            image_shape=list(self.shape),
            input_shape=[pad_h, pad_w],
            params=count_parameters(self.model))

    def results(self) -> Dict:
        """:meth:`describe`, the timing statistics of the recorded runs
        and the peak memory of :meth:`measure_memory` (measured once here
        if it has not run)."""
        if not self.records:
            raise RuntimeError(f'{self.name}: no recorded run')
        if not self.peaks:
            self.measure_memory()
        keys = list(self.records[0]['wall'])

        def stats(clock):
            return {
                k: summarize([r[clock][k] for r in self.records])
                for k in keys
            }

        return dict(
            self.describe(),
            timing=stats('wall'),
            cpu_timing=stats('cpu'),
            fps=self.batch_size / stats('wall')['total']['median'],
            peak_memory_mb=max(p for p, _ in self.peaks) / MB,
            peak_memory_delta_mb=max(d for _, d in self.peaks) / MB)


def run_interleaved(benches: List[ModelBench], warmup: int,
                    repeat: int) -> None:
    """Warm every model up, then time them round-robin (A B C A B C ...) so
    that machine load affects all alike, then one memory run each."""
    for bench in benches:
        for _ in range(warmup):
            bench.run_once(record=False)
    for _ in range(repeat):
        for bench in benches:
            bench.run_once()
    for bench in benches:
        bench.measure_memory()


# ----------------------------------------------------------------------
# report
# ----------------------------------------------------------------------
def format_counts(counts: Dict[str, Dict], sync_sites: int = 10) -> str:
    """Operator and host-sync counts per phase (:meth:`ModelBench.count_ops`)
    and the ``sync_sites`` most frequent sync sites of each phase."""
    lines = [
        'operators and host syncs of one counted run (views: alias '
        'outputs, no GPU kernel)',
        f"{'phase':<26}{'operators':>10}{'views':>10}{'syncs':>10}"
    ]
    for phase, c in counts.items():
        lines.append(f"{PHASE_TITLES[phase]:<26}{c['ops']:>10}"
                     f"{c['views']:>10}{c['syncs']:>10}")
    kinds = counts.get('total', next(iter(counts.values())))['sync_kinds']
    if kinds:
        lines.append('host syncs by kind: ' +
                     ', '.join(f'{k} {n}' for k, n in kinds.items()))
    for phase, c in counts.items():
        if phase == 'total' or not c['sync_sites'] or sync_sites <= 0:
            continue
        lines.append(f'top host-sync sites, {PHASE_TITLES[phase]} '
                     f"({len(c['sync_sites'])} sites):")
        lines += [
            f"{site['count']:>8}  {site['site']}  [{site['kind']}]"
            for site in c['sync_sites'][:sync_sites]
        ]
    return '\n'.join(lines)


def format_result(res: Dict,
                  flops: Optional[Dict] = None,
                  gemm: Optional[float] = None,
                  sync_sites: int = 10) -> str:
    """A plain-text table of one result dict (timing only where runs were
    timed, counts only where counted)."""
    stages = TRAIN_STAGES if res['mode'] == 'train' else STAGES
    h, w = res['image_shape']
    ph, pw = res['input_shape']
    params = res['params']
    lines = [
        f"{res['name']} ({res['config']})",
        f"{res['mode']}, {res['device']}, batch {res['batch_size']}, "
        f'image {h}x{w} (padded {ph}x{pw}), '
        f"{'fp16 autocast' if res['amp'] else 'fp32'}",
        f"parameters: {params['total'] / 1e6:.2f} M" + ''.join(
            f', {k} {v / 1e6:.2f} M' for k, v in params.items()
            if k != 'total'),
    ]
    if flops:
        line = (f"FLOPs: {flops['total'] / 1e9:.4g} G "
                f"(dense {flops['dense'] / 1e9:.4g} G + deformable "
                f"sampling {flops['msda_sampling'] / 1e9:.3g} G)")
        if gemm:
            line += (f'; at the GEMM rate of {gemm:.0f} GFLOP/s: '
                     f"{flops['total'] / 1e9 / gemm:.2f} s floor")
        lines.append(line)
    if 'timing' in res:
        lines += _format_timing(res, stages)
    if 'counts' in res:
        lines.append(format_counts(res['counts'], sync_sites))
    return '\n'.join(lines)


def _format_timing(res: Dict, stages: Tuple[str, ...]) -> List[str]:
    lines = [
        f"{'stage (wall time)':<26}{'median':>10}{'min':>10}"
        f"{'max':>10}{'share':>8}{'CPU s':>10}"
    ]
    total = res['timing']['total']['median']
    for key in stages + ('total', ):
        t = res['timing'][key]
        lines.append(f'{STAGE_TITLES[key]:<26}{t["median"]:>9.3f}s'
                     f'{t["min"]:>9.3f}s{t["max"]:>9.3f}s'
                     f'{100 * t["median"] / total:>7.1f}%'
                     f'{res["cpu_timing"][key]["median"]:>9.3f}s')
    unit = 'iter/s' if res['mode'] == 'train' else 'img/s'
    lines.append(f"throughput: {res['fps']:.3f} {unit}; peak memory "
                 f"{res['peak_memory_mb']:.0f} MB "
                 f"(+{res['peak_memory_delta_mb']:.0f} MB over the idle "
                 'model)')
    return lines


def run_benchmark(config: str,
                  shape: Sequence[int] = (800, 1333),
                  batch_size: int = 1,
                  train: bool = False,
                  device: str = 'cpu',
                  checkpoint: Optional[str] = None,
                  amp: bool = False,
                  cfg_options: Optional[dict] = None,
                  num_gt: int = 10,
                  seed: int = 0,
                  warmup: int = 1,
                  repeat: int = 5,
                  no_flops: bool = False,
                  counts: bool = True,
                  sync_sites: int = 10,
                  profile: int = 0,
                  out: Optional[str] = None,
                  command: str = '') -> Dict:
    """Benchmark one model and print its table (``benchmark.py``).

    Args:
        config, shape, batch_size, train, device, checkpoint, amp,
            cfg_options, num_gt, seed: As for :class:`ModelBench` (named
            after the config file).
        warmup (int): Untimed runs first.
        repeat (int): Timed runs; 0 for no timing (counts only).
        no_flops (bool): Skip the FLOP count (one more run).
        counts (bool): Count operators and host syncs in one more run
            (:meth:`ModelBench.count_ops`), after the timed ones.
        sync_sites (int): Print the N most frequent sync sites per phase
            (all are in the results).
        profile (int): Print the N most expensive ops of one extra run.
        out (str, optional): Write the results as JSON here.
        command (str): The command line, stored in the results.

    Returns:
        dict: The results (also written to ``out``).
    """
    bench = ModelBench(
        osp.splitext(osp.basename(config))[0],
        config,
        shape,
        batch_size=batch_size,
        train=train,
        device=device,
        checkpoint=checkpoint,
        amp=amp,
        cfg_options=cfg_options,
        num_gt=num_gt,
        seed=seed)
    gemm = gemm_gflops(device)
    if repeat > 0:
        run_interleaved([bench], warmup, repeat)
        res = bench.results()
    else:
        res = bench.describe()
    flops = None
    if not no_flops:
        flops = bench.flops()
        res['flops'] = flops
    if counts:
        res['counts'] = bench.count_ops()
    res['gemm_gflops'] = gemm
    res['machine'] = machine_info(device)
    res['command'] = command
    print(format_result(res, flops, gemm, sync_sites))
    if profile:
        print(bench.profile(profile))
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            json.dump(res, f, indent=2)
        print(f'results written to {out}')
    return res
