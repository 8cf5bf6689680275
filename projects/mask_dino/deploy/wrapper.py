"""The exportable Mask DINO network: image batch in, final predictions out.

:class:`MaskDINOExportWrapper` runs the detector's own modules (backbone,
pixel decoder convolutions and encoder layers, query selection, decoder,
shared heads) in the order of ``MaskDINO.predict`` up to the fusion head,
and returns the three raw tensors that ``MaskDINOHead.predict`` returns.
Post-processing stays outside the graph: the ONNX Runtime wrapper feeds
the outputs to the config's own :class:`MaskDINOFusionHead`, so exported
and PyTorch results go through the same code (see docs/deployment.md).

:func:`export_mode` wraps the few pieces that do not trace (see
:mod:`.export_ops`) for the duration of an export and restores the model
afterwards, so the PyTorch model keeps its exact numerics.
"""
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
from mmcv.cnn.bricks.transformer import FFN
from torch import Tensor, nn

from ..layers.blockwise_ffn import BlockwiseFFN
from ..layers.msda import FastMultiScaleDeformableAttention
from . import export_ops

#: Names of the graph's input and outputs (box-only models, built with
#: ``with_mask=False``, have no ``mask_preds`` output).
INPUT_NAMES = ('inputs', )
OUTPUT_NAMES = ('cls_scores', 'mask_preds', 'bbox_preds')


def output_names(with_mask: bool = True) -> Tuple[str, ...]:
    """The graph's outputs of a model with or without masks."""
    if with_mask:
        return OUTPUT_NAMES
    return tuple(name for name in OUTPUT_NAMES if name != 'mask_preds')


class PlainFFN(nn.Module):
    """A :class:`BlockwiseFFN` run as mmcv's ``FFN`` in one call (same
    values; the block loop would freeze the token count of the example
    input). Shares the wrapped module's parameters.

    Args:
        ffn (BlockwiseFFN): The module to export.
    """

    def __init__(self, ffn: BlockwiseFFN) -> None:
        super().__init__()
        self.ffn = ffn

    def forward(self, x: Tensor, identity: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """``FFN.forward`` of the wrapped module."""
        return FFN.forward(self.ffn, x, identity)


def _export_replacements(
        detector: nn.Module
) -> List[Tuple[nn.Module, str, nn.Module, nn.Module]]:
    """(parent, child name, module, export module) for every module that
    :func:`export_mode` replaces."""
    head = detector.panoptic_head
    replacements = []
    for part, mode in ((head.pixel_decoder, 'blocks'), (head.decoder,
                                                         'corners')):
        for parent in part.modules():
            for name, child in parent.named_children():
                if isinstance(child, FastMultiScaleDeformableAttention):
                    replacements.append(
                        (parent, name, child,
                         export_ops.ExportMultiScaleDeformableAttention(
                             child, mode)))
                elif isinstance(child, BlockwiseFFN):
                    replacements.append(
                        (parent, name, child, PlainFFN(child)))
    return replacements


@contextmanager
def export_mode(detector: nn.Module) -> Iterator[nn.Module]:
    """Temporarily make ``detector`` traceable.

    - every :class:`FastMultiScaleDeformableAttention` is wrapped in an
      :class:`~.export_ops.ExportMultiScaleDeformableAttention` (``blocks``
      tables in the pixel decoder, ``corners`` in the decoder);
    - every :class:`BlockwiseFFN` is wrapped in a :class:`PlainFFN`;
    - the head's ``gen_proposals`` / ``mask_enhanced_anchors`` are
      shadowed by their tensor-size versions.

    The wrappers share the original modules' parameters and take their
    place in the parent modules; the originals are put back on exit, also
    after an error.

    Args:
        detector (nn.Module): A built ``MaskDINO``.

    Yields:
        nn.Module: ``detector``.
    """
    head = detector.panoptic_head
    replacements = _export_replacements(detector)
    for parent, name, _, wrapper in replacements:
        setattr(parent, name, wrapper)
    head.gen_proposals = export_ops.gen_proposals
    box_type = head.initialize_box_type
    head.mask_enhanced_anchors = lambda masks: \
        export_ops.mask_enhanced_anchors(masks, box_type)
    try:
        yield detector
    finally:
        for parent, name, module, _ in replacements:
            setattr(parent, name, module)
        del head.gen_proposals
        del head.mask_enhanced_anchors


class MaskDINOExportWrapper(nn.Module):
    """``inputs -> (cls_scores, mask_preds, bbox_preds)`` of a Mask DINO,
    ``inputs -> (cls_scores, bbox_preds)`` of a box-only one (the graph
    has no optional outputs; see :func:`output_names`).

    Use it inside :func:`export_mode`. Inference only (no denoising
    queries, masks of the final set only, as ``MaskDINOHead.predict``).

    Args:
        detector (nn.Module): A built ``MaskDINO`` in eval mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Forward function.

        Args:
            inputs (Tensor): (B, 3, H, W) normalised, padded images (the
                data preprocessor's output).

        Returns:
            tuple[Tensor]: class logits (B, Q, C'), mask logits
            (B, Q, H/4, W/4) (not for box-only models), boxes (B, Q, 4)
            normalised cxcywh.
        """
        head = self.detector.panoptic_head
        feats = self.detector.extract_feat(inputs)
        mask_features, memory, level_shapes = pixel_decoder_forward(
            head.pixel_decoder, list(feats))
        spatial_shapes = export_ops.level_shapes(level_shapes)
        start_index = export_ops.level_start_index(spatial_shapes)
        batch_size = inputs.shape[0]
        if head.two_stage:
            query, anchors, _ = head.select_queries(memory, level_shapes,
                                                    mask_features)
        else:
            query = head.query_feat.weight[None].repeat(batch_size, 1, 1)
            anchors = head.query_embed.weight[None].repeat(batch_size, 1, 1)
        sets = head.forward_decoder(query, anchors, memory, None,
                                    spatial_shapes, start_index,
                                    mask_features)
        final = sets[-1]
        return tuple(final[name] for name in output_names(head.with_mask))


def _encode(pixel_decoder: nn.Module,
            srcs: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """``MaskDINOPixelDecoder._encode`` with traced level sizes.

    Args:
        pixel_decoder (nn.Module): The ``MaskDINOPixelDecoder``.
        srcs (list[Tensor]): Maps (B, C, H_l, W_l) in encoder order.

    Returns:
        tuple: memory (B, sum HW, C) and the (L, ) level start indices,
        encoder level order.
    """
    batch_size = srcs[0].shape[0]
    query, query_pos = [], []
    for lvl, src in enumerate(srcs):
        pos = pixel_decoder.positional_encoding(None, input=src)
        pos = pos + pixel_decoder.level_embed[lvl].view(1, -1, 1, 1)
        query.append(src.flatten(2).transpose(1, 2))
        query_pos.append(pos.flatten(2).transpose(1, 2))
    spatial_shapes = export_ops.level_shapes([s.shape[-2:] for s in srcs])
    start_index = export_ops.level_start_index(spatial_shapes)
    reference_points = export_ops.encoder_reference_points(
        spatial_shapes, batch_size)
    valid_ratios = srcs[0].new_ones(batch_size, len(srcs), 2)
    memory = torch.cat(query, 1)
    query_pos = torch.cat(query_pos, 1)
    for layer in pixel_decoder.encoder.layers:
        memory = layer(
            query=memory,
            query_pos=query_pos,
            key_padding_mask=None,
            spatial_shapes=spatial_shapes,
            level_start_index=start_index,
            valid_ratios=valid_ratios,
            reference_points=reference_points)
    return memory, start_index


def pixel_decoder_forward(
    pixel_decoder: nn.Module, feats: List[Tensor]
) -> Tuple[Optional[Tensor], Tensor, List[Tuple[Tensor, Tensor]]]:
    """``MaskDINOPixelDecoder.forward`` (fp32) with :func:`_encode`.

    Args:
        pixel_decoder (nn.Module): The ``MaskDINOPixelDecoder``.
        feats (list[Tensor]): Backbone maps, high to low resolution.

    Returns:
        tuple: mask features (B, D, H/4, W/4) (None for box-only models),
        the memory (B, sum HW, D) and the traced (h, w) of its levels, in
        decoder level order (``EncoderMemory``'s).
    """
    srcs = pixel_decoder._project_levels(feats)
    memory, start_index = _encode(pixel_decoder, srcs)
    shapes = [tuple(src.shape[-2:]) for src in srcs]
    levels = [
        memory[:, start_index[lvl]:start_index[lvl] + h * w]
        for lvl, (h, w) in enumerate(shapes)
    ]
    mask_features = None
    if pixel_decoder.with_mask:
        level = pixel_decoder.high_res_level
        h, w = shapes[level]
        high_res = levels[level].transpose(1, 2).reshape(
            memory.shape[0], -1, h, w)
        mask_features = pixel_decoder._mask_features(feats, high_res)
    return mask_features, torch.cat(levels[::-1], dim=1), shapes[::-1]
