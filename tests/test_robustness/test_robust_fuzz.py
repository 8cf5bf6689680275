"""Seeded fuzzing of the training data path: a few hundred randomly
corrupted synthetic samples (instance, panoptic and semantic layouts)
through the tiny configs' training pipelines, wrapped in
SkipBadSamplesDataset. Each corruption kind has a documented outcome:

- ``ok``: the sample trains, and its packed targets are valid;
- ``error``: strict mode raises a SampleError naming the sample's image
  and the documented cause (checked by substring);
- ``either``: decoders may or may not recover (e.g. a truncated JPEG), so
  the sample trains with valid targets or gives a SampleError naming it.

No sample may hang (SIGALRM guard, and a faulthandler watchdog for hangs in
C code), crash the process or surface any other exception. A few loaded
samples then train the tiny model, and a non-strict pass over everything
returns only valid samples, skipping (and counting) the failing ones."""
import copy
import faulthandler
import os.path as osp
import signal
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from robust_common import REPO, loss_on_batch, make_synthetic

from projects.mask_dino.runtime.robust_dataset import (SampleError,
                                                       SkipBadSamplesDataset)

NUM_CASES = dict(instance=150, panoptic=90, semantic=60)  # 300 in all
SEED = 20240611
PER_SAMPLE_TIMEOUT_S = 20
WATCHDOG_S = 600

OK, ERROR, EITHER = 'ok', 'error', 'either'


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory, num_train=6)


def _train_dataset_cfg(task, synthetic):
    """The tiny synthetic config's training dataset, on the fixture data,
    with the data list kept as Python objects (so it can be edited)."""
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', f'maskdino_tiny_synthetic_{task}.py'))
    ds = cfg.train_dataloader.dataset
    ds.data_root = (synthetic['ade_root'] if task == 'semantic' else
                    synthetic['coco_root']).rstrip('/') + '/'
    ds.serialize_data = False
    ds.filter_cfg = None
    return ds, cfg


# ----------------------------------------------------------------------
# corruptions: (name, applies to, outcome, expected text of the error)
# ----------------------------------------------------------------------
class Corruptor:
    """Applies one named corruption to a copy of a data_info, writing any
    corrupted file into ``out_dir`` (the original files stay intact)."""

    def __init__(self, out_dir, rng):
        self.out_dir = out_dir
        self.rng = rng
        self.counter = 0

    def _new_path(self, ext):
        self.counter += 1
        return osp.join(self.out_dir, f'f{self.counter:05d}{ext}')

    def _write_bytes(self, data, ext):
        path = self._new_path(ext)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def _image(self, info):
        return cv2.imread(info['img_path'], cv2.IMREAD_UNCHANGED)

    # image files -----------------------------------------------------
    def missing_image(self, info):
        info['img_path'] = self._new_path('.jpg')  # never written

    def empty_image(self, info):
        info['img_path'] = self._write_bytes(b'', '.jpg')

    def garbage_image(self, info):
        data = self.rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
        info['img_path'] = self._write_bytes(data, '.jpg')

    def truncated_image(self, info):
        if not osp.isfile(info['img_path']):
            return  # an earlier corruption removed it
        with open(info['img_path'], 'rb') as f:
            data = f.read()
        if len(data) < 22:
            return
        cut = int(self.rng.integers(20, len(data) - 1))
        info['img_path'] = self._write_bytes(data[:cut], '.jpg')

    def grayscale_image(self, info):
        img = self._image(info)
        if img is None or img.ndim != 3:
            return  # an earlier corruption made it unreadable or grey
        gray = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
        info['img_path'] = self._new_path('.png')
        cv2.imwrite(info['img_path'], gray)

    def rgba_image(self, info):
        img = self._image(info)
        if img is None or img.ndim != 3 or img.shape[2] != 3:
            return
        alpha = self.rng.integers(0, 256, img.shape[:2], dtype=np.uint8)
        info['img_path'] = self._new_path('.png')
        cv2.imwrite(info['img_path'], np.dstack([img, alpha]))

    def sixteen_bit_image(self, info):
        img = self._image(info)
        if img is None or img.dtype != np.uint8:
            return
        img = img.astype(np.uint16) * 257
        info['img_path'] = self._new_path('.png')
        cv2.imwrite(info['img_path'], img)

    def wrong_size_image(self, info):
        img = self._image(info)
        if img is None:
            return
        info['img_path'] = self._new_path('.png')
        cv2.imwrite(info['img_path'], cv2.resize(img, (40, 24)))

    # instance annotations ---------------------------------------------
    def _instance(self, info):
        instances = info.get('instances') or []
        return instances[int(self.rng.integers(len(instances)))] \
            if instances else None

    def nan_bbox(self, info):
        inst = self._instance(info)
        inst['bbox'][int(self.rng.integers(4))] = float('nan')

    def inverted_bbox(self, info):
        inst = self._instance(info)
        x0, y0, x1, y1 = inst['bbox']
        inst['bbox'] = [x1 + 1, y0, x0, y1]

    def label_out_of_range(self, info):
        inst = self._instance(info)
        # outside [0, 3) and [0, 5) (instance and panoptic classes)
        inst['bbox_label'] = int(self.rng.choice([-1, 7, 1000]))

    def _polygon_instance(self, info):
        for inst in info.get('instances') or []:
            if isinstance(inst.get('mask'), list) and inst['mask']:
                return inst
        inst = self._instance(info)
        x0, y0, x1, y1 = inst['bbox']
        inst['mask'] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        return inst

    def nan_polygon(self, info):
        inst = self._polygon_instance(info)
        poly = list(inst['mask'][0])
        poly[int(self.rng.integers(len(poly)))] = float('nan')
        inst['mask'][0] = poly

    def huge_polygon(self, info):
        inst = self._polygon_instance(info)
        poly = list(inst['mask'][0])
        poly[int(self.rng.integers(len(poly)))] = float(
            self.rng.choice([1e9, -1e9, 1e12]))
        inst['mask'][0] = poly

    def short_polygon(self, info):
        inst = self._polygon_instance(info)
        inst['mask'] = [list(inst['mask'][0][:4])]

    def odd_polygon(self, info):
        inst = self._polygon_instance(info)
        inst['mask'] = [list(inst['mask'][0][:7])]

    def empty_polygon_list(self, info):
        inst = self._instance(info)
        inst['mask'] = []

    def rle_wrong_size(self, info):
        inst = self._instance(info)
        inst['mask'] = dict(size=[32, 32], counts=[1024])

    def rle_bad_counts(self, info):
        inst = self._instance(info)
        h, w = info['height'], info['width']
        inst['mask'] = dict(size=[h, w], counts=[10, h * w])

    def rle_garbage_string(self, info):
        inst = self._instance(info)
        chars = self.rng.integers(48, 112, 12).astype(np.uint8).tobytes()
        inst['mask'] = dict(
            size=[info['height'], info['width']], counts=chars.decode())

    def zero_area_bbox(self, info):
        inst = self._instance(info)
        x0, y0, _, _ = inst['bbox']
        inst['bbox'] = [x0, y0, x0, y0]

    def bbox_outside_image(self, info):
        inst = self._instance(info)
        inst['bbox'] = [5000., 5000., 5010., 5010.]

    def no_instances(self, info):
        info['instances'] = []

    def all_ignored(self, info):
        for inst in info['instances']:
            inst['ignore_flag'] = 1

    # panoptic ------------------------------------------------------------
    def _png(self, info):
        return cv2.imread(info['seg_map_path']).astype(np.int64)

    def png_ids_shifted(self, info):
        if cv2.imread(info['seg_map_path']) is None:
            return
        png = self._png(info)
        ids = png[..., 2] + 256 * png[..., 1] + 65536 * png[..., 0]
        ids = np.where(ids > 0, ids + 7, 0)
        bgr = np.stack([ids // 65536, ids // 256 % 256, ids % 256], -1)
        info['seg_map_path'] = self._new_path('.png')
        cv2.imwrite(info['seg_map_path'], bgr.astype(np.uint8))

    def png_missing(self, info):
        info['seg_map_path'] = self._new_path('.png')

    def png_garbage(self, info):
        data = self.rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        info['seg_map_path'] = self._write_bytes(data, '.png')

    def png_wrong_size(self, info):
        png = cv2.imread(info['seg_map_path'])
        if png is None:
            return
        info['seg_map_path'] = self._new_path('.png')
        cv2.imwrite(info['seg_map_path'],
                    cv2.resize(png, (32, 32), interpolation=cv2.INTER_NEAREST))

    def segment_dropped(self, info):
        """A segment (and its instance) missing from the JSON: its pixels
        become unlabelled."""
        segments = info['segments_info']
        k = int(self.rng.integers(len(segments)))
        if segments[k]['is_thing']:
            # instances follow the thing (non-crowd) segments in order
            rank = sum(s['is_thing'] for s in segments[:k])
            del info['instances'][rank]
        del segments[k]

    def stuff_only(self, info):
        info['segments_info'] = [
            s for s in info['segments_info'] if not s['is_thing']
        ]
        info['instances'] = []

    # semantic --------------------------------------------------------------
    def _label(self, info):
        return cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED)

    def label_value_out_of_range(self, info):
        label = self._label(info)
        if label is None:
            return
        label = label.copy()
        ys = self.rng.integers(0, label.shape[0], 20)
        xs = self.rng.integers(0, label.shape[1], 20)
        label[ys, xs] = int(self.rng.choice([7, 50, 254]))
        info['seg_map_path'] = self._new_path('.png')
        cv2.imwrite(info['seg_map_path'], label)

    def label_sixteen_bit(self, info):
        label = self._label(info)
        if label is None:
            return
        info['seg_map_path'] = self._new_path('.png')
        cv2.imwrite(info['seg_map_path'], label.astype(np.uint16))

    def label_wrong_size(self, info):
        label = self._label(info)
        if label is None:
            return
        info['seg_map_path'] = self._new_path('.png')
        cv2.imwrite(
            info['seg_map_path'],
            cv2.resize(label, (48, 40), interpolation=cv2.INTER_NEAREST))

    def label_missing(self, info):
        info['seg_map_path'] = self._new_path('.png')

    def label_all_ignore(self, info):
        label = self._label(info)
        if label is None:
            return
        label = np.zeros_like(label)  # 0 -> 255 (ignore)
        info['seg_map_path'] = self._new_path('.png')
        cv2.imwrite(info['seg_map_path'], label)


COMMON = [
    ('missing_image', ERROR, 'No such file'),
    ('empty_image', ERROR, 'img_path='),
    ('garbage_image', ERROR, 'img_path='),
    ('truncated_image', EITHER, 'img_path='),
    ('grayscale_image', OK, None),
    ('rgba_image', OK, None),
    ('sixteen_bit_image', OK, None),
    ('wrong_size_image', ERROR, 'but its annotations are for 64x64'),
]
INSTANCE = [
    ('nan_bbox', ERROR, 'bbox must be 4 finite numbers'),
    ('inverted_bbox', ERROR, 'has x2 < x1'),
    ('label_out_of_range', ERROR, 'is outside [0, '),
    ('nan_polygon', ERROR, 'non-finite polygon coordinate'),
    ('huge_polygon', ERROR, 'polygon far outside'),
    ('short_polygon', OK, None),
    ('odd_polygon', OK, None),
    ('empty_polygon_list', OK, None),
    ('rle_wrong_size', ERROR, 'differs from the image size'),
    ('rle_bad_counts', ERROR, 'do not cover'),
    ('rle_garbage_string', ERROR, '.mask: '),
    ('zero_area_bbox', OK, None),
    ('bbox_outside_image', OK, None),
    ('no_instances', OK, None),
    ('all_ignored', OK, None),
]
PANOPTIC = [
    ('png_ids_shifted', ERROR, 'of the JSON are not in the PNG'),
    ('png_missing', ERROR, 'No such file'),
    ('png_garbage', ERROR, 'seg_map_path='),
    ('png_wrong_size', ERROR, 'PNG size 32x32 differs'),
    ('segment_dropped', OK, None),
    ('stuff_only', OK, None),
]
SEMANTIC = [
    ('label_value_out_of_range', ERROR, 'outside [0, 5)'),
    ('label_sixteen_bit', OK, None),
    ('label_wrong_size', ERROR, 'the label map is 48x40'),
    ('label_missing', ERROR, 'No such file'),
    ('label_all_ignore', OK, None),
]
KINDS = dict(
    instance=COMMON + INSTANCE,
    panoptic=COMMON + INSTANCE[:3] + PANOPTIC,
    semantic=COMMON[:7] + SEMANTIC)


# ----------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------
@contextmanager
def _alarm(seconds, what):

    def fail(signum, frame):
        raise TimeoutError(f'{what} did not finish in {seconds} s')

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _assert_valid_packed(item, num_classes, what):
    inputs = item['inputs']
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 128, 128), \
        what
    sample = item['data_samples']
    gt = sample.get('gt_instances')
    if gt is not None and len(gt):
        boxes = gt.bboxes.tensor
        assert torch.isfinite(boxes).all(), what
        assert ((boxes >= 0) & (boxes <= 128)).all(), what
        assert ((gt.labels >= 0) & (gt.labels < num_classes)).all(), what
        masks = gt.masks.to_tensor(torch.bool, 'cpu')
        assert masks.shape[-2:] == (128, 128), what
        assert masks.flatten(1).any(1).all(), f'{what}: empty mask'
    if 'gt_sem_seg' in sample:
        sem = sample.gt_sem_seg.sem_seg.long()
        assert sem.shape[-2:] == (128, 128), what
        valid = (sem < num_classes) | (sem == 255)
        assert (valid & (sem >= 0)).all(), what


def _make_cases(task, synthetic, tmp_path):
    ds_cfg, cfg = _train_dataset_cfg(task, synthetic)
    base = DATASETS.build(copy.deepcopy(ds_cfg))
    # samples with at least one (non-crowd) instance, when there are any
    bases = [
        i for i in range(len(base))
        if base.get_data_info(i).get('instances', [None])
    ]
    rng = np.random.default_rng(SEED + len(task))
    corruptor = Corruptor(str(tmp_path), rng)
    kinds = KINDS[task]
    infos, expected = [], []
    for i in range(NUM_CASES[task]):
        # every kind at least once, then random ones (some doubled up)
        picks = [kinds[i]] if i < len(kinds) else [
            kinds[int(k)] for k in rng.integers(len(kinds), size=2)
        ][:1 + int(rng.random() < 0.3)]
        info = base.get_data_info(bases[int(rng.integers(len(bases)))])
        info.pop('sample_idx', None)
        for name, _, _ in picks:
            getattr(corruptor, name)(info)
        infos.append(info)
        expected.append(picks)
    base.data_list = infos
    return base, expected, cfg


def _outcome(picks):
    outcomes = {o for _, o, _ in picks}
    if ERROR in outcomes:
        # an 'either' corruption may fail first, with its own message
        return ERROR, [t for _, o, t in picks if o != OK]
    return (EITHER if EITHER in outcomes else OK), []


@pytest.fixture
def watchdog():
    """Hangs inside C code (pycocotools on NaN polygons) ignore SIGALRM:
    dump the stacks and end the process instead of blocking the suite."""
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# a fuzzing campaign: 300 samples through the training pipelines and the
# runtime's SkipBadSamplesDataset, then training
@pytest.mark.integration
@pytest.mark.parametrize('task', ['instance', 'panoptic', 'semantic'])
def test_fuzzed_samples_train_or_fail_clearly(task, synthetic, tmp_path,
                                              watchdog):
    dataset, expected, cfg = _make_cases(task, synthetic, tmp_path)
    num_classes = len(dataset.metainfo['classes'])
    strict = SkipBadSamplesDataset(dataset, strict=True)
    np.random.seed(0)
    loaded, failed = [], 0
    for idx, picks in enumerate(expected):
        names = '+'.join(n for n, _, _ in picks)
        what = f'{task} case {idx} ({names})'
        outcome, texts = _outcome(picks)
        try:
            with _alarm(PER_SAMPLE_TIMEOUT_S, what):
                item = strict[idx]
        except SampleError as err:
            msg = str(err)
            assert outcome != OK, f'{what} should train: {msg}'
            assert msg.startswith(f'sample {idx} (img_path='), msg
            assert not isinstance(err.__cause__, TimeoutError), msg
            # one of the expected texts (two corruptions: either may win)
            if outcome == ERROR:
                assert any(t in msg for t in texts), (what, msg)
            failed += 1
            continue
        assert outcome != ERROR, f'{what} loaded but must fail'
        _assert_valid_packed(item, num_classes, what)
        loaded.append(item)
    assert failed > 0 and len(loaded) > 0

    # the loaded ones train the tiny model of the task's config
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    for start in range(0, 6, 2):
        losses = loss_on_batch(model, loaded[start:start + 2])
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert all(
            torch.isfinite(p.grad).all() for p in model.parameters()
            if p.grad is not None)
        model.zero_grad()

    # non-strict: every index yields a valid sample, failures are skipped
    lenient = SkipBadSamplesDataset(dataset, max_consecutive_failures=200)
    with _alarm(10 * PER_SAMPLE_TIMEOUT_S, f'{task} lenient pass'):
        for idx in range(len(lenient)):
            _assert_valid_packed(lenient[idx], num_classes, f'{task} {idx}')
    assert lenient.num_skipped >= failed
