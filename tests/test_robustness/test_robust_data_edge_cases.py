"""Edge cases through the real data pipelines (COCO / ADE formats written
on the fly) and the tiny model: crowd-only and empty images, non-contiguous
category ids, grayscale and RGBA images, 16-bit label PNGs, tiny images,
masks that vanish in the crop or the resize, objects on the border."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoMetric
from robust_common import (ade_dataset, box_to_polygon, build_tiny,
                           check_instance_predictions, coco_dataset,
                           encode_rle, image_test_pipeline,
                           instance_train_pipeline, loss_on_batch,
                           predict_on_batch, textured_image,
                           tiny_instance_model, write_coco)

CATS = [dict(id=1, name='a'), dict(id=2, name='b'), dict(id=3, name='c')]


def _rect_ann(x0, y0, x1, y1, cat=1, **kw):
    return dict(
        bbox=[x0, y0, x1 - x0, y1 - y0],
        segmentation=box_to_polygon(x0, y0, x1, y1),
        category_id=cat,
        **kw)


def _instance_model(num_classes=3, seed=0):
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    model = MODELS.build(tiny_instance_model(num_classes))
    model.init_weights()
    model.train()
    return model


def _train_and_predict(model, items, num_classes=3):
    losses = loss_on_batch(model, items)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert all(
        torch.isfinite(p.grad).all() for p in model.parameters()
        if p.grad is not None)
    model.zero_grad()
    results = predict_on_batch(model, items)
    check_instance_predictions(results, num_classes)
    return losses, results


def test_crowd_only_and_unannotated_images(tmp_path):
    crowd = np.zeros((64, 64), dtype=np.uint8)
    crowd[10:40, 5:50] = 1
    images = [
        dict(
            file_name='crowd.png',
            array=textured_image(64, 64, 1),
            anns=[
                dict(
                    bbox=[5, 10, 45, 30],
                    segmentation=encode_rle(crowd),
                    category_id=2,
                    iscrowd=1)
            ]),
        dict(file_name='empty.png', array=textured_image(64, 64, 2)),
    ]
    ann = write_coco(str(tmp_path), images, CATS)
    # the COCO instance configs filter images without annotations; a
    # crowd-only image has one, so it is kept and trained on
    kept = coco_dataset(
        str(tmp_path), ann, 'abc', filter_cfg=dict(filter_empty_gt=True))
    assert [
        osp.basename(kept[i]['data_samples'].img_path)
        for i in range(len(kept))
    ] == ['crowd.png']
    dataset = coco_dataset(str(tmp_path), ann, 'abc')
    items = [dataset[0], dataset[1]]
    sample = items[0]['data_samples']
    assert len(sample.gt_instances) == 0  # crowd is never a target
    assert len(sample.ignored_instances) == 1
    assert sample.ignored_instances.labels.tolist() == [1]
    model = _instance_model()
    losses, _ = _train_and_predict(model, items)
    assert float(losses['dn_loss_cls']) == 0  # no GT: DN skipped


def test_non_contiguous_category_ids_round_trip(tmp_path):
    cats = [dict(id=3, name='a'), dict(id=17, name='b'), dict(id=90, name='c')]
    boxes = [(4, 4, 30, 30, 90), (34, 10, 60, 50, 3)]
    images = [
        dict(
            file_name='x.png',
            array=textured_image(64, 64),
            anns=[_rect_ann(*b[:4], cat=b[4]) for b in boxes])
    ]
    ann = write_coco(str(tmp_path), images, cats)
    dataset = coco_dataset(str(tmp_path), ann, 'abc')
    sample = dataset[0]['data_samples']
    assert sample.gt_instances.labels.tolist() == [2, 0]
    model = _instance_model()
    _train_and_predict(model, [dataset[0]])
    # predictions in contiguous labels are written back with the original
    # ids: predicting the GT exactly gives AP 1
    metric = CocoMetric(ann_file=ann, metric='bbox')
    metric.dataset_meta = dataset.metainfo
    gt = sample.gt_instances
    metric.process({}, [
        dict(
            img_id=sample.img_id,
            ori_shape=(64, 64),
            pred_instances=dict(
                bboxes=gt.bboxes.tensor,
                scores=torch.tensor([0.9, 0.8]),
                labels=gt.labels))
    ])
    results = metric.compute_metrics(metric.results)
    assert results['bbox_mAP'] == pytest.approx(1.0)


def test_grayscale_and_rgba_images(tmp_path):
    gray = textured_image(64, 64)[..., 0]
    rgba = np.dstack(
        [textured_image(64, 64, 3),
         np.full((64, 64), 7, dtype=np.uint8)])
    images = [
        dict(file_name='gray.png', array=gray, anns=[_rect_ann(4, 4, 40, 40)]),
        dict(
            file_name='rgba.png',
            array=rgba,
            anns=[_rect_ann(20, 20, 60, 60, cat=3)]),
    ]
    ann = write_coco(str(tmp_path), images, CATS)
    dataset = coco_dataset(str(tmp_path), ann, 'abc')
    items = [dataset[0], dataset[1]]
    g, c = items[0]['inputs'], items[1]['inputs']
    assert g.shape == c.shape == (3, 64, 64)
    # grey is replicated, alpha is dropped (BGR order as cv2 reads it)
    assert (g[0] == torch.from_numpy(gray)).all() and (g[0] == g[2]).all()
    assert (c == torch.from_numpy(rgba[..., :3]).permute(2, 0, 1)).all()
    _train_and_predict(_instance_model(), items)


def test_sixteen_bit_label_png_and_ignore_label(tmp_path):
    """ADE layout with a uint16 label PNG; 0 -> ignore (255)."""
    label = np.zeros((40, 48), dtype=np.uint16)
    label[8:20] = 3
    label[20:] = 5  # -> 4, the last class of the tiny semantic config
    dataset = ade_dataset(str(tmp_path), label)
    assert cv2.imread(osp.join(str(tmp_path), 'ann', 'a.png'),
                      cv2.IMREAD_UNCHANGED).dtype == np.uint16
    item = dataset[0]
    sem = item['data_samples'].gt_sem_seg.sem_seg
    assert sem.dtype == torch.uint16  # what the loader gives the model
    assert sorted(torch.unique(sem.long()).tolist()) == [2, 4, 255]
    model = build_tiny('semantic')
    head = model.panoptic_head
    item['data_samples'].set_metainfo(dict(batch_input_shape=(40, 48)))
    targets = head.preprocess_gt([item['data_samples']])
    assert sorted(targets[0].labels.tolist()) == [2, 4]
    assert targets[0].masks[targets[0].labels == 2].sum() == 12 * 48
    losses = loss_on_batch(model, [dataset[0], dataset[0]])
    assert all(torch.isfinite(v) for v in losses.values())
    result = predict_on_batch(model, [dataset[0]])[0]
    assert result.pred_sem_seg.sem_seg.shape == (1, 40, 48)


def test_tiny_images_through_train_and_test_pipelines(tmp_path):
    images = [
        dict(
            file_name='t1.png',
            array=textured_image(9, 12),
            anns=[_rect_ann(1, 1, 8, 6)]),
        dict(
            file_name='t2.png',
            array=textured_image(3, 3),
            anns=[_rect_ann(0, 0, 3, 3, cat=2)]),
    ]
    ann = write_coco(str(tmp_path), images, CATS)
    train = coco_dataset(
        str(tmp_path),
        ann,
        'abc',
        pipeline=instance_train_pipeline((64, 64)))
    items = [train[0], train[1]]
    assert all(i['inputs'].shape == (3, 64, 64) for i in items)
    _train_and_predict(_instance_model(), items)
    test = coco_dataset(
        str(tmp_path),
        ann,
        'abc',
        test_mode=True,
        pipeline=image_test_pipeline((64, 64)))
    results = predict_on_batch(_instance_model(), [test[0], test[1]])
    check_instance_predictions(results, 3)
    assert [tuple(r.pred_instances.masks.shape[-2:])
            for r in results] == [(9, 12), (3, 3)]


def test_vanishing_masks_border_and_thin_objects(tmp_path):
    """Crops and down-scales that empty some masks: the packed targets
    only keep non-empty masks whose boxes are their tight boxes."""
    thin = [
        _rect_ann(0, 30, 64, 31, cat=3),  # one pixel high, full width
        _rect_ann(60, 0, 61, 64, cat=2)
    ]  # one pixel wide
    images = [
        dict(
            file_name='b.png',
            array=textured_image(64, 64),
            anns=[_rect_ann(0, 0, 10, 10),
                  _rect_ann(54, 54, 64, 64), *thin]),
    ]
    ann = write_coco(str(tmp_path), images, CATS)
    dataset = coco_dataset(
        str(tmp_path),
        ann,
        'abc',
        pipeline=instance_train_pipeline(
            (64, 64), (0.1, 1.0), crop_size=(24, 24), pad_size=(32, 32)))
    np.random.seed(0)
    counts = set()
    batch = []
    for _ in range(40):
        item = dataset[0]
        gt = item['data_samples'].gt_instances
        masks = gt.masks.to_tensor(torch.bool, 'cpu')
        counts.add(len(gt))
        for mask, box in zip(masks, gt.bboxes.tensor):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert len(ys) > 0  # no vanished mask survives
            tight = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert box.tolist() == [float(v) for v in tight]
        assert masks.shape[-2:] == (32, 32)
        if len(batch) < 2 and (len(gt) == 0 or len(batch) == 1):
            batch.append(item)
    assert 0 in counts and max(counts) >= 2  # some crops lost everything
    _train_and_predict(_instance_model(), batch)
