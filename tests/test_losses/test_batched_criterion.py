"""The batched criterion (embedding-sampled masks, batched matching and mask
losses, random points drawn up front) against a plain set-by-set reference
on the tiny configs: same losses and head gradients under the same seed."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import point_sample
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData, PixelData
from scipy.optimize import linear_sum_assignment

import projects.mask_dino  # noqa: F401
from projects.mask_dino.losses import maskdino_criterion

CONFIGS = {
    'panoptic': 'configs/maskdino_tiny_synthetic_panoptic.py',
    'instance': 'configs/maskdino_tiny_synthetic_instance.py',
}
SIZE = 64


def build_model(task):
    register_all_modules()
    cfg = Config.fromfile(CONFIGS[task])
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.batch_augments = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def make_samples(num_things, num_stuff, gts_per_image=((3, 0), (1, 2))):
    """Two images with rectangles of things and, for panoptic, a semantic
    map with stuff; image 1 is padded (smaller img_shape)."""
    gen = torch.Generator().manual_seed(3)
    samples = []
    for i, (n, extra) in enumerate(gts_per_image):
        img_h, img_w = (SIZE, SIZE) if i == 0 else (SIZE - 16, SIZE - 8)
        masks = torch.zeros(n + extra, SIZE, SIZE, dtype=torch.bool)
        boxes = []
        for k in range(n + extra):
            x0, y0 = torch.randint(0, img_w // 2, (2, ), generator=gen)
            x1 = x0 + 6 + int(torch.randint(0, img_w // 2 - 6, (1, ),
                                            generator=gen))
            y1 = y0 + 6 + int(torch.randint(0, img_h // 2 - 6, (1, ),
                                            generator=gen))
            masks[k, y0:y1, x0:x1] = True
            boxes.append([float(x0), float(y0), float(x1), float(y1)])
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(img_h, img_w),
                batch_input_shape=(SIZE, SIZE),
                pad_shape=(SIZE, SIZE)))
        sample.gt_instances = InstanceData(
            labels=torch.randint(0, num_things, (n + extra, ),
                                 generator=gen),
            masks=BitmapMasks(masks.numpy(), SIZE, SIZE),
            bboxes=torch.tensor(boxes).view(-1, 4))
        if num_stuff:
            sem = torch.full((1, SIZE, SIZE), 255, dtype=torch.long)
            sem[:, SIZE // 2:] = num_things  # stuff 0 in the lower half
            sem[:, :, :8] = num_things + num_stuff - 1
            sample.gt_sem_seg = PixelData(sem_seg=sem)
        samples.append(sample)
    return samples


# ----------------------------------------------------------------------------
# plain set-by-set reference: full mask maps of every set, one Hungarian
# matching and one uncertainty sampling per set, as before batching
def head_outputs(model, samples):
    """The head's training outputs on two seeded random images with
    ``samples``' GT (denoising noise seeded), with the GT and metas the
    criterion takes."""
    gen = torch.Generator().manual_seed(1)
    inputs = torch.rand(2, 3, SIZE, SIZE, generator=gen) * 255
    data = model.data_preprocessor(
        dict(inputs=list(inputs), data_samples=samples), True)
    samples = data['data_samples']
    head = model.panoptic_head
    feats = model.extract_feat(data['inputs'])
    gts = head.preprocess_gt(samples)
    metas = [s.metainfo for s in samples]
    torch.manual_seed(2)  # denoising noise
    return head(feats, samples, gts), gts, metas


def ref_match(crit, preds, gts, metas):
    assigner = crit.assigner
    pairs = []
    for b, (gt, meta) in enumerate(zip(gts, metas)):
        if len(gt) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            pairs.append((empty, empty))
            continue
        img_h, img_w = meta['img_shape']
        factor = torch.tensor([img_w, img_h, img_w, img_h])
        points = torch.rand(assigner.num_points, 2)
        pred_masks = point_sample(preds['mask_preds'][b].detach()[:, None],
                                  points.expand(len(preds['cls_scores'][b]),
                                                -1, -1))[:, 0]
        gt_masks = point_sample(gt.masks.float()[:, None],
                                points.expand(len(gt), -1, -1))[:, 0]
        p = InstanceData(
            scores=preds['cls_scores'][b].detach(),
            masks=pred_masks,
            bboxes=bbox_cxcywh_to_xyxy(preds['bbox_preds'][b].detach()) *
            factor)
        g = InstanceData(labels=gt.labels, masks=gt_masks, bboxes=gt.bboxes)
        cost = sum(
            c(pred_instances=p, gt_instances=g, img_meta=meta)
            for c in assigner.match_costs + assigner.box_match_costs)
        rows, cols = linear_sum_assignment(cost.clamp(-1e8, 1e8).numpy())
        pairs.append((torch.from_numpy(rows), torch.from_numpy(cols)))
    return pairs


def ref_set_losses(crit, preds, pairs, gts, metas, avg):
    cls = preds['cls_scores']
    labels = torch.full(cls.shape[:2], crit.num_classes, dtype=torch.long)
    for b, (p, g) in enumerate(pairs):
        labels[b, p] = gts[b].labels[g]
    loss_cls = crit.loss_cls(
        cls.flatten(0, 1), labels.flatten(), avg_factor=avg)
    src = torch.cat([preds['mask_preds'][b][p] for b, (p, _) in
                     enumerate(pairs)])[:, None]
    with torch.no_grad():
        coords = get_uncertain_point_coords_with_randomness(
            src, None, crit.num_points, crit.oversample_ratio,
            crit.importance_sample_ratio)
        tgt = torch.cat([gts[b].masks[g].float() for b, (_, g) in
                         enumerate(pairs)])[:, None]
        tgt = point_sample(tgt, coords)[:, 0]
    logits = point_sample(src, coords)[:, 0]
    bce = F.binary_cross_entropy_with_logits(logits, tgt, reduction='none')
    loss_mask = crit.loss_mask.loss_weight * bce.mean(1).sum() / avg
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * tgt).sum(1) + 1) / (prob.sum(1) + tgt.sum(1) +
                                                1)
    loss_dice = crit.loss_dice.loss_weight * dice.sum() / avg
    src_boxes, tgt_boxes = [], []
    for b, (p, g) in enumerate(pairs):
        img_h, img_w = metas[b]['img_shape']
        factor = torch.tensor([img_w, img_h, img_w, img_h])
        src_boxes.append(preds['bbox_preds'][b][p])
        tgt_boxes.append(bbox_xyxy_to_cxcywh(gts[b].bboxes[g] / factor))
    src_boxes, tgt_boxes = torch.cat(src_boxes), torch.cat(tgt_boxes)
    loss_bbox = crit.loss_bbox(src_boxes, tgt_boxes, avg_factor=avg)
    loss_iou = crit.loss_iou(
        bbox_cxcywh_to_xyxy(src_boxes),
        bbox_cxcywh_to_xyxy(tgt_boxes),
        avg_factor=avg)
    names = ('loss_cls', 'loss_mask', 'loss_dice', 'loss_bbox', 'loss_iou')
    return dict(
        zip(names, (loss_cls, loss_mask, loss_dice, loss_bbox, loss_iou)))


def with_maps(preds, mask_features):
    preds = dict(preds)
    preds['mask_preds'] = torch.einsum('bqc,bchw->bqhw', preds['mask_embed'],
                                       mask_features)
    return preds


def reference_losses(crit, outputs, gts, metas):
    """Set by set in the official order: final set, its dn twin, each aux
    set followed by its dn twin (two-stage: from aux 0), the interm set."""
    feats = outputs['mask_features']
    avg = float(max(sum(len(g) for g in gts), 1))
    dn, meta = outputs['dn_outputs'], outputs['dn_meta']
    dn_pairs = []
    for gt in gts:
        g = torch.arange(len(gt))
        starts = torch.arange(meta['num_groups']) * meta['single_pad']
        dn_pairs.append(((starts[:, None] + g).flatten(),
                         g.repeat(meta['num_groups'])))
    order = [('', outputs, None), ('dn_', dn, dn_pairs)]
    for i, (aux, dn_aux) in enumerate(
            zip(outputs['aux_outputs'], dn['aux_outputs'])):
        order += [(f'd{i}.', aux, None), (f'd{i}.dn_', dn_aux, dn_pairs)]
    order.append(('enc_', outputs['interm_outputs'], None))
    losses = {}
    for prefix, preds, pairs in order:
        preds = with_maps(preds, feats)
        set_avg = avg if pairs is None else avg * meta['num_groups']
        if pairs is None:
            pairs = ref_match(crit, preds, gts, metas)
        for k, v in ref_set_losses(crit, preds, pairs, gts, metas,
                                   set_avg).items():
            losses[prefix + k] = v
    return losses


@pytest.mark.parametrize('task', ['panoptic', 'instance'])
def test_batched_criterion_equals_set_by_set_reference(task):
    model = build_model(task)
    head = model.panoptic_head
    samples = make_samples(head.num_things_classes, head.num_stuff_classes)
    outputs, gts, metas = head_outputs(model, samples)
    assert outputs['dn_outputs'] is not None
    # training sets carry embeddings, no mask maps
    assert outputs['mask_preds'] is None
    assert all(a['mask_preds'] is None for a in outputs['aux_outputs'])

    torch.manual_seed(4)
    losses = head.criterion(outputs, gts, metas)
    next_draw = torch.rand(1)
    torch.manual_seed(4)
    expected = reference_losses(head.criterion, outputs, gts, metas)
    # both consumed the same random numbers
    assert torch.equal(torch.rand(1), next_draw)
    # same keys (two-stage, 3 layers: 5 matching + 4 dn sets, 5 each)
    assert set(losses) == set(expected) and len(losses) == 45
    for key in expected:
        torch.testing.assert_close(
            losses[key], expected[key], rtol=1e-5, atol=1e-7, msg=key)

    params = [p for p in head.parameters() if p.requires_grad]
    grads = torch.autograd.grad(
        sum(losses.values()), params, retain_graph=True, allow_unused=True)
    ref_grads = torch.autograd.grad(
        sum(expected.values()), params, allow_unused=True)
    num_compared = 0
    for (name, _), g, r in zip(
            [(n, p) for n, p in head.named_parameters() if p.requires_grad],
            grads, ref_grads):
        if r is None or not r.abs().max() > 0:
            assert g is None or not g.abs().max() > 0, name
            continue
        num_compared += 1
        assert (g - r).abs().max() <= 1e-5 * r.abs().max(), name
    assert num_compared > 50


def test_mask_losses_do_not_depend_on_the_chunking(monkeypatch):
    """The point-sampled mask losses of all sets run in chunks of about
    ``LOSS_POINTS_PER_CHUNK`` points (``max_rows`` masks): chunks that
    split the masks of a set and image, and the empty blocks of an image
    without GT, give the same losses and gradients as one chunk. Every mask
    is computed once: the chunks hold ``max_rows`` masks, the last fewer,
    as many in all as in one chunk."""
    model = build_model('instance')
    head = model.panoptic_head
    # image 1 without GT: its block of every set is empty
    samples = make_samples(head.num_things_classes, 0, ((3, 0), (0, 0)))
    outputs, gts, metas = head_outputs(model, samples)
    crit = head.criterion
    params = [p for p in head.parameters() if p.requires_grad]
    # the masks of every chunk, read from the calls of the dice loss
    rows_per_call = []
    dice_forward = crit.loss_dice.forward

    def counted_dice(pred, target, **kwargs):
        rows_per_call.append(len(pred))
        return dice_forward(pred, target, **kwargs)

    monkeypatch.setattr(crit.loss_dice, 'forward', counted_dice)
    results = {}
    for max_rows in (None, 1, 5):
        if max_rows is not None:
            monkeypatch.setattr(maskdino_criterion, 'LOSS_POINTS_PER_CHUNK',
                                max_rows * crit.num_points)
        rows_per_call.clear()
        torch.manual_seed(4)
        losses = crit(outputs, gts, metas)
        mask_losses = {
            k: v
            for k, v in losses.items() if k.endswith(('mask', 'dice'))
        }
        grads = torch.autograd.grad(
            sum(mask_losses.values()), params, retain_graph=True,
            allow_unused=True)
        results[max_rows] = (mask_losses, grads, list(rows_per_call))
    one_chunk, _, (num_masks, ) = results[None]
    # 5 matching sets of 3 pairs, 4 dn sets of 3 pairs per dn group
    assert len(one_chunk) == 18 and num_masks > 5 * 3
    for max_rows in (1, 5):
        losses, grads, calls = results[max_rows]
        assert calls == [max_rows] * (num_masks // max_rows) + (
            [num_masks % max_rows] if num_masks % max_rows else [])
        for key, value in one_chunk.items():
            assert value > 0, key
            assert torch.equal(losses[key], value), key
        for grad, ref in zip(grads, results[None][1]):
            assert (grad is None) == (ref is None)
            if ref is not None:
                assert torch.equal(grad, ref)
