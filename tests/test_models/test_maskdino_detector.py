"""End-to-end checks of the Mask DINO detector: loss terms, gradients,
predictions for every task, learning, and the official R50 sizes."""
import numpy as np
import pytest
import torch
from conftest import clone_samples, load_config, make_sample, tiny_cfg
from mmdet.registry import MODELS


def _build(cfg):
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def _instance_samples():
    # labels of the tiny instance config's 3 classes
    return [
        make_sample(64, 64, [[4, 4, 30, 40], [30, 10, 60, 30],
                             [10, 44, 20, 60]], [1, 2, 1]),
        make_sample(64, 64, [[0, 0, 64, 32]], [0]),
    ]


def _panoptic_samples(num_things):
    # the tiny panoptic config's 3 things and 2 stuff classes
    sem = np.full((64, 64), 255)
    sem[32:, :] = num_things
    sem[:16, 40:] = num_things + 1
    return [
        make_sample(64, 64, [[4, 4, 30, 30]], [2], sem_seg=sem),
        make_sample(64, 64, [], [], sem_seg=np.full((64, 64), 1)),
    ]


def test_instance_loss_terms_and_gradients(seed):
    model = _build(tiny_cfg())
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), _instance_samples())
    # 5 final + 3 x 5 aux (initial set + 2 of 3 layers) + 5 interm + 5 dn
    # + 15 dn aux with 3 decoder layers.
    assert len(losses) == 5 * (1 + 3 + 1 + 1 + 3)
    assert all(torch.isfinite(v) for v in losses.values())
    assert {'loss_cls', 'd0.loss_mask', 'enc_loss_bbox', 'dn_loss_dice',
            'd0.dn_loss_iou'} <= set(losses)
    assert losses['dn_loss_cls'] > 0  # DN ran: 1 group of 3 queries
    sum(losses.values()).backward()
    missing = [
        n for n, p in model.named_parameters()
        if p.requires_grad and p.grad is None
    ]
    assert missing == []


def test_empty_batch_skips_dn_but_trains(seed):
    model = _build(tiny_cfg())
    model.train()
    samples = [make_sample(64, 64, [], []), make_sample(64, 64, [], [])]
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    assert len(losses) == 45
    assert float(losses['dn_loss_cls']) == 0.0
    assert float(losses['loss_mask']) == 0.0
    assert float(losses['loss_cls']) > 0
    sum(losses.values()).backward()
    emb = model.panoptic_head.dn_generator.label_embedding.weight
    assert emb.grad is not None  # kept in the graph for DDP
    assert all(
        torch.isfinite(p.grad).all() for p in model.parameters()
        if p.grad is not None)


def test_panoptic_targets_include_stuff_boxes(seed):
    cfg = tiny_cfg('panoptic')
    model = _build(cfg)
    head = model.panoptic_head
    samples = _panoptic_samples(head.num_things_classes)
    targets = head.preprocess_gt(samples)
    t0 = targets[0]
    assert t0.labels.tolist() == [2, 3, 4]
    # Every box is the (exclusive) tight box of its mask.
    assert t0.bboxes.tolist() == [[4, 4, 30, 30], [0, 32, 64, 64],
                                  [40, 0, 64, 16]]
    assert t0.masks.shape == (3, 64, 64) and t0.masks[1].sum() == 32 * 64
    # A thing label in the semantic map is not a stuff segment.
    assert targets[1].labels.numel() == 0
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    assert len(losses) == 45 and all(
        torch.isfinite(v) for v in losses.values())


def test_semantic_single_stage_loss_terms(seed):
    cfg = tiny_cfg('semantic')
    model = _build(cfg)
    head = model.panoptic_head
    assert not hasattr(head, 'enc_output')
    assert head.query_embed.weight.shape == (20, 4)
    assert head.cls_embed.out_features == 6  # 5 classes + no-object
    sem = np.zeros((64, 64))
    sem[:, 32:] = 4
    sem[:8] = 255
    samples = [
        make_sample(64, 64, [], [], sem_seg=sem),
        make_sample(64, 64, [], [], sem_seg=np.full((64, 64), 3)),
    ]
    # Semantic datasets pack no gt_instances fields at all.
    del samples[1].gt_instances
    targets = head.preprocess_gt(samples)
    assert sorted(targets[0].labels.tolist()) == [0, 4]
    assert targets[1].labels.tolist() == [3]
    assert targets[1].bboxes.tolist() == [[0, 0, 64, 64]]
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    # No interm set and no dn loss on the initial set (official): 5 final +
    # 15 aux + 5 dn + 10 dn aux.
    assert len(losses) == 35
    assert 'd0.dn_loss_cls' not in losses and 'd1.dn_loss_cls' in losses


def test_predict_all_tasks_original_size(seed):
    cfg = tiny_cfg('panoptic')
    model = _build(cfg)
    model.eval()
    # Image resized from 48x40 to 64x... (scale 4/3), padded to 64x64.
    samples = [
        make_sample(64, 56, [[4, 4, 30, 30]], [2], ori_shape=(48, 42),
                    pad_shape=(64, 64))
    ]
    with torch.no_grad():
        results = model.predict(torch.randn(1, 3, 64, 64), samples)
    r = results[0]
    assert r.pred_instances.masks.shape[-2:] == (48, 42)
    assert r.pred_instances.bboxes.shape[1] == 4
    assert (r.pred_instances.bboxes[:, 2] <= 42).all()
    assert (r.pred_instances.labels < 3).all()  # things only
    assert r.pred_panoptic_seg.sem_seg.shape == (1, 48, 42)
    assert r.pred_sem_seg.sem_seg.shape == (1, 48, 42)
    assert r.seg_logits.data.shape == (5, 48, 42)


def test_tensor_mode_returns_all_sets(seed):
    model = _build(tiny_cfg())
    model.eval()
    samples = _instance_samples()
    with torch.no_grad():
        (out, ) = model._forward(torch.randn(2, 3, 64, 64), samples)
    assert out['cls_scores'].shape == (2, 20, 3)
    assert len(out['aux_outputs']) == 3
    assert out['interm_outputs']['cls_scores'].shape == (2, 20, 3)


def test_tiny_model_overfits_one_image(seed):
    cfg = tiny_cfg()
    # fewer queries and decoder layers: 40 steps in a few seconds
    cfg.panoptic_head.num_queries = 10
    cfg.panoptic_head.decoder.num_layers = 2
    model = _build(cfg)
    model.train()
    samples = [make_sample(64, 64, [[8, 8, 40, 40], [36, 30, 60, 60]],
                           [1, 2])]
    img = torch.randn(1, 3, 64, 64)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(40):
        losses = model.loss(img, clone_samples(samples))
        total = sum(losses.values())
        optim.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        totals.append(float(total))
    first = np.mean(totals[:3])
    last = np.mean(totals[-3:])
    assert last < 0.5 * first, (first, last)


@pytest.mark.integration  # full-size R50 models
@pytest.mark.parametrize('name,num_terms', [
    ('maskdino_r50_coco_instance.py', 105),
    ('maskdino_r50_ade20k_semantic.py', 95),
])
def test_official_r50_configs(seed, name, num_terms):
    cfg = load_config(name)
    model = _build(cfg.model)
    head_params = {
        id(p): p.numel()
        for n, p in model.named_parameters() if not n.startswith('backbone')
    }
    if name == 'maskdino_r50_coco_instance.py':
        assert sum(head_params.values()) == 28_603_092  # official count
    model.train()
    h = w = 256
    if num_terms == 105:
        samples = [
            make_sample(h, w, [[10, 10, 100, 120], [50, 60, 200, 250]],
                        [0, 17]),
            make_sample(h, w, [[0, 0, 256, 128]], [79]),
        ]
    else:
        sem = np.zeros((h, w))
        sem[100:] = 42
        samples = [
            make_sample(h, w, [], [], sem_seg=sem),
            make_sample(h, w, [], [], sem_seg=sem[::-1].copy()),
        ]
    losses = model.loss(torch.randn(2, 3, h, w), samples)
    assert len(losses) == num_terms
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.integration  # full-size heads
@pytest.mark.parametrize('name,levels,box_init', [
    ('maskdino_swin-l_coco_instance.py', 5, 'bitmask'),
    ('maskdino_swin-l_coco_panoptic.py', 5, 'no'),
    ('maskdino_r50_coco_panoptic.py', 4, 'no'),
])
def test_variant_heads(name, levels, box_init):
    head = MODELS.build(load_config(name).model.panoptic_head)
    assert head.num_levels == levels
    assert head.initialize_box_type == box_init
    if name == 'maskdino_swin-l_coco_instance.py':
        # Official Swin-L 5-level head: 27.60 M parameters (spec, rounded).
        n = sum(p.numel() for p in head.parameters())
        assert abs(n - 27.60e6) < 0.005e6, n


def test_parse_losses_equals_mmengine_without_scalar_means():
    """Same total (bit for bit), log variables and errors as mmengine's
    ``parse_losses``; 0-dim losses are not passed through ``mean()``."""
    from mmengine.model import BaseModel

    from projects.mask_dino.detectors.maskdino import MaskDINO
    g = torch.Generator().manual_seed(0)
    losses = {
        f'd{i}.loss_{k}': torch.rand((), generator=g, requires_grad=True)
        for i in range(4) for k in ('cls', 'mask', 'dice')
    }
    losses.update(
        acc=torch.tensor(97.0),
        loss_vec=torch.rand(3, generator=g),
        loss_list=[torch.rand(2, generator=g),
                   torch.rand((), generator=g)])
    model = MaskDINO.__new__(MaskDINO)
    total, log_vars = model.parse_losses(losses)
    ref_total, ref_vars = BaseModel.parse_losses(model, losses)
    assert torch.equal(total, ref_total)
    assert list(log_vars) == list(ref_vars)
    for name in ref_vars:
        assert torch.equal(log_vars[name], ref_vars[name])
    assert log_vars['d0.loss_cls'] is losses['d0.loss_cls']
    with pytest.raises(TypeError, match='loss_bad is not a tensor'):
        model.parse_losses({'loss_bad': 1.0})
