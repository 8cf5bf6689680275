"""Box-only Mask DINO (``MaskDINOHead(with_mask=False)``, issue #19): no
mask modules, no mask terms, every parameter trained, boxes without masks,
clear errors for settings that need masks."""
import os.path as osp
import re

import pytest
import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.structures import InstanceData

import projects.mask_dino  # noqa: F401

CONFIG = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    'maskdino_tiny_synthetic_detection.py')


def _model_cfg(options=None):
    """The model of the box-only config with cfg-options ``options``."""
    cfg = Config.fromfile(CONFIG)
    for dotted, value in (options or {}).items():
        *parents, key = dotted.split('.')
        node = cfg
        for part in parents:
            node = node[part]
        node[key] = value  # replaced, not merged
    cfg.model.data_preprocessor.pop('batch_augments', None)
    return cfg.model


def _build(cfg=None):
    model = MODELS.build(cfg or _model_cfg())
    model.init_weights()
    return model


def _sample(boxes, labels, size=64):
    """A data sample with boxes and labels and no masks."""
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(size, size),
            ori_shape=(size, size),
            pad_shape=(size, size),
            batch_input_shape=(size, size),
            scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        labels=torch.as_tensor(labels, dtype=torch.long),
        bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return sample


def _samples():
    return [
        _sample([[4, 4, 30, 40], [30, 10, 60, 30]], [1, 2]),
        _sample([[0, 0, 64, 32]], [0]),
    ]


def _missing_grads(model):
    return [
        n for n, p in model.named_parameters()
        if p.requires_grad and p.grad is None
    ]


def test_no_mask_modules_are_built():
    model = _build()
    head = model.panoptic_head
    assert not head.with_mask
    assert not head.pixel_decoder.with_mask
    assert not head.criterion.with_mask
    assert not model.panoptic_fusion_head.with_mask
    names = [n for n, _ in model.named_parameters()]
    for part in ('mask_embed', 'mask_feature', 'lateral_convs',
                 'output_convs'):
        assert not any(part in n for n in names), part
    # the instance config differs by the mask modules alone
    instance = Config.fromfile(
        CONFIG.replace('_detection.py', '_instance.py')).model
    instance_names = [n for n, _ in MODELS.build(instance).named_parameters()]
    extra = set(instance_names) - set(names)
    assert all(
        n.startswith(('panoptic_head.mask_embed.',
                      'panoptic_head.pixel_decoder.lateral_convs.',
                      'panoptic_head.pixel_decoder.output_convs.',
                      'panoptic_head.pixel_decoder.mask_feature.'))
        for n in extra)
    assert set(names) < set(instance_names)


def test_loss_terms_and_every_parameter_gets_a_gradient():
    """DDP with find_unused_parameters=False: one step reaches every
    parameter."""
    torch.manual_seed(0)
    model = _build()
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), _samples())
    # 3 losses x (final + 3 aux + interm + dn + 3 dn aux)
    assert len(losses) == 3 * 9
    assert {k.rsplit('.', 1)[-1] for k in losses} == {
        'loss_cls', 'loss_bbox', 'loss_iou', 'enc_loss_cls',
        'enc_loss_bbox', 'enc_loss_iou', 'dn_loss_cls', 'dn_loss_bbox',
        'dn_loss_iou'
    }
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses['dn_loss_cls']) > 0  # DN ran
    sum(losses.values()).backward()
    assert _missing_grads(model) == []


def test_empty_batch_still_reaches_every_parameter():
    torch.manual_seed(0)
    model = _build()
    model.train()
    losses = model.loss(
        torch.randn(2, 3, 64, 64),
        [_sample([], []), _sample([], [])])
    assert len(losses) == 27
    assert float(losses['loss_bbox']) == 0.0
    sum(losses.values()).backward()
    assert _missing_grads(model) == []


def test_head_outputs_have_no_mask_entries():
    torch.manual_seed(0)
    model = _build()
    model.train()
    samples = _samples()
    head = model.panoptic_head
    targets = head.preprocess_gt(samples)
    assert [set(t.keys()) for t in targets] == [{'labels', 'bboxes'}] * 2
    outputs = head(model.extract_feat(torch.randn(2, 3, 64, 64)), samples,
                   targets)
    sets = [outputs, outputs['interm_outputs'], outputs['dn_outputs']]
    sets += outputs['aux_outputs'] + outputs['dn_outputs']['aux_outputs']
    for pred_set in sets:
        assert set(k for k in pred_set if not k.endswith('aux_outputs')) & {
            'mask_preds', 'mask_embed', 'mask_features'
        } == set()
    assert 'mask_features' not in outputs


def test_criterion_draws_no_random_numbers():
    """Without masks the criterion samples no points: the RNG state after
    the losses is the one after the forward pass."""
    torch.manual_seed(0)
    model = _build()
    model.train()
    head = model.panoptic_head
    samples = _samples()
    targets = head.preprocess_gt(samples)
    outputs = head(model.extract_feat(torch.randn(2, 3, 64, 64)), samples,
                   targets)
    state = torch.get_rng_state()
    head.criterion(outputs, targets, [s.metainfo for s in samples])
    assert torch.equal(torch.get_rng_state(), state)


def test_predict_gives_boxes_scored_by_class_without_masks():
    torch.manual_seed(0)
    model = _build()
    model.eval()
    inputs = torch.randn(2, 3, 64, 64)
    samples = _samples()
    with torch.no_grad():
        cls_scores, mask_preds, bbox_preds = model.panoptic_head.predict(
            model.extract_feat(inputs), samples)
        results = model.predict(inputs, samples)
    assert mask_preds is None
    k = model.test_cfg.max_per_image
    for i, result in enumerate(results):
        pred = result.pred_instances
        assert set(pred.keys()) == {'bboxes', 'scores', 'labels'}
        assert pred.bboxes.shape == (k, 4)
        expected = cls_scores[i].sigmoid().flatten().topk(k).values
        torch.testing.assert_close(pred.scores, expected)
        assert 'pred_panoptic_seg' not in result
        assert 'pred_sem_seg' not in result


HEAD = 'model.panoptic_head.'


@pytest.mark.parametrize('options, message', [
    ({HEAD + 'initialize_box_type': 'mask2box'}, "initialize_box_type='no'"),
    ({HEAD + 'num_stuff_classes': 2}, 'stuff'),
    ({HEAD + 'criterion.loss_mask': dict(
        type='CrossEntropyLoss', use_sigmoid=True)}, 'loss_mask'),
    ({HEAD + 'criterion.loss_dice': dict(type='DiceLoss')}, 'loss_dice'),
    ({HEAD + 'criterion.assigner.match_costs': [
        dict(type='FocalLossCost', weight=4.0),
        dict(type='DiceCost', weight=5.0)
    ]}, 'DiceCost'),
    ({HEAD + 'criterion.with_mask': True}, 'criterion.with_mask'),
    ({HEAD + 'pixel_decoder.with_mask': True}, 'pixel_decoder.with_mask'),
    ({'model.test_cfg.panoptic_on': True}, 'panoptic_on=False'),
    ({'model.test_cfg.semantic_on': True}, 'semantic_on=False'),
    ({'model.panoptic_fusion_head.with_mask': True},
     'panoptic_fusion_head.with_mask'),
])
def test_settings_that_need_masks_raise_at_build(options, message):
    cfg = _model_cfg(options)
    with pytest.raises(ValueError, match=message):
        MODELS.build(cfg)


def test_fusion_head_rejects_masks():
    head = _build().panoptic_fusion_head
    with pytest.raises(ValueError, match='mask_pred_results must be None'):
        head.predict(
            torch.zeros(1, 20, 3), torch.zeros(1, 20, 16, 16),
            torch.rand(1, 20, 4), [_sample([], []).metainfo])


def test_preprocess_gt_needs_boxes():
    head = _build().panoptic_head
    sample = _sample([], [])
    sample.gt_instances = InstanceData(labels=torch.tensor([1]))
    with pytest.raises(ValueError, match='gt_instances.bboxes'):
        head.preprocess_gt([sample])


def test_assigner_matches_without_masks():
    assigner = TASK_UTILS.build(
        dict(
            type='HybridHungarianAssigner',
            match_costs=[dict(type='FocalLossCost', weight=4.0, eps=1e-8)],
            box_match_costs=[
                dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='IoUCost', iou_mode='giou', weight=2.0)
            ]))
    assert assigner.mask_match_costs == []
    gt_boxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 40., 30.]])
    preds = InstanceData(
        scores=torch.zeros(3, 4),
        bboxes=torch.stack([gt_boxes[1], gt_boxes[0] + 1, gt_boxes[1] + 9]))
    gts = InstanceData(labels=torch.tensor([0, 1]), bboxes=gt_boxes)
    result = assigner.assign(preds, gts, dict(img_shape=(64, 64)))
    assert result.gt_inds.tolist() == [2, 1, 0]

    with_masks = TASK_UTILS.build(
        dict(
            type='HybridHungarianAssigner',
            match_costs=[dict(type='DiceCost', weight=5.0)],
            box_match_costs=[]))
    with pytest.raises(KeyError, match='pred_instances.masks'):
        with_masks.assign(preds, gts, dict(img_shape=(64, 64)))


def test_custom_dataset_doc_snippet_is_the_config_switch():
    """docs/custom_dataset.md's box-only block sets what the box-only
    config sets on the head."""
    doc = osp.join(osp.dirname(osp.dirname(CONFIG)), 'docs',
                   'custom_dataset.md')
    with open(doc) as f:
        blocks = re.findall(r'```python\n(.*?)```', f.read(), flags=re.S)
    block = [b for b in blocks if b.startswith('# box-only')]
    assert len(block) == 1
    namespace = {}
    exec(block[0], namespace)
    expected = Config.fromfile(CONFIG).model.panoptic_head
    snippet = namespace['model']['panoptic_head']
    for key, value in snippet.items():
        if key != 'criterion':
            assert expected[key] == value, key
    for key, value in snippet['criterion'].items():
        if key != 'assigner':
            assert expected.criterion[key] == value, key
    assert [dict(c) for c in expected.criterion.assigner.match_costs] == \
        snippet['criterion']['assigner']['match_costs']


def test_shared_heads_give_no_masks():
    head = _build().panoptic_head
    query = torch.randn(2, 5, head.embed_dims)
    cls_scores, masks = head.forward_heads(query, None)
    assert cls_scores.shape == (2, 5, head.num_classes) and masks is None
    assert head.forward_embeds(query)[1] is None
