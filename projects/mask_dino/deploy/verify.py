"""Parity of an exported model with the PyTorch detector.

Raw outputs are compared element-wise (max abs difference per output).
Post-processed results are compared the way the issue states the target:
the instance top-k (query, label) pairs must be identical, and binary
masks may differ only at pixels whose PyTorch mask logit is within
``logit_tol`` of 0 (where a 1e-5 difference flips the threshold).

Query order. The decoder's queries are the encoder proposals with the
``num_queries`` highest class scores, in score order
(``MaskDINOHead.select_queries``). Two proposals whose scores are one
float ulp apart swap places under any rounding difference (measured: R50,
800x1344, scores 1.6331198 and 1.6331196 of ranks 248 and 249), and
because the decoder is permutation-equivariant over its queries the
swap moves two whole rows of every output and changes nothing else.
:func:`match_queries` finds such swaps, so that both the element-wise
difference after undoing them and the number of moved queries can be
reported.
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .wrapper import OUTPUT_NAMES


def torch_outputs(detector: nn.Module, inputs: Tensor
                  ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
    """``MaskDINOHead.predict`` of the PyTorch detector, unchanged.

    Args:
        detector (nn.Module): The ``MaskDINO`` (eval mode).
        inputs (Tensor): (B, 3, H, W) normalised, padded batch.

    Returns:
        tuple: cls logits, mask logits (None for box-only models), boxes.
    """
    from mmdet.structures import DetDataSample
    samples = []
    for _ in range(len(inputs)):
        sample = DetDataSample()
        sample.set_metainfo(dict(batch_input_shape=tuple(inputs.shape[-2:])))
        samples.append(sample)
    with torch.inference_mode():
        feats = detector.extract_feat(inputs)
        return detector.panoptic_head.predict(feats, samples)


def match_queries(reference: Tuple[Tensor, ...],
                  exported: Tuple[Tensor, ...],
                  tol: float = 1e-4) -> Tensor:
    """The query permutation that best aligns ``exported`` with
    ``reference``.

    Queries whose class and box rows already agree within ``tol`` keep
    their slot; the others are paired by a linear assignment (scipy) on
    the max abs difference of their class and box rows. Mask rows are
    left out of the cost (too large); :func:`raw_max_abs_diff` checks
    them after the alignment.

    Args:
        reference, exported (tuple[Tensor]): ``(cls_scores (B, Q, C'),
            mask_preds, bbox_preds (B, Q, 4))``.
        tol (float): Rows closer than this stay in place.

    Returns:
        Tensor: (B, Q) int64; ``exported[b, perm[b, i]]`` is the query
        that ``reference[b, i]`` is.
    """
    from scipy.optimize import linear_sum_assignment
    ref_rows = torch.cat([reference[0], reference[2]], -1).double()
    exp_rows = torch.cat([exported[0], exported[2]], -1).double()
    num_queries = ref_rows.shape[1]
    perms = []
    for ref, exp in zip(ref_rows, exp_rows):
        perm = torch.arange(num_queries)
        off = ((ref - exp).abs().amax(-1) > tol).nonzero()[:, 0]
        if len(off):
            cost = (ref[off, None] - exp[None, off]).abs().amax(-1)
            rows, cols = linear_sum_assignment(cost.numpy())
            perm[off[rows]] = off[cols]
        perms.append(perm)
    return torch.stack(perms)


def permute_queries(outputs: Tuple[Tensor, ...],
                    perm: Tensor) -> Tuple[Tensor, ...]:
    """Reorder the query dimension (dim 1) of every output by ``perm``
    (B, Q) from :func:`match_queries` (None outputs stay None)."""
    reordered = []
    for out in outputs:
        if out is None:
            reordered.append(None)
            continue
        index = perm.view(*perm.shape, *([1] * (out.dim() - 2)))
        reordered.append(out.gather(1, index.expand_as(out)))
    return tuple(reordered)


def raw_max_abs_diff(reference: Tuple[Tensor, ...],
                     exported: Tuple[Tensor, ...],
                     align: bool = False,
                     tol: float = 1e-4) -> Dict[str, float]:
    """Max abs difference per named output (shapes must agree).

    Args:
        reference, exported (tuple[Tensor]): Raw outputs (the mask logits
            None in both for box-only models).
        align (bool): Undo query swaps first (:func:`match_queries`) and
            add ``moved_queries``, the number of queries not in their
            reference slot (summed over the batch).
        tol (float): ``tol`` of :func:`match_queries`.

    Returns:
        dict: ``{output name: max abs diff}`` (+ ``moved_queries``).
    """
    named = [(name, ref, out)
             for name, ref, out in zip(OUTPUT_NAMES, reference, exported)
             if ref is not None or out is not None]
    for name, ref, out in named:
        if ref is None or out is None or ref.shape != out.shape:
            raise AssertionError(
                f'{name}: {_shape(out)} (exported) != {_shape(ref)}')
    moved = None
    if align:
        perm = match_queries(reference, exported, tol)
        exported = permute_queries(exported, perm)
        moved = int((perm != torch.arange(perm.shape[1])).sum())
    diffs = {
        name: float((ref.float() - out.float()).abs().max())
        for name, ref, out in zip(OUTPUT_NAMES, reference, exported)
        if ref is not None
    }
    if moved is not None:
        diffs['moved_queries'] = moved
    return diffs


def _shape(out: Optional[Tensor]) -> str:
    """An output's shape for messages (``absent`` for None)."""
    return 'absent' if out is None else f'shape {tuple(out.shape)}'


def compare_postprocessed(fusion_head: nn.Module,
                          reference: Tuple[Tensor, ...],
                          exported: Tuple[Tensor, ...],
                          img_meta: dict,
                          logit_tol: float = 1e-4,
                          align: bool = True) -> Dict[str, float]:
    """Run the fusion head on both output sets of one image and compare.

    Args:
        fusion_head (nn.Module): The config's ``MaskDINOFusionHead``.
        reference, exported (tuple[Tensor]): Raw outputs (batch of 1).
        img_meta (dict): ``batch_input_shape``, ``img_shape``,
            ``ori_shape``, ``scale_factor``.
        logit_tol (float): Mask pixels may differ where the PyTorch logit
            is within this of 0.
        align (bool): Undo query swaps (:func:`match_queries`) before
            comparing, so that query ids name the same queries; the
            number of moved queries is reported as ``moved_queries``.

    Returns:
        dict: ``same_topk`` (1.0 / 0.0), ``mask_pixels_differing``,
        ``max_abs_logit_at_differing`` (instance), ``panoptic_pixels_
        differing``, ``semantic_pixels_differing``, ``score_max_abs_diff``,
        ``bbox_max_abs_diff`` — for the tasks switched on.
    """
    report = {}
    if align:
        perm = match_queries(reference, exported)
        exported = permute_queries(exported, perm)
        report['moved_queries'] = int(
            (perm != torch.arange(perm.shape[1])).sum())
    cfg = fusion_head.test_cfg
    res_ref = fusion_head.predict(*reference, [img_meta])[0]
    res_exp = fusion_head.predict(*exported, [img_meta])[0]
    if cfg.instance_on:
        q_ref, l_ref, _ = fusion_head._select_instances(reference[0][0])
        q_exp, l_exp, _ = fusion_head._select_instances(exported[0][0])
        report['same_topk'] = float(
            torch.equal(q_ref, q_exp) and torch.equal(l_ref, l_exp))
        ins_ref, ins_exp = res_ref['ins_results'], res_exp['ins_results']
        report['score_max_abs_diff'] = float(
            (ins_ref.scores - ins_exp.scores).abs().max()) if len(
                ins_ref) else 0.0
        report['bbox_max_abs_diff'] = float(
            (ins_ref.bboxes - ins_exp.bboxes).abs().max()) if len(
                ins_ref) else 0.0
    if cfg.instance_on and reference[1] is not None:
        differing = ins_ref.masks != ins_exp.masks
        report['mask_pixels_differing'] = int(differing.sum())
        logits = fusion_head._resize_masks(reference[1][0][q_ref], img_meta,
                                           True)
        report['max_abs_logit_at_differing'] = float(
            logits[differing].abs().max()) if differing.any() else 0.0
        report['masks_ok'] = float(
            report['max_abs_logit_at_differing'] <= logit_tol)
    if cfg.panoptic_on:
        report['panoptic_pixels_differing'] = int(
            (res_ref['pan_results'].sem_seg !=
             res_exp['pan_results'].sem_seg).sum())
    if cfg.semantic_on:
        sem_ref = res_ref['sem_results'].sem_seg
        sem_exp = res_exp['sem_results'].sem_seg
        report['semantic_max_abs_diff'] = float(
            (sem_ref - sem_exp).abs().max())
        report['semantic_pixels_differing'] = int(
            (sem_ref.argmax(0) != sem_exp.argmax(0)).sum())
    return report
