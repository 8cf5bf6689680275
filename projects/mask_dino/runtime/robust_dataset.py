"""Bad training data never kills a long run: validation with clear errors
and a dataset wrapper that reports and skips unreadable samples.

:class:`SkipBadSamplesDataset` wraps the training dataset when the config
has ``skip_bad_samples``, as ``configs/_base_/default_runtime.py`` sets:
its runner (:class:`~.runner.MaskDINORunner`) applies
:func:`wrap_train_dataset`, whichever tool builds it. Each sample is

1. checked before the pipeline (:func:`check_data_info`): boxes, labels,
   polygons and RLEs, image (and label map) sizes against the annotations
   (file headers only), and for panoptic data that every segment of the
   JSON is present in the PNG. Non-finite or far out-of-image polygon
   coordinates are refused here because pycocotools hangs or exhausts
   memory on them, and a malformed RLE makes it read uninitialised memory;
2. loaded by the wrapped dataset's pipeline;
3. checked after the pipeline (:func:`check_packed_sample`): three-channel
   image, finite boxes, labels and semantic values in range, masks of the
   image size.

Any failure is a :class:`SampleError` naming the sample's files and the
cause. In strict mode it is raised; otherwise it is logged as a warning
with a running count and another random sample is loaded instead, up to
``max_consecutive_failures`` failures in a row (then the error is raised:
the data is broken, not one sample). ``SampleGuardHook``
(:mod:`.sample_guard_hook`) puts the count of all
data-loader workers in the training log and names the sample a dying
worker was loading.

Errors while building the dataset (a missing or unparsable annotation
file, an unknown category id) become a :class:`DatasetBuildError` naming
the file.
"""
import copy
import json
import logging
import math
import os
from numbers import Number
from typing import Any, Dict, List, Optional, Union

import mmcv
import numpy as np
import torch
from mmdet.registry import DATASETS
from mmengine.config import Config, ConfigDict
from mmengine.fileio import get
from mmengine.logging import print_log
from PIL import Image

IGNORE_INDEX = 255
# Largest number of data-loader worker slots tracked (more workers share).
MAX_WORKER_SLOTS = 128
# Polygons may leave the image by this many image sizes (rasterising
# coordinates far outside is slow, non-finite ones never finish).
POLYGON_MARGIN = 1.0

_TABLE_PID, _TABLE_INDEX, _TABLE_SKIPPED = 0, 1, 2


class DatasetBuildError(RuntimeError):
    """The dataset (its annotation file) could not be loaded."""


class SampleError(RuntimeError):
    """A training sample could not be loaded or is invalid.

    Attributes:
        index (int): Index of the sample in the wrapped dataset.
        files (dict): The sample's files (``img_path``, ``seg_map_path``).
    """

    def __init__(self,
                 message: str,
                 index: int = -1,
                 files: Optional[dict] = None) -> None:
        super().__init__(message)
        self.index = index
        self.files = files or {}


class AnnotationError(ValueError):
    """An annotation is malformed; the message names the file and field."""


# ----------------------------------------------------------------------
# Checks of one sample
# ----------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _sample_name(data_info: dict) -> str:
    return str(data_info.get('img_path', data_info.get('img_id', '?')))


def rle_string_counts(counts: str) -> List[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools format:
    5-bit groups offset by 48, continuation bit 0x20, sign bit 0x10, and
    counts after the third stored as differences to the one two before).

    Raises:
        ValueError: On a truncated string.
    """
    runs: List[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                raise ValueError('truncated RLE string')
            c = ord(counts[pos]) - 48
            value |= (c & 0x1f) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def check_mask_annotation(mask: Any, height: int, width: int,
                          where: str) -> None:
    """Check a COCO polygon list or RLE against the image size.

    Polygons that mmdet drops itself (odd length, fewer than 3 points) are
    allowed; their coordinates must still be finite numbers.

    Raises:
        AnnotationError: naming ``where`` (file and field).
    """
    if isinstance(mask, list):
        for k, poly in enumerate(mask):
            if not isinstance(poly, (list, tuple)) or not all(
                    _is_number(v) for v in poly):
                raise AnnotationError(
                    f'{where}.mask[{k}]: a polygon must be a list of '
                    f'numbers, got {str(poly)[:80]}')
            coords = np.asarray(poly, dtype=np.float64)
            if not np.isfinite(coords).all():
                raise AnnotationError(
                    f'{where}.mask[{k}]: non-finite polygon coordinate')
            xs, ys = coords[0::2], coords[1::2]
            lo_x, hi_x = -POLYGON_MARGIN * width, (1 + POLYGON_MARGIN) * width
            lo_y, hi_y = (-POLYGON_MARGIN * height,
                          (1 + POLYGON_MARGIN) * height)
            if (xs.size and (xs.min() < lo_x or xs.max() > hi_x)) or (
                    ys.size and (ys.min() < lo_y or ys.max() > hi_y)):
                raise AnnotationError(
                    f'{where}.mask[{k}]: polygon far outside the '
                    f'{width}x{height} image (x in [{xs.min():g}, '
                    f'{xs.max():g}], y in [{ys.min():g}, {ys.max():g}])')
        return
    if isinstance(mask, dict):
        size = mask.get('size')
        counts = mask.get('counts')
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise AnnotationError(f'{where}.mask: RLE without a valid size')
        if list(size) != [height, width]:
            raise AnnotationError(
                f'{where}.mask: RLE size {list(size)} differs from the image '
                f'size [{height}, {width}]')
        if isinstance(counts, (bytes, str)):
            text = counts.decode() if isinstance(counts, bytes) else counts
            try:
                runs = rle_string_counts(text)
            except ValueError as err:
                raise AnnotationError(f'{where}.mask: {err}') from None
        elif isinstance(counts, list) and all(
                _is_number(c) and float(c).is_integer() for c in counts):
            runs = [int(c) for c in counts]
        else:
            raise AnnotationError(
                f'{where}.mask: RLE counts must be a string or a list of '
                'integers')
        if any(r < 0 for r in runs) or sum(runs) != height * width:
            raise AnnotationError(
                f'{where}.mask: RLE runs (sum {sum(runs)}) do not cover the '
                f'{height}x{width} image')
        return
    raise AnnotationError(
        f'{where}.mask: expected polygons or an RLE, got {type(mask)}')


def check_data_info(data_info: dict,
                    num_classes: Optional[int] = None,
                    check_panoptic_png: bool = True,
                    backend_args: Optional[dict] = None) -> None:
    """Validate the annotations of one sample before its pipeline runs.

    Args:
        data_info (dict): ``dataset.get_data_info(i)`` of an mmdet dataset.
        num_classes (int, optional): Labels must lie in [0, num_classes).
        check_panoptic_png (bool): For panoptic data (``segments_info``),
            read the PNG and require every segment id of the JSON in it.
        backend_args (dict, optional): File backend of the PNG.

    Raises:
        AnnotationError: naming the image (or PNG) and the field.
    """
    name = _sample_name(data_info)
    height, width = data_info.get('height'), data_info.get('width')
    for i, inst in enumerate(data_info.get('instances', [])):
        where = f'{name}: instances[{i}]'
        bbox = inst.get('bbox')
        if bbox is not None:
            if len(bbox) != 4 or not all(_is_number(v) for v in bbox) or \
                    not all(math.isfinite(v) for v in bbox):
                raise AnnotationError(
                    f'{where}.bbox must be 4 finite numbers, got {bbox}')
            if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
                raise AnnotationError(
                    f'{where}.bbox {bbox} has x2 < x1 or y2 < y1')
        label = inst.get('bbox_label')
        if label is not None and num_classes is not None and not (
                _is_number(label) and 0 <= label < num_classes):
            raise AnnotationError(
                f'{where}.bbox_label {label} is outside [0, {num_classes})')
        if inst.get('mask') is not None and height and width:
            check_mask_annotation(inst['mask'], int(height), int(width), where)
    check_image_sizes(data_info)
    if check_panoptic_png and data_info.get('segments_info') and \
            data_info.get('seg_map_path'):
        check_panoptic_png_ids(data_info, backend_args)


def _header_size(path: Any) -> Optional[tuple]:
    """(width, height) from an image header, or None (not a local file,
    unreadable: the pipeline then reports it)."""
    if not isinstance(path, str) or '://' in path:
        return None
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: B902  (any unreadable file)
        return None


def check_image_sizes(data_info: dict) -> None:
    """The image must have the size the annotations were made for: the
    ``height``/``width`` of the JSON and the size of a semantic label map
    (a mismatch would silently misalign every target). Only file headers
    are read; a 90-degree swap (EXIF rotation) is accepted.

    Raises:
        AnnotationError: naming both files and sizes.
    """
    img_path = data_info.get('img_path')
    size = _header_size(img_path)
    if size is None:
        return
    height, width = data_info.get('height'), data_info.get('width')
    if height and width and tuple(size) not in ((width, height),
                                                (height, width)):
        raise AnnotationError(
            f'{img_path}: the image is {size[0]}x{size[1]} but its '
            f'annotations are for {width}x{height}')
    seg = data_info.get('seg_map_path')
    if seg and not data_info.get('segments_info'):
        seg_size = _header_size(seg)
        if seg_size is not None and tuple(seg_size) not in (tuple(size),
                                                            tuple(size[::-1])):
            raise AnnotationError(
                f'{seg}: the label map is {seg_size[0]}x{seg_size[1]} but '
                f'the image {img_path} is {size[0]}x{size[1]}')


def check_panoptic_png_ids(data_info: dict,
                           backend_args: Optional[dict] = None) -> None:
    """Every segment id of the JSON must occur in the panoptic PNG.

    Raises:
        AnnotationError: naming the PNG, the missing ids and the PNG's ids.
    """
    path = data_info['seg_map_path']
    png = mmcv.imfrombytes(
        get(path, backend_args=backend_args),
        flag='color',
        channel_order='rgb')
    if png is None:
        raise AnnotationError(f'{path}: not a readable PNG')
    png = png.astype(np.int64)
    ids = png[..., 0] + 256 * png[..., 1] + 256 * 256 * png[..., 2]
    present = set(np.unique(ids).tolist())
    wanted = [s['id'] for s in data_info['segments_info']]
    missing = sorted(set(wanted) - present)
    if missing:
        shown = sorted(present - {0})[:10]
        raise AnnotationError(
            f'{path}: segment ids {missing[:10]} of the JSON are not in the '
            f'PNG (its ids: {shown}); the PNG does not belong to the '
            f'segments_info of {_sample_name(data_info)}')
    if tuple(ids.shape) != (data_info.get('height', ids.shape[0]),
                            data_info.get('width', ids.shape[1])):
        raise AnnotationError(
            f'{path}: PNG size {ids.shape[1]}x{ids.shape[0]} differs from '
            f"the image size {data_info.get('width')}x"
            f"{data_info.get('height')} of the JSON")


def check_packed_sample(data: dict,
                        num_classes: Optional[int] = None,
                        name: str = '?') -> None:
    """Validate a packed sample (output of ``PackDetInputs``).

    Raises:
        AnnotationError: naming ``name`` and the field.
    """
    inputs = data.get('inputs')
    sample = data.get('data_samples')
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3 or \
            inputs.shape[0] != 3:
        shape = getattr(inputs, 'shape', None)
        raise AnnotationError(
            f'{name}: inputs must be a (3, H, W) image, got {shape}')
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        raise AnnotationError(f'{name}: the image has non-finite values')
    if sample is None:
        return
    size = tuple(inputs.shape[-2:])
    gt = sample.get('gt_instances')
    if gt is not None:
        if 'bboxes' in gt:
            boxes = gt.bboxes
            boxes = boxes.tensor if hasattr(boxes, 'tensor') else boxes
            if not torch.isfinite(boxes).all():
                raise AnnotationError(
                    f'{name}: gt_instances.bboxes has non-finite values')
        if 'labels' in gt and len(gt.labels) and num_classes is not None:
            labels = gt.labels
            if labels.min() < 0 or labels.max() >= num_classes:
                raise AnnotationError(
                    f'{name}: gt_instances.labels {labels.tolist()} outside '
                    f'[0, {num_classes})')
        if 'masks' in gt and len(gt.masks):
            masks = gt.masks
            mask_size = (masks.height, masks.width) if hasattr(
                masks, 'height') else tuple(masks.shape[-2:])
            if tuple(mask_size) != size:
                raise AnnotationError(
                    f'{name}: gt_instances.masks are {mask_size[1]}x'
                    f'{mask_size[0]} but the image is {size[1]}x{size[0]}')
    sem = sample.get('gt_sem_seg')
    if sem is not None:
        sem = sem.sem_seg
        if tuple(sem.shape[-2:]) != size:
            raise AnnotationError(
                f'{name}: gt_sem_seg is {sem.shape[-1]}x{sem.shape[-2]} but '
                f'the image is {size[1]}x{size[0]}')
        if num_classes is not None:
            # long: 16-bit label PNGs give uint16, without comparisons
            values = torch.unique(sem.long())
            bad = values[((values < 0) | (values >= num_classes))
                         & (values != IGNORE_INDEX)]
            if bad.numel():
                raise AnnotationError(
                    f'{name}: semantic labels {bad.tolist()[:10]} outside '
                    f'[0, {num_classes}) and not the ignore index '
                    f'{IGNORE_INDEX}')


# ----------------------------------------------------------------------
# Building datasets with clear errors
# ----------------------------------------------------------------------
def _describe_cfg(cfg: dict) -> str:
    root = cfg.get('data_root') or ''
    ann = cfg.get('ann_file') or ''
    path = os.path.join(root, ann) if ann and not os.path.isabs(ann) else ann
    return f"{cfg.get('type', 'dataset')} ({path or root or 'no ann_file'})"


def _build_error(what: str, err: Exception) -> DatasetBuildError:
    if isinstance(err, json.JSONDecodeError):
        cause = f'it is not valid JSON ({err})'
    elif isinstance(err, FileNotFoundError):
        cause = f'a file is missing ({err})'
    elif isinstance(err, KeyError):
        cause = (f'key {err} is unknown: an annotation refers to a category '
                 'id or image field the file does not define')
    else:
        cause = f'{type(err).__name__}: {err}'
    return DatasetBuildError(f'Cannot load the annotations of {what}: '
                             f'{cause}')


def build_dataset(cfg: Union[dict, ConfigDict]):
    """``DATASETS.build`` with errors that name the annotation file."""
    try:
        dataset = DATASETS.build(cfg)
    except DatasetBuildError:
        raise
    except Exception as err:
        raise _build_error(_describe_cfg(cfg), err) from err
    return dataset


# ----------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------
@DATASETS.register_module()
class SkipBadSamplesDataset:
    """Dataset wrapper that validates every sample and reports and skips
    the ones that cannot be loaded (see the module docstring).

    Args:
        dataset (dict | Dataset): The wrapped dataset or its config.
        strict (bool): Raise the :class:`SampleError` of a bad sample
            instead of skipping it. Defaults to False.
        validate (bool): Run :func:`check_data_info` and
            :func:`check_packed_sample`. Defaults to True.
        max_consecutive_failures (int): Give up (raise) after this many
            failed samples in a row. Defaults to 50.
        lazy_init (bool): Defer ``full_init`` of the wrapped dataset.
    """

    def __init__(self,
                 dataset: Union[dict, Any],
                 strict: bool = False,
                 validate: bool = True,
                 max_consecutive_failures: int = 50,
                 lazy_init: bool = False) -> None:
        if isinstance(dataset, (dict, ConfigDict, Config)):
            self._what = _describe_cfg(dataset)
            self.dataset = build_dataset(dataset)
        else:
            self._what = type(dataset).__name__
            self.dataset = dataset
        if max_consecutive_failures < 1:
            raise ValueError('max_consecutive_failures must be >= 1, got '
                             f'{max_consecutive_failures}')
        self.strict = strict
        self.validate = validate
        self.max_consecutive_failures = max_consecutive_failures
        # Per worker slot: pid, index being loaded (-1 = idle), samples
        # skipped. Shared memory, so the main process sees the workers'
        # rows (fork or spawn).
        self._table = torch.zeros((MAX_WORKER_SLOTS, 3), dtype=torch.long)
        self._table[:, _TABLE_INDEX] = -1
        self._table.share_memory_()
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    # mmengine dataset-wrapper protocol ------------------------------
    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        if hasattr(self.dataset, 'full_init'):
            try:
                self.dataset.full_init()
            except Exception as err:
                raise _build_error(self._what, err) from err
        self._fully_initialized = True

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def num_classes(self) -> Optional[int]:
        classes = self.dataset.metainfo.get('classes')
        return None if classes is None else len(classes)

    # statistics -----------------------------------------------------
    @property
    def num_skipped(self) -> int:
        """Samples skipped so far by all processes using this object."""
        return int(self._table[:, _TABLE_SKIPPED].sum())

    def samples_in_flight(self) -> Dict[int, int]:
        """``{pid: index}`` of the samples being loaded right now."""
        rows = self._table[self._table[:, _TABLE_INDEX] >= 0]
        return {int(r[_TABLE_PID]): int(r[_TABLE_INDEX]) for r in rows}

    def describe_sample(self, idx: int) -> str:
        """``'sample 12 (img_path=..., seg_map_path=...)'``."""
        files = self._files(idx)
        inner = ', '.join(f'{k}={v}' for k, v in files.items())
        return f'sample {idx}' + (f' ({inner})' if inner else '')

    # loading --------------------------------------------------------
    def __getitem__(self, idx: int) -> dict:
        slot = self._slot()
        failures = 0
        while True:
            self._table[slot, _TABLE_PID] = os.getpid()
            self._table[slot, _TABLE_INDEX] = idx
            try:
                return self._load(idx)
            except Exception as err:  # noqa: B902  (any sample failure)
                error = self._sample_error(idx, err)
                if self.strict:
                    raise error from err
                failures += 1
                self._table[slot, _TABLE_SKIPPED] += 1
                print_log(
                    f'Skipped a bad training sample ({self.num_skipped} '
                    f'skipped so far): {error}',
                    logger='current',
                    level=logging.WARNING)
                if failures >= self.max_consecutive_failures:
                    raise SampleError(
                        f'{failures} training samples in a row failed to '
                        f'load; the data is broken. Last: {error}', idx,
                        error.files) from err
                idx = int(np.random.randint(0, len(self)))
            finally:
                self._table[slot, _TABLE_INDEX] = -1

    def _load(self, idx: int) -> dict:
        num_classes = self.num_classes
        backend_args = getattr(self.dataset, 'backend_args', None)
        if self.validate:
            check_data_info(
                self.dataset.get_data_info(idx),
                num_classes,
                backend_args=backend_args)
        data = self.dataset[idx]
        if self.validate:
            check_packed_sample(data, num_classes, self.describe_sample(idx))
        return data

    def _files(self, idx: int) -> dict:
        try:
            info = self.dataset.get_data_info(idx)
        except Exception:  # noqa: B902  (describing must not fail)
            return {}
        return {
            k: info[k]
            for k in ('img_path', 'seg_map_path', 'img_id') if info.get(k)
        }

    def _sample_error(self, idx: int, err: Exception) -> SampleError:
        if isinstance(err, SampleError):
            return err
        return SampleError(
            f'{self.describe_sample(idx)}: {type(err).__name__}: {err}', idx,
            self._files(idx))

    @staticmethod
    def _slot() -> int:
        info = torch.utils.data.get_worker_info()
        return 0 if info is None else 1 + info.id % (MAX_WORKER_SLOTS - 1)


def find_skip_wrapper(dataset: Any) -> Optional[SkipBadSamplesDataset]:
    """The :class:`SkipBadSamplesDataset` in a chain of ``.dataset``
    wrappers, or None."""
    seen = 0
    while dataset is not None and seen < 8:
        if isinstance(dataset, SkipBadSamplesDataset):
            return dataset
        dataset = getattr(dataset, 'dataset', None)
        seen += 1
    return None


def wrap_train_dataset(cfg: Config) -> Config:
    """Wrap ``cfg.train_dataloader.dataset`` in :class:`SkipBadSamplesDataset`
    with the options of ``cfg.skip_bad_samples`` (no-op when that key is
    missing or None, or the dataset is wrapped already).

    Returns:
        Config: ``cfg``, changed in place.
    """
    options = cfg.get('skip_bad_samples', None)
    loader = cfg.get('train_dataloader', None)
    if options is None or loader is None or 'dataset' not in loader:
        return cfg
    dataset = loader['dataset']
    if dataset.get('type') in ('SkipBadSamplesDataset', SkipBadSamplesDataset):
        return cfg
    loader['dataset'] = dict(
        type='SkipBadSamplesDataset', dataset=dataset, **options)
    return cfg
