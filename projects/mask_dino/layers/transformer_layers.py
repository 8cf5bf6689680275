"""Deformable transformer layers that build this project's fast CPU modules.

mmdet's Deformable DETR layers hard-code mmcv's
``MultiScaleDeformableAttention`` and ``FFN``. These subclasses build
:class:`~.msda.FastMultiScaleDeformableAttention` (same as mmcv's module on
CUDA/MLU) and, in the encoder, :class:`~.blockwise_ffn.BlockwiseFFN`
instead: same constructor arguments, submodule names, parameters (hence
state-dict keys and checkpoints) and construction order (hence the same
random initialisation for a given seed).
"""
from typing import List, Optional, Tuple

from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import FFN, MultiheadAttention
from mmdet.models.layers.transformer import (
    DeformableDetrTransformerDecoderLayer, DeformableDetrTransformerEncoder,
    DeformableDetrTransformerEncoderLayer)
from mmdet.registry import MODELS
from mmengine.model import ModuleList
from torch import Tensor

from .blockwise_ffn import BlockwiseFFN
from .msda import FastMultiScaleDeformableAttention


@MODELS.register_module()
class MaskDINOEncoderLayer(DeformableDetrTransformerEncoderLayer):
    """Deformable encoder layer with
    :class:`FastMultiScaleDeformableAttention` self-attention and a
    :class:`BlockwiseFFN`."""

    def _init_layers(self) -> None:
        """Initialize self_attn, ffn, and norms."""
        self.self_attn = FastMultiScaleDeformableAttention(
            **self.self_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = BlockwiseFFN(**self.ffn_cfg)
        self.norms = ModuleList([
            build_norm_layer(self.norm_cfg, self.embed_dims)[1]
            for _ in range(2)
        ])


@MODELS.register_module()
class MaskDINOTransformerEncoder(DeformableDetrTransformerEncoder):
    """:class:`DeformableDetrTransformerEncoder` of
    :class:`MaskDINOEncoderLayer` layers.

    ``num_cp`` (fairscale) is not supported: use the pixel decoder's
    ``with_cp``, which checkpoints every layer with ``torch.utils``.
    """

    def _init_layers(self) -> None:
        """Initialize encoder layers."""
        if self.num_cp > 0:
            raise ValueError(
                f'encoder.num_cp={self.num_cp} is not supported by '
                f'{type(self).__name__}; set with_cp=True on '
                'MaskDINOPixelDecoder instead')
        self.layers = ModuleList([
            MaskDINOEncoderLayer(**self.layer_cfg)
            for _ in range(self.num_layers)
        ])
        self.embed_dims = self.layers[0].embed_dims

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                key_padding_mask: Optional[Tensor],
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                level_shapes: Optional[List[Tuple[int, int]]] = None,
                **kwargs) -> Tensor:
        """mmdet's encoder forward, with the reference points built from
        ``level_shapes``, the (h, w) of ``spatial_shapes`` as Python ints,
        when given (mmdet's read every level's size back from the device:
        two host syncs per level); the layers get them too.

        Returns:
            Tensor: memory (B, sum HW, C).
        """
        reference_points = self.get_encoder_reference_points(
            spatial_shapes if level_shapes is None else level_shapes,
            valid_ratios,
            device=query.device)
        for layer in self.layers:
            query = layer(
                query=query,
                query_pos=query_pos,
                key_padding_mask=key_padding_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=reference_points,
                level_shapes=level_shapes,
                **kwargs)
        return query


@MODELS.register_module()
class MaskDINODecoderLayer(DeformableDetrTransformerDecoderLayer):
    """Deformable decoder layer with
    :class:`FastMultiScaleDeformableAttention` cross-attention (the FFN
    runs over a few hundred queries only: mmcv's)."""

    def _init_layers(self) -> None:
        """Initialize self_attn, cross-attn, ffn, and norms."""
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.cross_attn = FastMultiScaleDeformableAttention(
            **self.cross_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = ModuleList([
            build_norm_layer(self.norm_cfg, self.embed_dims)[1]
            for _ in range(3)
        ])
