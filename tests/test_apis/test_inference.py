"""Inference APIs on the tiny configs.

``init_detector`` / ``inference_detector`` and ``DetInferencer`` are run in a
fresh interpreter that never imports ``projects.mask_dino`` itself, so the
modules must be registered by the configs' ``custom_imports``; the facts it
reports are checked here. ``tools/demo/image_demo.py`` runs as a command,
and its helpers are checked against hand computations.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData
from mmdet.structures import DetDataSample
from panopticapi.utils import rgb2id
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from projects.mask_dino.apis import image_demo

DEMO = osp.join(REPO, 'tools', 'demo', 'image_demo.py')
CLASSES = ('disc', 'square', 'triangle', 'sky', 'ground')
KINDS = {
    # kind: (config, number of thing classes, number of classes)
    'instance': ('maskdino_tiny_synthetic_instance.py', 3, 3),
    'panoptic': ('maskdino_tiny_synthetic_panoptic.py', 3, 5),
    'semantic': ('maskdino_tiny_synthetic_semantic.py', 0, 5),
}
H, W = 100, 150  # not square, not the 128 test size: checks the rescale


def config_path(kind: str) -> str:
    return osp.join(REPO, 'configs', KINDS[kind][0])


def checksum(state_dict: dict) -> float:
    return float(
        sum(v.double().sum() for v in state_dict.values()
            if v.is_floating_point()))


def make_image(seed: int) -> np.ndarray:
    """A BGR image with a few flat shapes (some structure for the model)."""
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 60, (H, W, 3)).astype(np.uint8)
    cv2.circle(img, (40, 40), 25, (40, 40, 220), -1)
    cv2.rectangle(img, (80, 30), (130, 80), (60, 200, 60), -1)
    return img


@pytest.fixture(scope='module')
def assets(tmp_path_factory):
    """Random-init checkpoints (with and without ``dataset_meta``) of the
    three tiny configs, and test images on disk."""
    root = tmp_path_factory.mktemp('inference')
    torch.manual_seed(0)
    ckpts = {}
    for kind in KINDS:
        cfg = Config.fromfile(config_path(kind))
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model)
        model.init_weights()
        state = model.state_dict()
        names = [f'ckpt_{c}' for c in CLASSES[:KINDS[kind][2]]]
        with_meta = str(root / f'{kind}.pth')
        torch.save(
            dict(
                state_dict=state, meta=dict(dataset_meta=dict(classes=names))),
            with_meta)
        no_meta = str(root / f'{kind}_no_meta.pth')
        torch.save(dict(state_dict=state), no_meta)
        ckpts[kind] = dict(
            config=config_path(kind),
            checkpoint=with_meta,
            no_meta=no_meta,
            classes=names,
            checksum=checksum(state))
    images = root / 'images'
    images.mkdir()
    cv2.imwrite(str(images / 'a.png'), make_image(0))
    cv2.imwrite(str(images / 'b.jpg'), make_image(1)[:90, :120])
    (images / 'notes.txt').write_text('not an image')
    return dict(root=root, ckpts=ckpts, images=images)


# ----------------------------------------------------------------------
# init_detector / inference_detector / DetInferencer in a fresh process
# ----------------------------------------------------------------------
API_SCRIPT = r'''
import json, os.path as osp, sys
import numpy as np
jobs, image, out_dir, result_file = (json.load(open(sys.argv[1])),
                                     sys.argv[2], sys.argv[3], sys.argv[4])
facts = dict(imported_at_start='projects.mask_dino' in sys.modules)
import cv2, mmcv, torch
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmdet.evaluation.functional import INSTANCE_OFFSET
from panopticapi.utils import rgb2id
from pycocotools import mask as mask_util
facts['imported_by_mmdet'] = 'projects.mask_dino' in sys.modules

def same(a, b):
    out = {}
    if 'pred_instances' in a:
        x, y = a.pred_instances, b.pred_instances
        out['instances'] = bool(
            torch.equal(x.labels, y.labels)
            and torch.allclose(x.scores, y.scores, atol=1e-5)
            and torch.allclose(x.bboxes, y.bboxes, atol=1e-3)
            and (x.masks != y.masks).float().mean() < 1e-3)
    if 'pred_panoptic_seg' in a:
        out['panoptic'] = bool(
            (a.pred_panoptic_seg.sem_seg != b.pred_panoptic_seg.sem_seg)
            .float().mean() < 1e-3)
    if 'pred_sem_seg' in a:
        out['semantic'] = bool(
            (a.pred_sem_seg.sem_seg != b.pred_sem_seg.sem_seg)
            .float().mean() < 1e-3)
    return out

img = cv2.imread(image)
for kind, job in jobs.items():
    f = facts[kind] = {}
    model = init_detector(job['config'], job['checkpoint'], device='cpu')
    f['module'] = type(model).__module__
    f['classes'] = list(model.dataset_meta['classes'])
    f['checksum'] = float(sum(v.double().sum()
                              for v in model.state_dict().values()
                              if v.is_floating_point()))
    one = inference_detector(model, img)
    many = inference_detector(model, [img, img[:, ::-1].copy()])
    f['batch_len'] = len(many)
    f['batch_same'] = same(one, many[0])
    f['fields'] = sorted(k for k in ('pred_instances', 'pred_panoptic_seg',
                                     'pred_sem_seg', 'seg_logits')
                         if k in one)
    if 'pred_instances' in one:
        p = one.pred_instances
        f['ins'] = dict(
            n=len(p), mask_shape=list(p.masks.shape),
            mask_dtype=str(p.masks.dtype),
            labels=p.labels.tolist(), scores=p.scores.tolist(),
            bboxes=p.bboxes.tolist())
    if 'pred_panoptic_seg' in one:
        pan = one.pred_panoptic_seg.sem_seg
        f['pan'] = dict(shape=list(pan.shape),
                        values=torch.unique(pan).tolist())
    if 'pred_sem_seg' in one:
        sem = one.pred_sem_seg.sem_seg
        logits = one.seg_logits.data
        f['sem'] = dict(
            shape=list(sem.shape), logits_shape=list(logits.shape),
            argmax=bool(torch.equal(sem[0], logits.argmax(0))),
            values=torch.unique(sem).tolist())

    inferencer = DetInferencer(model=job['config'], weights=job['checkpoint'],
                               device='cpu', show_progress=False)
    f['inferencer_classes'] = list(inferencer.model.dataset_meta['classes'])
    ds = inferencer(image, return_datasamples=True)['predictions'][0]
    f['inferencer_same'] = same(one, ds)
    out = osp.join(out_dir, kind)
    res = inferencer(image, return_vis=True, out_dir=out, no_save_pred=False,
                     pred_score_thr=0.0)
    pred, vis = res['predictions'][0], res['visualization'][0]
    f['vis_shape'] = list(vis.shape)
    f['vis_changed'] = float(np.abs(vis.astype(float) -
                                    img[..., ::-1].astype(float)).mean())
    vis_file = osp.join(out, 'vis', osp.basename(image))
    f['vis_file_bytes'] = osp.getsize(vis_file) if osp.isfile(vis_file) else 0
    stem = osp.splitext(osp.basename(image))[0]
    saved = json.load(open(osp.join(out, 'preds', stem + '.json')))
    f['json_keys'] = sorted(saved)
    if 'masks' in saved:
        masks = np.stack([mask_util.decode(m) for m in saved['masks']])
        f['json_masks_equal'] = bool(np.array_equal(
            masks.astype(bool), ds.pred_instances.masks.numpy()))
        f['json_bboxes_equal'] = bool(np.allclose(
            saved['bboxes'], ds.pred_instances.bboxes.numpy(), atol=1e-3))
        f['json_labels_equal'] = saved['labels'] == \
            ds.pred_instances.labels.tolist()
    if 'panoptic_seg_path' in saved:
        png = rgb2id(mmcv.imread(saved['panoptic_seg_path'],
                                 channel_order='rgb'))
        pan = ds.pred_panoptic_seg.sem_seg[0].numpy().copy()
        pan[pan % INSTANCE_OFFSET == len(f['classes'])] = 0  # VOID
        f['json_panoptic_equal'] = bool(np.array_equal(png, pan))

# a checkpoint without meta['dataset_meta'] (plain torch.save): mmdet's
# APIs fall back to the 80 COCO names, the model to its config's names
stem = osp.splitext(osp.basename(image))[0]
for kind, job in jobs.items():
    g = facts[kind]['no_meta'] = {}
    model = init_detector(job['config'], job['no_meta'], device='cpu')
    g['init_detector_classes'] = list(model.dataset_meta['classes'])
    inferencer = DetInferencer(model=job['config'], weights=job['no_meta'],
                               device='cpu', show_progress=False)
    g['inferencer_classes'] = list(inferencer.model.dataset_meta['classes'])
    res = inferencer(image, return_vis=True, pred_score_thr=0.0,
                     out_dir=osp.join(out_dir, kind + '_no_meta'),
                     no_save_pred=False)
    g['vis_shape'] = list(res['visualization'][0].shape)

# MaskDINOInferencer saves what DetInferencer does, and semantic maps
from projects.mask_dino.apis import MaskDINOInferencer
for kind, job in jobs.items():
    g = facts[kind]['maskdino_inferencer'] = {}
    inferencer = MaskDINOInferencer(model=job['config'], weights=job['no_meta'],
                                    device='cpu', show_progress=False)
    ds = inferencer(image, return_datasamples=True)['predictions'][0]
    out = osp.join(out_dir, kind + '_maskdino')
    res = inferencer(image, out_dir=out, no_save_pred=False)
    saved = json.load(open(osp.join(out, 'preds', stem + '.json')))
    g['json_keys'] = sorted(saved)
    g['returned_keys'] = sorted(res['predictions'][0])
    if 'sem_seg_path' in saved:
        png = cv2.imread(saved['sem_seg_path'], cv2.IMREAD_UNCHANGED)
        g['sem_png_dtype'] = str(png.dtype)
        g['sem_png_equal'] = bool(np.array_equal(
            png, ds.pred_sem_seg.sem_seg[0].numpy()))
    arrays = inferencer(img)['predictions'][0]  # nothing saved
    if 'sem_seg' in arrays:
        g['sem_array_equal'] = bool(np.array_equal(
            arrays['sem_seg'], ds.pred_sem_seg.sem_seg[0].numpy()))
json.dump(facts, open(result_file, 'w'))
'''


@pytest.fixture(scope='module')
def api_facts(assets):
    """Run the APIs once in a fresh interpreter, return what it saw."""
    root = assets['root']
    jobs = {k: v for k, v in assets['ckpts'].items()}
    (root / 'jobs.json').write_text(json.dumps(jobs))
    (root / 'api.py').write_text(API_SCRIPT)
    result = root / 'facts.json'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable,
        str(root / 'api.py'),
        str(root / 'jobs.json'),
        str(assets['images'] / 'a.png'),
        str(root / 'inferencer'),
        str(result)
    ],
                          cwd=str(root),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


@pytest.mark.integration  # the APIs run in a subprocess
def test_registration_comes_from_custom_imports(api_facts):
    assert api_facts['imported_at_start'] is False
    assert api_facts['imported_by_mmdet'] is False  # importing mmdet: no
    for kind in KINDS:
        assert api_facts[kind]['module'] == \
            'projects.mask_dino.detectors.maskdino'


@pytest.mark.integration  # the APIs run in a subprocess
@pytest.mark.parametrize('kind', list(KINDS))
def test_init_detector_loads_weights_and_meta(api_facts, assets, kind):
    facts, ckpt = api_facts[kind], assets['ckpts'][kind]
    assert facts['checksum'] == pytest.approx(ckpt['checksum'], rel=1e-9)
    # class names from the checkpoint, not the config nor COCO
    assert facts['classes'] == ckpt['classes']
    assert facts['inferencer_classes'] == ckpt['classes']


@pytest.mark.integration  # the APIs run in a subprocess
@pytest.mark.parametrize('kind', list(KINDS))
def test_inference_detector_outputs(api_facts, kind):
    facts = api_facts[kind]
    _, num_things, num_classes = KINDS[kind]
    expected = dict(
        instance=['pred_instances'],
        panoptic=[
            'pred_instances', 'pred_panoptic_seg', 'pred_sem_seg', 'seg_logits'
        ],
        semantic=['pred_sem_seg', 'seg_logits'])[kind]
    assert facts['fields'] == expected
    assert facts['batch_len'] == 2
    # the first image of a batch gives the single-image result
    assert facts['batch_same'] and all(facts['batch_same'].values())
    if 'ins' in facts:
        ins = facts['ins']
        assert 0 < ins['n'] <= 20  # test_cfg.max_per_image
        assert ins['mask_shape'] == [ins['n'], H, W]
        assert ins['mask_dtype'] == 'torch.bool'
        boxes = np.array(ins['bboxes'])
        assert (boxes[:, 0] <= boxes[:, 2]).all()
        assert (boxes[:, 1] <= boxes[:, 3]).all()
        assert boxes.min() >= 0 and boxes[:, 2].max() <= W
        assert boxes[:, 3].max() <= H
        # instances of a panoptic model are things only
        assert max(ins['labels']) < num_things
        assert min(ins['scores']) >= 0 and max(ins['scores']) <= 1
    if 'pan' in facts:
        assert facts['pan']['shape'] == [1, H, W]
        for value in facts['pan']['values']:
            label, instance = value % INSTANCE_OFFSET, \
                value // INSTANCE_OFFSET
            assert label <= num_classes  # num_classes = void
            if label >= num_things:  # stuff and void carry no instance id
                assert instance == 0
            else:
                assert instance >= 1
    if 'sem' in facts:
        assert facts['sem']['shape'] == [1, H, W]
        assert facts['sem']['logits_shape'] == [num_classes, H, W]
        assert facts['sem']['argmax']
        assert max(facts['sem']['values']) < num_classes


@pytest.mark.integration  # the APIs run in a subprocess
@pytest.mark.parametrize('kind', list(KINDS))
def test_det_inferencer(api_facts, kind):
    facts = api_facts[kind]
    # same predictions as inference_detector on the same image
    assert facts['inferencer_same'] and all(facts['inferencer_same'].values())
    assert facts['vis_shape'] == [H, W, 3]
    assert facts['vis_changed'] > 1.0  # something was drawn
    assert facts['vis_file_bytes'] > 0
    if kind in ('instance', 'panoptic'):
        assert {'labels', 'scores', 'bboxes',
                'masks'} <= set(facts['json_keys'])
        assert facts['json_masks_equal']
        assert facts['json_bboxes_equal']
        assert facts['json_labels_equal']
    if kind == 'panoptic':
        assert 'panoptic_seg_path' in facts['json_keys']
        assert facts['json_panoptic_equal']
    if kind == 'semantic':
        # mmdet's DetInferencer writes no semantic json (image_demo.py does)
        assert facts['json_keys'] == []


@pytest.mark.integration  # the APIs run in a subprocess
@pytest.mark.parametrize('kind', list(KINDS))
def test_checkpoint_without_dataset_meta_uses_config_classes(api_facts, kind):
    # mmdet would name 80 COCO classes and the visualizer would crash on a
    # panoptic (palette) or semantic (class index) picture
    facts = api_facts[kind]['no_meta']
    names = list(CLASSES[:KINDS[kind][2]])
    assert facts['init_detector_classes'] == names
    assert facts['inferencer_classes'] == names
    assert facts['vis_shape'] == [H, W, 3]


@pytest.mark.integration  # the APIs run in a subprocess
@pytest.mark.parametrize('kind', list(KINDS))
def test_maskdino_inferencer_saves_every_task(api_facts, kind):
    facts = api_facts[kind]['maskdino_inferencer']
    expected = dict(
        instance={'labels', 'scores', 'bboxes', 'masks'},
        panoptic={
            'labels', 'scores', 'bboxes', 'masks', 'panoptic_seg_path',
            'sem_seg_path'
        },
        semantic={'sem_seg_path'})[kind]
    assert set(facts['json_keys']) == expected
    assert set(facts['returned_keys']) == expected
    if kind != 'instance':
        assert facts['sem_png_dtype'] == 'uint8'
        assert facts['sem_png_equal'] and facts['sem_array_equal']


# ----------------------------------------------------------------------
# tools/demo/image_demo.py as a command
# ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def demo_run(assets):
    out = assets['root'] / 'demo'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([
        sys.executable, DEMO,
        str(assets['images']),
        config_path('panoptic'), assets['ckpts']['panoptic']['no_meta'],
        '--out-dir',
        str(out), '--device', 'cpu', '--score-thr', '0.0', '--no-progress'
    ],
                          cwd=str(assets['root']),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.integration  # the demo runs in a subprocess
def test_demo_pictures(demo_run):
    sizes = {'a': (H, W), 'b': (90, 120)}
    for stem, (h, w) in sizes.items():
        factor = -(-512 // max(h, w))  # enlarged for readable labels
        for task in ('instance', 'panoptic', 'semantic'):
            path = demo_run / 'vis' / task / f'{stem}.png'
            assert path.stat().st_size > 0
            pic = cv2.imread(str(path))
            assert pic.shape[1] == w * factor
            if task == 'semantic':
                assert pic.shape[0] > h * factor  # + legend
            else:
                assert pic.shape[0] == h * factor
    assert not (demo_run / 'vis' / 'instance' / 'notes.png').exists()


@pytest.mark.integration  # the demo runs in a subprocess
def test_demo_summary_and_class_names(demo_run):
    summary = json.loads((demo_run / 'summary.json').read_text())
    # the checkpoint has no meta: names come from the config
    assert tuple(summary['classes']) == CLASSES
    assert summary['tasks'] == ['instance', 'panoptic', 'semantic']
    assert [c['isthing'] for c in summary['categories']] == [1, 1, 1, 0, 0]
    assert [im['file_name'] for im in summary['images']] == ['a.png', 'b.png']
    assert [im['id'] for im in summary['images']] == [1, 2]
    assert summary['failed'] == []


@pytest.mark.integration  # the demo runs in a subprocess
def test_demo_instance_json_is_coco_results(demo_run):
    summary = json.loads((demo_run / 'summary.json').read_text())
    results = json.loads((demo_run / 'instance' / 'results.json').read_text())
    assert len(results) == sum(im['num_instances'] for im in summary['images'])
    sizes = {im['id']: (im['height'], im['width']) for im in summary['images']}
    for det in results:
        assert det['category_id'] in (1, 2, 3)  # things only
        assert mask_util.decode(det['segmentation']).shape == \
            sizes[det['image_id']]
    # pycocotools reads the file as results and, with the same masks as
    # ground truth, scores them 100 mask AP
    gt = COCO()
    gt.dataset = dict(
        info={},
        images=summary['images'],
        categories=summary['categories'],
        annotations=[
            dict(
                id=i + 1,
                image_id=det['image_id'],
                category_id=det['category_id'],
                segmentation=det['segmentation'],
                area=float(mask_util.area(det['segmentation'])),
                bbox=det['bbox'],
                iscrowd=0) for i, det in enumerate(results)
        ])
    gt.createIndex()
    dets = gt.loadRes(str(demo_run / 'instance' / 'results.json'))
    evaluator = COCOeval(gt, dets, 'segm')
    evaluator.params.areaRng = [[0, 1e10]]
    evaluator.params.areaRngLbl = ['all']
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


@pytest.mark.integration  # the demo runs in a subprocess
def test_demo_panoptic_json_and_png(demo_run):
    pred = json.loads((demo_run / 'panoptic' / 'predictions.json').read_text())
    assert [c['name'] for c in pred['categories']] == list(CLASSES)
    assert len(pred['annotations']) == 2
    for ann in pred['annotations']:
        png = cv2.imread(str(demo_run / 'panoptic' / ann['file_name']))
        ids = rgb2id(png[..., ::-1])
        segments = {s['id']: s for s in ann['segments_info']}
        assert set(np.unique(ids)) - {0} == set(segments)
        for seg_id, seg in segments.items():
            ys, xs = np.nonzero(ids == seg_id)
            assert seg['area'] == len(ys)
            assert seg['bbox'] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1
            ]
            assert seg['isthing'] == int(seg['category_id'] <= 3)


@pytest.mark.integration  # the demo runs in a subprocess
def test_demo_semantic_png(demo_run):
    for stem, shape in (('a', (H, W)), ('b', (90, 120))):
        label = cv2.imread(
            str(demo_run / 'semantic' / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.shape == shape
        assert label.max() < len(CLASSES)


def test_demo_uses_the_datasets_category_ids(assets, tmp_path, capsys):
    """The config's test json (found through ``data_root``) gives the ids,
    with COCO-like gaps; without it, label + 1 and a warning."""
    root = tmp_path / 'coco'
    ids = dict(disc=11, square=25, triangle=40, sky=150, ground=190)
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'panoptic_val2017.json').write_text(
        json.dumps(
            dict(
                images=[],
                annotations=[],
                categories=[
                    dict(id=i, name=n, isthing=int(i < 100))
                    for n, i in reversed(list(ids.items()))
                ])))
    common = dict(
        inputs=[str(assets['images'] / 'a.png')],
        config=config_path('panoptic'),
        checkpoint=assets['ckpts']['panoptic']['no_meta'],
        device='cpu',
        score_thr=0.0,
        progress=False)
    summary = image_demo.run_image_demo(
        out_dir=str(tmp_path / 'with_json'),
        cfg_options=dict(data_root=f'{root}/'),
        **common)
    assert [c['id'] for c in summary['categories']] == list(ids.values())
    results = json.loads(
        (tmp_path / 'with_json' / 'instance' / 'results.json').read_text())
    assert results and {r['category_id'] for r in results} <= {11, 25, 40}
    pan = json.loads((tmp_path / 'with_json' / 'panoptic' /
                      'predictions.json').read_text())
    assert [c['id'] for c in pan['categories']] == list(ids.values())
    for ann in pan['annotations']:
        assert {s['category_id'] for s in ann['segments_info']} <= \
            set(ids.values())

    capsys.readouterr()
    # a data_root without the json (the default one may exist in the cwd)
    summary = image_demo.run_image_demo(
        out_dir=str(tmp_path / 'no_json'),
        cfg_options=dict(data_root=f'{tmp_path}/no_data/'),
        **common)
    assert [c['id'] for c in summary['categories']] == [1, 2, 3, 4, 5]
    assert 'label + 1' in capsys.readouterr().out


# ----------------------------------------------------------------------
# image_demo helpers, against hand computations
# ----------------------------------------------------------------------
def test_collect_images(tmp_path):
    for name in ('b.jpg', 'a.PNG', 'c.txt'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'd.jpg').write_bytes(b'x')
    folder = image_demo.collect_images([str(tmp_path)])
    assert [osp.basename(f) for f in folder] == ['a.PNG', 'b.jpg']
    found = image_demo.collect_images([str(tmp_path / '**' / '*.jpg')])
    assert sorted(osp.basename(f) for f in found) == ['b.jpg', 'd.jpg']
    one = image_demo.collect_images([str(tmp_path / 'b.jpg')])
    assert one == [str(tmp_path / 'b.jpg')]
    with pytest.raises(FileNotFoundError, match='nothing_here'):
        image_demo.collect_images([str(tmp_path / 'nothing_here*.jpg')])


def test_names_and_image_ids():
    names = image_demo.unique_names(['x/000012.jpg', 'y/000012.png', 'z/7'])
    assert names == ['000012', '000012_1', '7']
    assert image_demo.image_ids(['000012', '7']) == [12, 7]
    assert image_demo.image_ids(names) == [1, 2, 3]  # not all numbers
    assert image_demo.image_ids(['5', '005']) == [1, 2]  # same number


def test_instance_results_hand():
    mask = torch.zeros(2, 6, 8, dtype=torch.bool)
    mask[0, 2:5, 1:4] = True
    mask[1, 0, 7] = True
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[1., 2., 4., 5.], [7., 0., 8., 1.]]),
        labels=torch.tensor([2, 0]),
        scores=torch.tensor([0.9, 0.25]),
        masks=mask)
    results = image_demo.instance_results(sample, image_id=42)
    assert [r['category_id'] for r in results] == [3, 1]
    assert results[0]['bbox'] == [1., 2., 3., 3.]
    assert results[1]['bbox'] == [7., 0., 1., 1.]
    assert results[0]['score'] == pytest.approx(0.9)
    assert all(r['image_id'] == 42 for r in results)
    for r, m in zip(results, mask):
        assert isinstance(r['segmentation']['counts'], str)
        assert np.array_equal(
            mask_util.decode(r['segmentation']).astype(bool), m.numpy())
    json.dumps(results)  # serialisable
    # category ids of an annotation file instead of label + 1
    mapped = image_demo.instance_results(sample, 42, cat_ids=[7, 9, 11])
    assert [r['category_id'] for r in mapped] == [11, 7]


def test_category_ids_from_annotation_file(tmp_path):
    ann = tmp_path / 'ann.json'
    ann.write_text(
        json.dumps(
            dict(categories=[
                dict(id=13, name='square'),
                dict(id=4, name='disc'),
                dict(id=21, name='triangle')
            ])))
    assert image_demo.category_ids_from(
        str(ann), ['disc', 'square', 'triangle']) == [4, 13, 21]
    with pytest.raises(ValueError, match=r'ann\.json.*sky'):
        image_demo.category_ids_from(str(ann), ['disc', 'sky'])


def test_panoptic_segments_hand():
    void = 5
    pan = np.full((4, 5), void)
    pan[0, :] = 3  # stuff 'sky' (label 3, no instance id)
    pan[1:3, 0:2] = 0 + 1 * INSTANCE_OFFSET  # thing 0, instance 1
    pan[2:4, 3:5] = 0 + 2 * INSTANCE_OFFSET  # thing 0, instance 2
    ids, segments = image_demo.panoptic_segments(pan, 5, 3)
    # sorted by value: 3, then 1000, 2000; void skipped
    assert [(s['id'], s['category_id'], s['isthing'], s['area'], s['bbox'])
            for s in segments] == [(1, 4, 0, 5, [0, 0, 5, 1]),
                                   (2, 1, 1, 4, [0, 1, 2, 2]),
                                   (3, 1, 1, 4, [3, 2, 2, 2])]
    _, mapped = image_demo.panoptic_segments(pan, 5, 3, [10, 20, 30, 40, 50])
    assert [s['category_id'] for s in mapped] == [40, 10, 10]
    expected = np.array([[1, 1, 1, 1, 1], [2, 2, 0, 0, 0], [2, 2, 0, 3, 3],
                         [0, 0, 0, 3, 3]])
    assert np.array_equal(ids, expected)


def test_semantic_legend_entries_and_drawing():
    sem = np.zeros((4, 4), np.int64)
    sem[:, 1:] = 2  # 75 % class 2, 25 % class 0
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    entries = image_demo.semantic_legend_entries(sem, ['a', 'b', 'c'], palette)
    assert entries == [('c 75%', (0, 0, 255)), ('a 25%', (255, 0, 0))]
    image = np.zeros((50, 200, 3), np.uint8)
    out = image_demo.draw_legend(image, entries)
    assert out.shape[1] == 200 and out.shape[0] > 50
    assert np.array_equal(out[:50], image)
    # the first swatch is filled with the first entry's colour
    assert tuple(out[50 + 6 + 7, 6 + 7]) == (0, 0, 255)


def test_enlarge_is_exact():
    sample = DetDataSample(metainfo=dict(ori_shape=(2, 3)))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 3., 2.]]),
        labels=torch.tensor([0]),
        scores=torch.tensor([1.]),
        masks=torch.tensor([[[True, False, False], [False, False, True]]]))
    sample.pred_sem_seg = PixelData(
        sem_seg=torch.tensor([[[0, 1, 2], [3, 4, 5]]]))
    image = np.zeros((2, 3, 3), np.uint8)
    big, out = image_demo.enlarge(image, sample, 2)
    assert big.shape == (4, 6, 3)
    assert out.pred_instances.bboxes.tolist() == [[0., 0., 5., 3.]]  # clip
    assert out.pred_instances.masks[0].int().tolist() == [[1, 1, 0, 0, 0, 0],
                                                          [1, 1, 0, 0, 0, 0],
                                                          [0, 0, 0, 0, 1, 1],
                                                          [0, 0, 0, 0, 1, 1]]
    assert out.pred_sem_seg.sem_seg[0, ::2, ::2].tolist() == [[0, 1, 2],
                                                              [3, 4, 5]]
    # the input sample is untouched
    assert sample.pred_instances.bboxes.tolist() == [[0., 0., 3., 2.]]


def test_visualizer_draws_empty_panoptic_and_named_palettes():
    from projects.mask_dino.visualization import MaskDINOLocalVisualizer
    vis = MaskDINOLocalVisualizer(name='test_empty_panoptic')
    vis.dataset_meta = dict(classes=('a', 'b', 'c'), palette='random')
    image = np.random.RandomState(0).randint(0, 255, (8, 10, 3), np.uint8)
    empty = DetDataSample()
    empty.pred_panoptic_seg = PixelData(
        sem_seg=torch.full((1, 8, 10), 3, dtype=torch.int32))  # all void
    vis.add_datasample('x', image, empty, draw_gt=False)
    assert np.array_equal(vis.get_image(), image)
    # one segment: drawn as usual
    one = DetDataSample()
    pan = torch.full((1, 8, 10), 3, dtype=torch.int32)
    pan[0, 2:6, 2:6] = 1 + INSTANCE_OFFSET
    one.pred_panoptic_seg = PixelData(sem_seg=pan)
    vis.add_datasample('x', image, one, draw_gt=False)
    drawn = vis.get_image()
    assert not np.array_equal(drawn[2:6, 2:6], image[2:6, 2:6])
    # a named palette for a semantic map
    sem = DetDataSample()
    sem.pred_sem_seg = PixelData(
        sem_seg=torch.tensor([[0] * 5 + [1] * 5] * 8)[None])
    vis.add_datasample('x', image, sem, draw_gt=False)
    assert not np.array_equal(vis.get_image(), image)
