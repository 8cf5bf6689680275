"""projects/mask_dino/benchmarks (tools/benchmarks/learn_synthetic.py): the
peer adaptations (Mask2Former's semantic output, DINO's decoder at any
width), the setup check, and a short end-to-end run of the command that
prints the side-by-side table."""
import json
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from mmdet.models.layers.transformer import dino_layers
from mmdet.models.layers.transformer.utils import coordinate_to_encoding
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

# peers: the module the benchmark configs load with custom_imports
from projects.mask_dino.benchmarks import learning, peers

SCRIPT = osp.join(REPO, 'tools', 'benchmarks', 'learn_synthetic.py')


# ----------------------------------------------------------------------
# Mask2Former's semantic output
# ----------------------------------------------------------------------
def test_semantic_postprocess_matches_brute_force():
    torch.manual_seed(0)
    num_queries, num_classes, h, w = 3, 3, 4, 5
    mask_cls = torch.randn(num_queries, num_classes + 1)
    mask_pred = torch.randn(num_queries, h, w)
    head = peers.SemanticMaskFormerFusionHead(
        num_things_classes=2, num_stuff_classes=1)
    got = head.semantic_postprocess(mask_cls, mask_pred).sem_seg

    expected = torch.zeros(num_classes, h, w)
    for q in range(num_queries):
        exp = [math.exp(v) for v in mask_cls[q].tolist()]
        for c in range(num_classes):  # the no-object column is dropped
            prob = exp[c] / sum(exp)
            for y in range(h):
                for x in range(w):
                    sig = 1 / (1 + math.exp(-mask_pred[q, y, x].item()))
                    expected[c, y, x] += prob * sig
    assert got.shape == (num_classes, h, w)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_predict_crops_rescales_and_stores_argmax():
    """Semantic maps are made from the cropped, resized masks, as the
    panoptic ones, and the detector stores their argmax as pred_sem_seg."""
    torch.manual_seed(1)
    head = peers.SemanticMaskFormerFusionHead(
        num_things_classes=2,
        num_stuff_classes=1,
        test_cfg=dict(panoptic_on=False, instance_on=False, semantic_on=True))
    mask_cls = torch.randn(1, 4, 4)
    mask_pred = torch.randn(1, 4, 8, 8)
    sample = DetDataSample(metainfo=dict(img_shape=(6, 8), ori_shape=(12, 16)))
    sem = head.predict(mask_cls, mask_pred, [sample], rescale=True)[0]
    assert list(sem) == ['sem_results']
    resized = torch.nn.functional.interpolate(
        mask_pred[:, :, :6],
        size=(12, 16),
        mode='bilinear',
        align_corners=False)[0]
    expected = head.semantic_postprocess(mask_cls[0], resized).sem_seg
    torch.testing.assert_close(sem['sem_results'].sem_seg, expected)

    scores = torch.zeros(3, 2, 2)
    scores[2, 0, 0] = scores[1, 0, 1] = scores[0, 1, :] = 1.0
    results = [dict(sem_results=PixelData(sem_seg=scores))]
    # the method uses no attribute of the detector
    detector = object.__new__(peers.SemanticMask2Former)
    out = detector.add_pred_to_datasample([DetDataSample()], results)[0]
    assert out.pred_sem_seg.sem_seg.tolist() == [[[2, 1], [0, 0]]]


# ----------------------------------------------------------------------
# DINO's decoder at any width
# ----------------------------------------------------------------------
def _decoder_inputs(embed_dims: int, seed: int = 0) -> dict:
    """Random inputs for a 1-level, 1-layer DINO decoder (batch 2)."""
    g = torch.Generator().manual_seed(seed)
    num_queries, (h, w) = 5, (4, 4)
    return dict(
        query=torch.randn(2, num_queries, embed_dims, generator=g),
        value=torch.randn(2, h * w, embed_dims, generator=g),
        key_padding_mask=torch.zeros(2, h * w, dtype=torch.bool),
        self_attn_mask=None,
        reference_points=torch.rand(2, num_queries, 4, generator=g),
        spatial_shapes=torch.tensor([[h, w]]),
        level_start_index=torch.tensor([0]),
        valid_ratios=torch.tensor([[[1.0, 1.0]], [[0.75, 0.5]]]))


def _decoder_cfg(embed_dims: int) -> dict:
    return dict(
        num_layers=1,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
            cross_attn_cfg=dict(
                embed_dims=embed_dims, num_levels=1, num_heads=4),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=64)),
        post_norm_cfg=None,
        return_intermediate=True)


def test_any_width_dino_decoder_sizes_the_sine_embedding():
    torch.manual_seed(0)
    decoder = peers.AnyWidthDinoTransformerDecoder(**_decoder_cfg(32))
    decoder.eval()
    reg_branches = torch.nn.ModuleList([torch.nn.Linear(32, 4)])
    inputs = _decoder_inputs(32)
    seen = []
    decoder.ref_point_head.register_forward_hook(
        lambda module, args, out: seen.append(args[0]))
    states, refs = decoder(reg_branches=reg_branches, **inputs)
    assert states.shape == (1, 2, 5, 32) and refs.shape == (2, 2, 5, 4)
    # the first layer's embedding: 16 features per coordinate of the
    # reference boxes scaled by the valid ratios
    scaled = inputs['reference_points'] * torch.cat(
        [inputs['valid_ratios'], inputs['valid_ratios']], -1)[:, 0][:, None]
    torch.testing.assert_close(seen[0],
                               coordinate_to_encoding(scaled, num_feats=16))
    # mmdet's function is back in place, and its decoder fails at 32-d
    assert dino_layers.coordinate_to_encoding is coordinate_to_encoding
    mmdet_decoder = dino_layers.DinoTransformerDecoder(**_decoder_cfg(32))
    with pytest.raises(RuntimeError, match='shapes cannot be multiplied'):
        mmdet_decoder(reg_branches=reg_branches, **inputs)


def test_any_width_dino_decoder_is_mmdets_at_256():
    torch.manual_seed(0)
    ours = peers.AnyWidthDinoTransformerDecoder(**_decoder_cfg(256))
    theirs = dino_layers.DinoTransformerDecoder(**_decoder_cfg(256))
    theirs.load_state_dict(ours.state_dict())
    ours.eval(), theirs.eval()  # no dropout
    reg_branches = torch.nn.ModuleList([torch.nn.Linear(256, 4)])
    inputs = _decoder_inputs(256, seed=3)
    for a, b in zip(
            ours(reg_branches=reg_branches, **inputs),
            theirs(reg_branches=reg_branches, **inputs)):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------
# setup check
# ----------------------------------------------------------------------
def test_setup_check_accepts_the_peers_and_reports_changes(tmp_path):

    def config(name):
        return learning.build_config(name, str(tmp_path), str(tmp_path), 50, 0)

    panoptic, instance = config('maskdino'), config('maskdino_instance')
    m2f, dino = config('mask2former'), config('dino')
    assert learning.setup_differences(m2f, panoptic) == []
    assert learning.setup_differences(dino, instance) == []
    # the rescaled schedule: warm-up kept within the run, step at 80%
    assert dino.param_scheduler[1].milestones == [40]
    assert dino.train_cfg.max_iters == 50

    dino.optim_wrapper.optimizer.lr = 2e-3
    dino.model.backbone.depth = 34
    dino.model.decoder.num_layers = 6
    dino.train_dataloader.batch_size = 4
    diffs = learning.setup_differences(dino, instance)
    assert [d.split(':')[0]
            for d in diffs] == ['backbone', 'transformer', 'batch_size', 'lr']
    assert "'depth': 34" in diffs[0] and "'depth': 18" in diffs[0]
    assert "'decoder_layers': 6" in diffs[1]
    assert "'decoder_layers': 3" in diffs[1]
    assert diffs[3] == 'lr: 0.002 (Mask DINO: 0.001)'
    assert learning.describe_setup(m2f) == (
        'ResNet-18 (stem 8 ch, GN, from scratch), 32-d, 1 encoder + 3 '
        'decoder layers, 20 queries, batch 2, lr 0.001')


# ----------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------
@pytest.mark.integration  # a subprocess training three tiny models
def test_short_run_prints_and_writes_the_table(tmp_path):
    """Three models, 3 iterations each, on a 6 + 4 image dataset."""
    out_dir = tmp_path / 'out'
    cmd = [
        sys.executable, SCRIPT, '--iters', '3', '--num-train', '6',
        '--num-val', '4', '--data-root',
        str(tmp_path / 'data'), '--out-dir',
        str(out_dir), '--threads', '1'
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = json.loads((out_dir / 'results.json').read_text())
    assert list(report['results']) == ['maskdino', 'mask2former', 'dino']
    assert report['pending'] == [] and report['setup_differences'] == {}
    assert report['data']['num_train'] == 6
    assert report['data']['num_val'] == 4
    for name, res in report['results'].items():
        assert res['iters'] == 3, name
        assert math.isfinite(res['loss_first']), name
        assert 200_000 < res['parameters'] < 350_000, name
        m = res['metrics']
        produced = ['box_AP'] if name == 'dino' else [
            'box_AP', 'mask_AP', 'PQ', 'mIoU'
        ]
        for key in ('box_AP', 'mask_AP', 'PQ', 'mIoU'):
            if key in produced:
                assert 0 <= m[key] <= 100, (name, key, m[key])
            else:
                assert math.isnan(m[key]), (name, key, m[key])
    # one semantic result per model that has one: mIoU came from the
    # evaluator, not a default
    assert 'sem_seg/mIoU' in report['results']['mask2former']['raw_metrics']
    assert 'coco/segm_mAP' not in report['results']['dino']['raw_metrics']

    header = ('| model | parameters | iters | train time | s/it | CPU time | '
              'box AP | mask AP | PQ | mIoU |')
    rows = [
        line.strip() for line in proc.stdout.splitlines()
        if line.strip().startswith('| ')
    ]
    assert rows[0] == header
    assert [r.split(' | ')[0] for r in rows[1:]] == [
        '| Mask DINO (panoptic)', '| Mask2Former (panoptic)', '| DINO (boxes)'
    ]
    dino_row = rows[3].split(' | ')
    assert dino_row[2] == '3' and dino_row[7:] == ['n/a', 'n/a', 'n/a |']
    markdown = (out_dir / 'results.md').read_text()
    assert all(row in markdown for row in rows)
    assert markdown.count('| ResNet-18 (stem 8 ch, GN, from scratch), '
                          '32-d') == 3
