"""Training-engine parts: grouped loss log, per-iteration seeding, bf16 AMP
wrapper, gradient coverage (DDP without find_unused_parameters) and
activation checkpointing."""
import math
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import make_sample, tiny_cfg
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from projects.mask_dino.runtime import (BF16AmpOptimWrapper,
                                        GroupedLossLogProcessor,
                                        IterationSeedHook, group_loss_terms,
                                        iteration_seed)
from projects.mask_dino.runtime.log_processor import MASKDINO_LOSS_GROUPS

GROUPS = [(name, re.compile(p)) for name, p in MASKDINO_LOSS_GROUPS]


def build_tiny(task='instance', **head_cfg):
    torch.manual_seed(0)
    cfg = tiny_cfg(task)
    for key, value in head_cfg.items():
        cfg.panoptic_head[key].update(value)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    return model


def tiny_batch(model, with_gt=True):
    if with_gt:
        samples = [
            make_sample(64, 64, [(4, 4, 30, 40), (20, 10, 60, 50)], [1, 2]),
            make_sample(64, 64, [(10, 10, 50, 30)], [0])
        ]
    else:
        samples = [make_sample(64, 64, [], []), make_sample(64, 64, [], [])]
    gen = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 64, 64, generator=gen) * 255
    return model.data_preprocessor(
        dict(inputs=list(imgs), data_samples=samples), True)


# ----------------------------------------------------------- log processor
def test_group_loss_terms_sums_and_keeps_order():
    scalars = {
        'lr': 1e-4,
        'loss': 20.0,
        'loss_cls': 1.0,
        'd0.loss_cls': 2.0,
        'd0.dn_loss_cls': 0.25,
        'dn_loss_mask': 0.5,
        'enc_loss_iou': 3.0,
        'd1.loss_mask': 4.0,
        'loss_extra': 7.0,  # in no group: stays visible
        'grad_norm': 9.0,
    }
    grouped, members = group_loss_terms(scalars, GROUPS)
    assert list(grouped) == [
        'lr', 'loss', 'loss_cls', 'aux_loss', 'dn_loss', 'enc_loss',
        'loss_extra', 'grad_norm'
    ]
    assert grouped['aux_loss'] == 2.0 + 4.0
    # d{i}.dn_* terms are denoising, not auxiliary (first group wins)
    assert grouped['dn_loss'] == 0.25 + 0.5
    assert grouped['enc_loss'] == 3.0
    assert set(members) == {
        'd0.loss_cls', 'd0.dn_loss_cls', 'dn_loss_mask', 'enc_loss_iou',
        'd1.loss_mask'
    }
    # with the hierarchy prefix the groups are prefixed too
    grouped, _ = group_loss_terms({'train/d0.loss_cls': 2.0}, GROUPS, 'train/')
    assert grouped == {'train/aux_loss': 2.0}


def _fake_runner(history):
    hub = MessageHub.get_instance('test_train_engine_log')
    for step, values in enumerate(history):
        for key, value in values.items():
            hub.update_scalar(f'train/{key}', value)
    hub.update_info('eta', 12)
    return SimpleNamespace(
        message_hub=hub,
        iter=len(history) - 1,
        max_iters=100,
        _train_loop=object())


@pytest.mark.parametrize('hierarchy', [False, True])
def test_grouped_log_processor_line_and_tag(hierarchy):
    # two iterations; lr, data_time and dn_loss_cls stay the same
    keys = ('time', 'loss', 'loss_cls', 'd0.loss_cls', 'd1.loss_cls',
            'd0.dn_loss_cls', 'enc_loss_cls')
    history = [
        dict(lr=1e-3, data_time=0.1, dn_loss_cls=0.5, **dict(zip(keys, row)))
        for row in [(0.5, 10.0, 1.0, 2.0, 3.0, 1.5, 2.0),
                    (0.7, 14.0, 3.0, 4.0, 1.0, 2.5, 3.0)]
    ]
    runner = _fake_runner(history)
    proc = GroupedLossLogProcessor(
        window_size=2, by_epoch=False, log_with_hierarchy=hierarchy)
    tag, line = proc.get_log_after_iter(runner, 1, 'train')
    # window means: aux = mean(2,4) + mean(3,1) = 5, dn = 0.5 + 2 = 2.5
    assert 'loss: 12.0000' in line
    assert 'loss_cls: 2.0000' in line
    assert 'aux_loss: 5.0000' in line
    assert 'dn_loss: 2.5000' in line
    assert 'enc_loss: 2.5000' in line
    assert 'd0.loss_cls' not in line and 'dn_loss_cls' not in line
    assert 'eta: 0:00:12' in line
    prefix = 'train/' if hierarchy else ''
    # every term and every group sum reaches the vis backends
    assert tag[prefix + 'd0.loss_cls'] == 3.0
    assert tag[prefix + 'd0.dn_loss_cls'] == 2.0
    assert tag[prefix + 'aux_loss'] == 5.0
    assert tag[prefix + 'loss'] == 12.0
    if not hierarchy:
        assert not any(k.startswith('train/') for k in tag)
    assert proc._hidden is None  # state of one call does not leak


def test_grouped_log_processor_rejects_bad_groups():
    with pytest.raises(ValueError, match='loss_groups'):
        GroupedLossLogProcessor(loss_groups=[('aux_loss', )])


# --------------------------------------------------------- iteration seed
def test_iteration_seed_hook_depends_on_seed_iter_rank_only():
    hook = IterationSeedHook()

    def draw(seed, it):
        torch.manual_seed(1234 + it)  # whatever state came before
        torch.rand(7)
        hook.before_train_iter(SimpleNamespace(seed=seed, iter=it), it)
        return torch.rand(5)

    assert torch.equal(draw(0, 3), draw(0, 3))
    assert not torch.equal(draw(0, 3), draw(0, 4))
    assert not torch.equal(draw(0, 3), draw(1, 3))
    assert iteration_seed(0, 3, 0) == iteration_seed(0, 3, 0)
    assert len({iteration_seed(0, i, r)
                for i in range(50)
                for r in range(4)}) == 200
    with pytest.raises(ValueError, match='>= 0'):
        iteration_seed(0, -1, 0)


# ------------------------------------------------------------- bf16 AMP
def test_bf16_amp_wrapper_keeps_fp32_where_needed():
    model = build_tiny()
    data = tiny_batch(model)
    dtypes = {}

    def record(name):

        def hook(module, args, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            dtypes[name] = out.dtype

        return hook

    head = model.panoptic_head
    model.backbone.conv1.register_forward_hook(record('backbone'))
    head.pixel_decoder.register_forward_hook(record('pixel_decoder'))
    head.decoder.register_forward_hook(record('decoder'))
    head.cls_embed.register_forward_hook(record('cls_embed'))
    wrapper = BF16AmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=1e-3))
    before = head.cls_embed.weight.detach().clone()
    with wrapper.optim_context(model):
        losses = model(**data, mode='loss')
    assert dtypes['backbone'] == torch.bfloat16
    assert dtypes['cls_embed'] == torch.bfloat16
    # deformable encoder and decoder run in fp32 under autocast
    assert dtypes['pixel_decoder'] == torch.float32
    assert dtypes['decoder'] == torch.float32
    assert len(losses) == 45
    for name, value in losses.items():
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value), name
    loss = sum(losses.values())
    wrapper.update_params(loss)
    after = head.cls_embed.weight.detach()
    assert torch.isfinite(after).all()
    assert not torch.equal(before, after)
    assert isinstance(wrapper, OptimWrapper)


def test_matching_and_losses_ignore_autocast():
    """The criterion (Hungarian matching + losses) computes in fp32 even
    inside a bf16 autocast region: same predictions, same seed, bitwise
    the same 45 losses."""
    model = build_tiny()
    data = tiny_batch(model)
    head = model.panoptic_head
    samples = data['data_samples']
    metas = [s.metainfo for s in samples]
    with torch.no_grad():
        gts = head.preprocess_gt(samples)
        torch.manual_seed(1)
        outputs = head(model.extract_feat(data['inputs']), samples, gts)

    def losses(autocast):
        torch.manual_seed(2)  # matching and loss point sampling
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
            # the region does cast: a matmul comes out in bf16
            ones = torch.ones(2, 2)
            assert ((ones @ ones).dtype == torch.bfloat16) == autocast
            return head.criterion(outputs, gts, metas)

    fp32, mixed = losses(False), losses(True)
    assert len(fp32) == 45
    for key, value in fp32.items():
        assert mixed[key].dtype == torch.float32, key
        assert torch.equal(mixed[key], value), key


# --------------------------------------------------- gradient coverage
@pytest.mark.parametrize(
    'task,num_losses',
    [
        ('instance', 45),  # two-stage, mask2box, DN
        ('semantic', 35),  # single-stage, learned queries
    ])
@pytest.mark.parametrize('with_gt', [True, False])
def test_every_parameter_gets_a_gradient(task, num_losses, with_gt):
    """DDP runs with find_unused_parameters=False: every trainable
    parameter must be reached by one backward, also when the batch has no
    GT and denoising is skipped."""
    model = build_tiny(task)
    data = tiny_batch(model, with_gt)
    torch.manual_seed(1)
    losses = model(**data, mode='loss')
    assert len(losses) == num_losses
    dn_losses = [v for k, v in losses.items() if 'dn_loss' in k]
    if not with_gt:
        assert all(v.item() == 0 for v in dn_losses)
    sum(losses.values()).backward()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(params) > 100
    missing = [n for n, p in params.items() if p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    label_grad = model.panoptic_head.dn_generator.label_embedding.weight.grad
    # DN uses the label embedding with GT; without GT it is kept in the
    # graph with a zero-valued term only
    assert (label_grad.abs().sum() > 0) == with_gt


# ------------------------------------------------ activation checkpoint
def _count_calls(modules):
    counts = [0] * len(modules)

    def make(i):

        def hook(module, args):
            counts[i] += 1

        return hook

    for i, m in enumerate(modules):
        m.register_forward_pre_hook(make(i))
    return counts


def _step(with_cp):
    model = build_tiny(
        pixel_decoder=dict(with_cp=with_cp, encoder=dict(num_layers=2)),
        decoder=dict(with_cp=with_cp))
    head = model.panoptic_head
    enc_calls = _count_calls(head.pixel_decoder.encoder.layers)
    dec_calls = _count_calls(head.decoder.layers)
    data = tiny_batch(model)
    torch.manual_seed(1)
    losses = model(**data, mode='loss')
    sum(losses.values()).backward()
    grads = {
        n: p.grad.clone()
        for n, p in model.named_parameters() if p.grad is not None
    }
    return losses, grads, enc_calls, dec_calls, model


def test_activation_checkpointing_same_outputs_and_gradients():
    losses0, grads0, enc0, dec0, _ = _step(False)
    losses1, grads1, enc1, dec1, model = _step(True)
    # without checkpointing each layer runs once, with it the backward
    # pass recomputes each layer once more
    assert enc0 == [1, 1] and dec0 == [1, 1, 1]
    assert enc1 == [2, 2] and dec1 == [2, 2, 2]
    assert losses0.keys() == losses1.keys()
    for key in losses0:
        assert math.isclose(
            losses0[key].item(), losses1[key].item(), abs_tol=1e-6), key
    assert grads0.keys() == grads1.keys()
    for name in grads0:
        torch.testing.assert_close(
            grads1[name], grads0[name], rtol=0, atol=1e-6, msg=name)
    # no checkpointing (no recomputation) at inference
    model.eval()
    head = model.panoptic_head
    calls = _count_calls(head.pixel_decoder.encoder.layers)
    with torch.no_grad():
        model(**tiny_batch(model), mode='tensor')
    assert calls == [1, 1]
