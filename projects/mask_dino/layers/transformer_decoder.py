"""Mask DINO transformer decoder (DINO decoder with a shared box head)."""
import math
from typing import List, Optional, Tuple

import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.layers import MLP
from mmdet.models.layers.transformer import (DinoTransformerDecoder,
                                             inverse_sigmoid)
from mmdet.registry import MODELS
from mmdet.utils import ConfigType
from mmengine.model import ModuleList
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils.config_ops import pass_down_at
from .transformer_layers import MaskDINODecoderLayer


def box_sine_encoding(boxes: Tensor,
                      num_feats: int = 128,
                      temperature: int = 10000,
                      scale: float = 2 * math.pi) -> Tensor:
    """mmdet's ``coordinate_to_encoding`` of 4-d boxes, in one pass.

    The same values (elementwise the same operations), with the four
    coordinates encoded together instead of one by one: about 15 operators
    instead of 46, once per decoder layer.

    Args:
        boxes (Tensor): Normalised (cx, cy, w, h), (B, Q, 4).
        num_feats (int): Features per coordinate.
        temperature (int): Frequency base.
        scale (float): Factor of the coordinates.

    Returns:
        Tensor: (B, Q, 4 * num_feats), in mmdet's (y, x, w, h) order of the
        coordinates, sines and cosines interleaved.
    """
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    dim_t = temperature**(2 * (dim_t // 2) / num_feats)
    # (y, x, w, h) without an index tensor (a host copy on GPUs)
    coords = torch.cat((boxes[..., :2].flip(-1), boxes[..., 2:]), -1)
    pos = (coords * scale)[..., None] / dim_t
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1)
    return pos.flatten(-3)


@MODELS.register_module()
class MaskDINOTransformerDecoder(DinoTransformerDecoder):
    """Deformable decoder of Mask DINO.

    It is mmdet's :class:`DinoTransformerDecoder` (self-attn -> MSDA
    cross-attn with 4-d reference boxes -> FFN, post-norm, ``ref_point_head``
    MLP on the sine embedding of the reference box) with the differences of
    the official Mask DINO decoder:

    - one box head shared by every layer (``reg_branch``), not one per layer;
    - ``inverse_sigmoid`` with eps 1e-5 (DINO in mmdet uses 1e-3), which
      matters for anchors initialised from empty masks (logits ~ +-11.5);
    - no padding masks (valid ratios are all 1);
    - layers always run in fp32, and can be activation-checkpointed.

    Args:
        num_layers (int): Number of decoder layers.
        layer_cfg (dict): Config of each :class:`MaskDINODecoderLayer`
            (``self_attn_cfg``, ``cross_attn_cfg``, ``ffn_cfg``).
        embed_dims (int, optional): Width of the layers, passed to their
            attention and FFN configs (``MaskDINOHead`` passes its own);
            None leaves ``layer_cfg`` as it is. A value of ``layer_cfg``
            that differs is an error.
        num_levels (int, optional): Levels of the memory, passed to the
            cross-attention (``MaskDINOHead`` passes its pixel decoder's);
            None leaves ``layer_cfg`` as it is. A value of ``layer_cfg``
            that differs is an error.
        with_cp (bool): Use activation checkpointing in every layer to save
            memory during training. Defaults to False.
        **kwargs: Further arguments of :class:`DinoTransformerDecoder`
            (``post_norm_cfg=None``, ``return_intermediate=True``).
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: ConfigType,
                 embed_dims: Optional[int] = None,
                 num_levels: Optional[int] = None,
                 with_cp: bool = False,
                 **kwargs) -> None:
        owner = type(self).__name__
        for path in ('self_attn_cfg', 'cross_attn_cfg', 'ffn_cfg'):
            layer_cfg = pass_down_at(layer_cfg, path, f'{owner} (embed_dims)',
                                     'layer_cfg', embed_dims=embed_dims)
        layer_cfg = pass_down_at(layer_cfg, 'cross_attn_cfg',
                                 f'{owner} (num_levels)', 'layer_cfg',
                                 num_levels=num_levels)
        super().__init__(num_layers, layer_cfg, **kwargs)
        self.with_cp = with_cp

    def _init_layers(self) -> None:
        """mmdet's layers, ref_point_head and norm (same order, so the same
        initialisation), with :class:`MaskDINODecoderLayer` layers."""
        self.layers = ModuleList([
            MaskDINODecoderLayer(**self.layer_cfg)
            for _ in range(self.num_layers)
        ])
        self.embed_dims = self.layers[0].embed_dims
        if self.post_norm_cfg is not None:
            raise ValueError('There is no post_norm in '
                             f'{self._get_name()}')
        self.ref_point_head = MLP(self.embed_dims * 2, self.embed_dims,
                                  self.embed_dims, 2)
        self.norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        """Official init: xavier on every matrix, then MSDA's own init."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()

    def _run_layer(self, layer: nn.Module, query: Tensor, query_pos: Tensor,
                   value: Tensor, self_attn_mask: Optional[Tensor],
                   reference_points: Tensor, spatial_shapes: Tensor,
                   level_start_index: Tensor,
                   level_shapes: Optional[List[Tuple[int, int]]]) -> Tensor:
        """Run one decoder layer, optionally with activation checkpointing."""

        def run(query, query_pos, value, reference_points):
            return layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=None,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=None,
                reference_points=reference_points,
                level_shapes=level_shapes)

        if self.with_cp and self.training and query.requires_grad:
            return checkpoint(
                run, query, query_pos, value, reference_points,
                use_reentrant=False)
        return run(query, query_pos, value, reference_points)

    def forward(self, query: Tensor, value: Tensor,
                self_attn_mask: Optional[Tensor], reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                reg_branch: nn.Module,
                level_shapes: Optional[List[Tuple[int, int]]] = None
                ) -> Tuple[Tensor, Tensor]:
        """Forward function.

        Args:
            query (Tensor): Content queries, (B, N, C).
            value (Tensor): Flattened encoder memory in decoder level order,
                (B, sum(H_l * W_l), C).
            self_attn_mask (Tensor, optional): (N, N) bool, True = blocked.
            reference_points (Tensor): Initial anchors, sigmoided cxcywh,
                (B, N, 4). Detached by the caller.
            spatial_shapes (Tensor): (L, 2) (h, w) of each level.
            level_start_index (Tensor): (L, ) start of each level.
            reg_branch (nn.Module): The shared box MLP (C -> 4).
            level_shapes (list[tuple[int, int]], optional): The (h, w) of
                ``spatial_shapes`` as Python ints, passed to the
                cross-attention so that the CPU path need not read them
                back from the tensor (a host sync per layer).

        Returns:
            tuple[Tensor, Tensor]:
                - hidden_states: ``norm``-ed outputs of every layer,
                  (num_layers, B, N, C).
                - references: ``[r_0, rho_1, ..., rho_L]``, (num_layers + 1,
                  B, N, 4): the initial anchors and the un-detached refined
                  boxes of every layer (for "look forward twice").
        """
        num_levels = spatial_shapes.shape[0]
        device_type = query.device.type
        intermediate = []
        references = [reference_points]
        with torch.autocast(device_type=device_type, enabled=False):
            query, value = query.float(), value.float()
            reference_points = reference_points.float()
            for layer in self.layers:
                ref_input = reference_points[:, :, None].expand(
                    -1, -1, num_levels, -1)
                query_pos = self.ref_point_head(
                    box_sine_encoding(
                        reference_points, num_feats=self.embed_dims // 2))
                query = self._run_layer(layer, query, query_pos, value,
                                        self_attn_mask, ref_input,
                                        spatial_shapes, level_start_index,
                                        level_shapes)
                # Anchors are refined from the un-normed layer output.
                new_reference_points = (
                    reg_branch(query) +
                    inverse_sigmoid(reference_points, eps=1e-5)).sigmoid()
                reference_points = new_reference_points.detach()
                intermediate.append(self.norm(query))
                references.append(new_reference_points)
        return torch.stack(intermediate), torch.stack(references)
