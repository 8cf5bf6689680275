"""ONNX export of a box-only Mask DINO (``MaskDINOHead(with_mask=False)``).

The graph has two outputs, ``cls_scores`` and ``bbox_preds``; the runtime
gives the triple of ``MaskDINOHead.predict`` with None masks, so the same
fusion head post-processes both and the results are boxes, scores and
labels with no masks.
"""
import pytest
import torch
from conftest import runtime_and_detector_results

pytest.importorskip('onnxruntime')

from projects.mask_dino.deploy import (build_detector,  # noqa
                                       create_session, export_onnx,
                                       load_config)
from projects.mask_dino.deploy.runtime import run_session  # noqa
from projects.mask_dino.deploy.verify import (compare_postprocessed,  # noqa
                                              raw_max_abs_diff,
                                              torch_outputs)

CONFIG = 'configs/maskdino_tiny_synthetic_detection.py'
TOL = 1e-4


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    torch.manual_seed(0)
    detector = build_detector(load_config(CONFIG))
    assert not detector.panoptic_head.with_mask
    path = str(tmp_path_factory.mktemp('onnx') / 'detection.onnx')
    export_onnx(detector, path, shape=(128, 128), dynamic=True)
    return detector, path


def _inputs(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, *shape, generator=gen)


def test_graph_has_no_mask_output(exported):
    _, path = exported
    session = create_session(path, 2)
    assert [o.name for o in session.get_outputs()] == [
        'cls_scores', 'bbox_preds'
    ]


@pytest.mark.parametrize('shape', ((128, 128), (96, 160)))
def test_raw_outputs_equal(exported, shape):
    detector, path = exported
    inputs = _inputs(shape)
    reference = torch_outputs(detector, inputs)
    outputs = run_session(create_session(path, 2), inputs.numpy())
    assert reference[1] is None and outputs[1] is None
    diffs = raw_max_abs_diff(reference, outputs)
    assert set(diffs) == {'cls_scores', 'bbox_preds'}
    assert max(diffs.values()) < TOL, diffs


def test_missing_output_is_an_error(exported):
    detector, path = exported
    inputs = _inputs((128, 128))
    cls_scores, _, bbox_preds = torch_outputs(detector, inputs)
    fake_masks = torch.zeros(1, cls_scores.shape[1], 32, 32)
    with pytest.raises(AssertionError, match='mask_preds: absent'):
        raw_max_abs_diff((cls_scores, fake_masks, bbox_preds),
                         (cls_scores, None, bbox_preds))


def test_postprocessed_results_equal(exported):
    detector, path = exported
    inputs = _inputs((96, 160), seed=1)
    meta = dict(batch_input_shape=(96, 160), img_shape=(90, 150),
                ori_shape=(180, 300), scale_factor=(0.5, 0.5))
    report = compare_postprocessed(
        detector.panoptic_fusion_head, torch_outputs(detector, inputs),
        run_session(create_session(path, 2), inputs.numpy()), meta)
    assert report['same_topk'] == 1.0, report
    assert report['score_max_abs_diff'] < TOL, report
    assert report['bbox_max_abs_diff'] < 1e-2, report  # pixels at 300x180
    assert 'mask_pixels_differing' not in report


def test_runtime_gives_boxes_without_masks(exported):
    """ORTMaskDINO = the detector's test_step on the same pipeline output:
    boxes, scores and labels, no masks."""
    detector, path = exported
    result, expected = runtime_and_detector_results(path, detector)
    pred, ref = result.pred_instances, expected.pred_instances
    assert 'masks' not in pred and 'masks' not in ref
    assert len(pred) == len(ref) > 0
    assert torch.equal(pred.labels, ref.labels)
    assert torch.allclose(pred.scores, ref.scores, atol=TOL)
    assert torch.allclose(pred.bboxes, ref.bboxes, atol=1e-2)
    assert float(pred.bboxes[:, 2].max()) <= 150
    assert float(pred.bboxes[:, 3].max()) <= 100
