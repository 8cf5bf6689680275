"""``tools/test.py`` on a panoptic model: the dump (``--out``) and the
pictures (``--show-dir``) hold the model's own predictions, compactly, and
``--cfg-options data_root=ROOT`` is all it takes to point the config at a
dataset."""
import glob
import os
import os.path as osp
import pickle
import re
import signal
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from conftest import REPO
from mmdet.registry import MODELS, VISUALIZERS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from projects.mask_dino.testing import synthetic_dataset

# tools/test.py runs as a subprocess for every test
pytestmark = pytest.mark.integration
CONFIG = osp.join(REPO, 'configs', 'maskdino_tiny_synthetic_panoptic.py')
NUM_CLASSES = 5
NUM_VAL = 3


def make_dataset(root: str) -> dict:
    return synthetic_dataset.make_dataset(root, num_train=2, num_val=NUM_VAL)


@pytest.fixture(scope='module')
def test_run(tmp_path_factory):
    """tools/test.py with --out, --show-dir and data_root on a random-init
    checkpoint of the tiny panoptic config; also the in-process model."""
    root = tmp_path_factory.mktemp('test_py')
    data_root = make_dataset(str(root / 'synthetic'))['coco_root']
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = str(root / 'random.pth')
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=cfg.metainfo['classes']))),
        ckpt)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    # a DataLoader of an earlier test may have left torch's SIGCHLD handler,
    # which raises here when the child exits if its own workers are gone
    sigchld = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        proc = run_test_py(root, ckpt, data_root, env)
    finally:
        signal.signal(signal.SIGCHLD, sigchld)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(root / 'preds.pkl', 'rb') as f:
        dumped = pickle.load(f)
    # what the model sees in process: the same images, no evaluator
    cfg.test_dataloader.dataset.data_root = data_root
    return dict(
        root=root,
        out=proc.stdout + proc.stderr,
        dumped=dumped,
        cfg=cfg,
        model=model.eval())


def run_test_py(root, ckpt: str, data_root: str,
                env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'test.py'), CONFIG, ckpt, '--work-dir',
        str(root / 'work'), '--out',
        str(root / 'preds.pkl'), '--show-dir', 'vis', '--cfg-options',
        f'data_root={data_root}'
    ],
                          cwd=str(root),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=900)


def own_predictions(cfg: Config, model) -> dict:
    """The model's predictions on the test set, no evaluator involved."""
    loader = Runner.build_dataloader(
        dict(cfg.test_dataloader, num_workers=0, persistent_workers=False))
    preds = {}
    with torch.no_grad():
        for batch in loader:
            for sample in model.test_step(batch):
                preds[osp.basename(sample.img_path)] = sample
    return preds


def test_data_root_alone_points_the_config_at_the_dataset(test_run):
    # PQ / AP / mIoU all need the moved dataset and evaluator files
    for key in ('coco_panoptic/PQ', 'coco/segm_mAP', 'mIoU', 'aAcc'):
        assert re.search(rf'\s{key}: -?[\d.]+', test_run['out']), key
    assert len(test_run['dumped']) == NUM_VAL


def test_dump_holds_the_models_panoptic_maps(test_run):
    preds = own_predictions(test_run['cfg'], test_run['model'])
    void_seen = False
    for saved in test_run['dumped']:
        own = preds[osp.basename(saved['img_path'])]
        pan = saved['pred_panoptic_seg']['sem_seg']
        assert torch.equal(pan.long(), own.pred_panoptic_seg.sem_seg)
        void_seen |= bool((pan == NUM_CLASSES).any())
        assert torch.equal(saved['pred_sem_seg']['sem_seg'].long(),
                           own.pred_sem_seg.sem_seg)
    # random weights: scores under object_mask_thr, void everywhere; the
    # panoptic metric used to write 0 ("disc") into these pixels
    assert void_seen


def test_dump_is_compact(test_run):
    for saved in test_run['dumped']:
        assert 'seg_logits' not in saved
        assert saved['pred_sem_seg']['sem_seg'].dtype == torch.uint8
        assert saved['pred_panoptic_seg']['sem_seg'].dtype in (torch.uint8,
                                                               torch.int16,
                                                               torch.int32)
        assert isinstance(saved['pred_instances']['masks'][0], dict)  # RLE
    h, w = saved['ori_shape']
    per_image = osp.getsize(test_run['root'] / 'preds.pkl') / NUM_VAL
    # three 1-byte maps + RLE of noisy random-init masks (~5.3 H x W here);
    # the old dump held 5 x 4 bytes of score maps + 3 x 8 of int64 maps
    assert per_image < 8 * h * w, per_image


def test_show_dir_pictures_draw_the_models_predictions(test_run):
    cfg, root = test_run['cfg'], test_run['root']
    preds = own_predictions(cfg, test_run['model'])
    visualizer = VISUALIZERS.build(
        dict(cfg.visualizer, name='check', vis_backends=None))
    visualizer.dataset_meta = dict(
        Runner.build_dataloader(
            dict(cfg.test_dataloader, num_workers=0,
                 persistent_workers=False)).dataset.metainfo)
    files = glob.glob(str(root / 'work' / '*' / 'vis' / '*.jpg'))
    assert len(files) == NUM_VAL
    for path in files:
        sample = preds[osp.basename(path)]
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        visualizer.add_datasample(
            'check', image, sample, draw_gt=True, out_file=None)
        expected = visualizer.get_image()
        saved = mmcv.imread(path, channel_order='rgb')
        assert saved.shape == expected.shape
        # JPEG-compressed copy of the same drawing
        diff = np.abs(saved.astype(float) - expected.astype(float)).mean()
        assert diff < 4.0, (path, diff)
