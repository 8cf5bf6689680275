"""Mask DINO pixel decoder: deformable encoder + one FPN step."""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.layers import SinePositionalEncoding
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import (BaseModule, ModuleList, caffe2_xavier_init,
                            normal_init, xavier_init)
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils.config_ops import pass_down, pass_down_at
from .transformer_layers import MaskDINOTransformerEncoder

FEATURE_ORDERS = ('low2high', 'high2low')


class EncoderMemory(NamedTuple):
    """The encoder output as the decoder reads it: flattened once, levels
    in the official *decoder* order (the reverse of the encoder order).

    Attributes:
        memory (Tensor): (B, sum HW, C) tokens.
        spatial_shapes (Tensor): (L, 2) long, (h, w) of every level.
        level_start_index (Tensor): (L, ) long, first token of every level.
        level_shapes (list[tuple[int, int]]): ``spatial_shapes`` as Python
            ints, so that consumers need not read them back from the
            device (a host sync each time).
    """
    memory: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor
    level_shapes: List[Tuple[int, int]]

    @classmethod
    def from_encoder_order(cls, memory: Tensor, spatial_shapes: Tensor,
                           level_shapes: List[Tuple[int, int]]
                           ) -> 'EncoderMemory':
        """Reverse the levels of an encoder-order memory.

        Args:
            memory (Tensor): (B, sum HW, C), encoder level order.
            spatial_shapes (Tensor): (L, 2), encoder level order.
            level_shapes (list[tuple[int, int]]): The same as Python ints.

        Returns:
            EncoderMemory: In decoder level order; the level blocks of
            ``memory`` are moved in one copy, the shapes are flipped on
            the device.
        """
        blocks = memory.split([h * w for h, w in level_shapes], dim=1)
        spatial_shapes = spatial_shapes.flip(0)
        return cls(
            memory=torch.cat(blocks[::-1], dim=1),
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index(spatial_shapes),
            level_shapes=list(level_shapes[::-1]))


def level_start_index(spatial_shapes: Tensor) -> Tensor:
    """(L, ) first token of every level of (L, 2) ``spatial_shapes``."""
    return torch.cat((spatial_shapes.new_zeros(
        (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))


@MODELS.register_module()
class MaskDINOPixelDecoder(BaseModule):
    """Pixel decoder of Mask DINO (the official ``MaskDINOEncoder``).

    Backbone levels chosen by ``encoder_in_indices`` are projected to
    ``feat_channels`` (1x1 conv with bias + GN); ``num_extra_levels`` extra
    levels are made by stride-2 3x3 convs, the first applied to the *raw*
    lowest-resolution backbone map. All levels go through a multi-scale
    deformable encoder; then one FPN step fuses the highest-resolution
    backbone map (stride 4) with the highest-resolution encoder output and a
    1x1 conv gives the per-pixel mask embedding map. Without masks
    (``with_mask=False``) the FPN step and the mask embedding conv, which
    serve the masks only, are neither built nor run.

    Level order (``feature_order``), kept exactly as the official code so
    that official checkpoints convert without permuting MSDA weights::

        low2high (COCO):  [1/8, 1/16, 1/32, 1/64]   backbone levels high->low
                                                    resolution, extras last
        high2low (ADE):   [1/32, 1/16, 1/8]         extras first, then
                                                    low->high resolution

    ``input_proj[i]`` holds, for ``low2high``, the i-th backbone level from
    high resolution and for ``high2low`` the i-th from low resolution; the
    extra convs follow the backbone projections in both cases.

    Args:
        in_channels (Sequence[int]): Channels of all backbone outputs, from
            high to low resolution (e.g. res2..res5).
        strides (Sequence[int]): Strides of the backbone outputs.
        encoder_in_indices (Sequence[int]): Indices of backbone outputs fed
            to the encoder. Defaults to (1, 2, 3) (res3-res5).
        num_extra_levels (int): Extra stride-2 levels. Defaults to 1.
        feature_order (str): 'low2high' or 'high2low'.
        feat_channels (int): Channels of encoder and FPN. Defaults to 256.
            ``MaskDINOHead`` sets it (and ``out_channels``) to its
            ``embed_dims``.
        out_channels (int): Channels of the mask features. Defaults to 256.
        common_stride (int): Stride of the mask features. Defaults to 4.
        norm_cfg (dict): Norm of every conv. Defaults to GN(32).
        act_cfg (dict): Activation of the FPN output conv.
        encoder (dict): Config of :class:`MaskDINOTransformerEncoder` (mmdet's
            ``DeformableDetrTransformerEncoder``). The pixel decoder passes its
            layers' attention and FFN ``embed_dims`` (``feat_channels``)
            and the attention's ``num_levels`` (``len(encoder_in_indices)
            + num_extra_levels``); a repeated value that differs is an
            error.
        positional_encoding (dict): Config of ``SinePositionalEncoding``;
            the pixel decoder passes ``num_feats=feat_channels // 2``.
        with_cp (bool): Activation checkpointing of every encoder layer in
            training (recomputed in backward, saves memory). Defaults to
            False.
        with_mask (bool): Build and output the mask features. False for
            box-only models (set by ``MaskDINOHead(with_mask=False)``): the
            stride-4 backbone map is then not read. Defaults to True.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (256, 512, 1024, 2048),
                 strides: Sequence[int] = (4, 8, 16, 32),
                 encoder_in_indices: Sequence[int] = (1, 2, 3),
                 num_extra_levels: int = 1,
                 feature_order: str = 'low2high',
                 feat_channels: int = 256,
                 out_channels: int = 256,
                 common_stride: int = 4,
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 encoder: ConfigType = dict(),
                 positional_encoding: ConfigType = dict(normalize=True),
                 with_cp: bool = False,
                 with_mask: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if feature_order not in FEATURE_ORDERS:
            raise ValueError(f'feature_order must be one of {FEATURE_ORDERS}'
                             f', got {feature_order!r}')
        if len(in_channels) != len(strides):
            raise ValueError('in_channels and strides must have the same '
                             f'length, got {in_channels} and {strides}')
        self.in_channels = list(in_channels)
        self.strides = list(strides)
        self.encoder_in_indices = sorted(encoder_in_indices)
        self.num_extra_levels = num_extra_levels
        self.feature_order = feature_order
        self.with_cp = with_cp
        self.with_mask = with_mask
        self.num_levels = len(self.encoder_in_indices) + num_extra_levels
        encoder, positional_encoding = self._pass_down(
            encoder, positional_encoding, feat_channels)

        # Backbone indices in input_proj order (official index mapping).
        self.proj_indices = list(self.encoder_in_indices)
        if feature_order == 'high2low':
            self.proj_indices = self.proj_indices[::-1]
        self.input_proj = ModuleList()
        for idx in self.proj_indices:
            self.input_proj.append(
                ConvModule(
                    self.in_channels[idx],
                    feat_channels,
                    kernel_size=1,
                    bias=True,  # GN does not cancel a per-channel bias
                    norm_cfg=norm_cfg,
                    act_cfg=None))
        extra_in = self.in_channels[self.encoder_in_indices[-1]]
        for _ in range(num_extra_levels):
            self.input_proj.append(
                ConvModule(
                    extra_in,
                    feat_channels,
                    kernel_size=3,
                    stride=2,
                    padding=1,
                    bias=True,
                    norm_cfg=norm_cfg,
                    act_cfg=None))
            extra_in = feat_channels

        # fast CPU deformable attention, blockwise FFN at inference
        self.encoder = MaskDINOTransformerEncoder(**encoder)
        self.positional_encoding = SinePositionalEncoding(
            **positional_encoding)
        self.level_embed = nn.Parameter(
            torch.zeros(self.num_levels, feat_channels))
        if with_mask:
            self._init_mask_layers(feat_channels, out_channels, common_stride,
                                   norm_cfg, act_cfg)

    def _pass_down(self, encoder: ConfigType,
                   positional_encoding: ConfigType,
                   feat_channels: int) -> Tuple[dict, dict]:
        """The encoder and positional encoding configs with the width and
        the level count set: they follow from ``feat_channels`` and the
        levels, so a config need not (and must not differently) say them.
        """
        owner = type(self).__name__
        encoder = pass_down_at(
            encoder,
            'layer_cfg.self_attn_cfg',
            f'{owner} (len(encoder_in_indices) + num_extra_levels)',
            'encoder',
            num_levels=self.num_levels)
        width = f'{owner} (feat_channels)'
        for path in ('layer_cfg.self_attn_cfg', 'layer_cfg.ffn_cfg'):
            encoder = pass_down_at(encoder, path, width, 'encoder',
                                   embed_dims=feat_channels)
        # the sine encoding's 2 * num_feats channels are added to the maps
        positional_encoding = pass_down(
            positional_encoding,
            f'{owner} (feat_channels // 2)',
            'positional_encoding',
            num_feats=feat_channels // 2)
        return encoder, positional_encoding

    def _init_mask_layers(self, feat_channels: int, out_channels: int,
                          common_stride: int, norm_cfg: ConfigType,
                          act_cfg: ConfigType) -> None:
        """The FPN step and the mask embedding conv."""
        # One FPN step at least (official ``max(..., 1)``): the stride-4
        # backbone map plus the upsampled highest-resolution encoder map.
        min_stride = min(self.strides[i] for i in self.encoder_in_indices)
        self.num_fpn_levels = max(
            int(math.log2(min_stride) - math.log2(common_stride)), 1)
        self.lateral_convs = ModuleList()
        self.output_convs = ModuleList()
        for idx in range(self.num_fpn_levels):
            self.lateral_convs.append(
                ConvModule(
                    self.in_channels[idx],
                    feat_channels,
                    kernel_size=1,
                    bias=False,
                    norm_cfg=norm_cfg,
                    act_cfg=None))
            self.output_convs.append(
                ConvModule(
                    feat_channels,
                    feat_channels,
                    kernel_size=3,
                    padding=1,
                    bias=False,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg))
        self.mask_feature = nn.Conv2d(feat_channels, out_channels, 1)

    def init_weights(self) -> None:
        """Official initialisation (xavier projections, N(0,1) level
        embedding, xavier encoder then MSDA's own init)."""
        for proj in self.input_proj:
            xavier_init(proj.conv, gain=1, bias=0, distribution='uniform')
        if self.with_mask:
            for conv in list(self.lateral_convs) + list(self.output_convs):
                caffe2_xavier_init(conv.conv, bias=0)
            caffe2_xavier_init(self.mask_feature, bias=0)
        normal_init(self.level_embed, mean=0, std=1)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.encoder.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()

    def _project_levels(self, feats: List[Tensor]) -> List[Tensor]:
        """Project backbone maps and build extra levels, in encoder order.

        Returns:
            list[Tensor]: ``num_levels`` maps of shape (B, C, H_l, W_l).
        """
        srcs = [
            self.input_proj[i](feats[idx])
            for i, idx in enumerate(self.proj_indices)
        ]
        extras = []
        x = feats[self.encoder_in_indices[-1]]
        for i in range(len(srcs), self.num_levels):
            x = self.input_proj[i](x)
            extras.append(x)
        # The official code reverses the extras before placing them (only
        # visible with two or more extra levels).
        extras = extras[::-1]
        if self.feature_order == 'low2high':
            return srcs + extras
        return extras + srcs

    def _encode(self, srcs: List[Tensor]
                ) -> Tuple[Tensor, Tensor, List[Tuple[int, int]]]:
        """Run the deformable encoder over all levels.

        No padding masks are used (official: padding does not matter), so
        positions are normalised over the padded maps and valid ratios are 1.

        Args:
            srcs (list[Tensor]): Maps (B, C, H_l, W_l) in encoder order.

        Returns:
            tuple: memory (B, sum HW, C), spatial_shapes (L, 2) and their
            (h, w) as Python ints, all in encoder level order.
        """
        batch_size = srcs[0].shape[0]
        query, query_pos, shapes = [], [], []
        for lvl, src in enumerate(srcs):
            pos = self.positional_encoding(None, input=src)
            pos = pos + self.level_embed[lvl].view(1, -1, 1, 1)
            query.append(src.flatten(2).transpose(1, 2))
            query_pos.append(pos.flatten(2).transpose(1, 2))
            shapes.append(tuple(src.shape[-2:]))
        spatial_shapes = torch.as_tensor(
            shapes, dtype=torch.long, device=srcs[0].device)
        valid_ratios = srcs[0].new_ones(batch_size, self.num_levels, 2)
        memory = self._run_encoder(
            torch.cat(query, 1), torch.cat(query_pos, 1), spatial_shapes,
            level_start_index(spatial_shapes), valid_ratios,
            level_shapes=shapes)
        return memory, spatial_shapes, shapes

    @property
    def high_res_level(self) -> int:
        """Encoder-order index of the highest-resolution level, the one
        the FPN step reads."""
        return 0 if self.feature_order == 'low2high' else self.num_levels - 1

    def _run_encoder(self, query: Tensor, query_pos: Tensor,
                     spatial_shapes: Tensor, level_start_index: Tensor,
                     valid_ratios: Tensor,
                     level_shapes: List[Tuple[int, int]]) -> Tensor:
        """The deformable encoder, each layer checkpointed if ``with_cp``.

        mmdet's ``num_cp`` needs fairscale; ``torch.utils.checkpoint``
        (non-reentrant, so DDP and autocast work) does the same here.
        ``level_shapes``, the (h, w) of ``spatial_shapes`` as Python ints,
        goes to the reference points and the attention, which then need
        not read the sizes back from the device (host syncs).

        Returns:
            Tensor: memory (B, sum HW, C).
        """
        kwargs = dict(
            key_padding_mask=None,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            level_shapes=level_shapes)
        if not (self.with_cp and self.training and query.requires_grad):
            return self.encoder(query=query, query_pos=query_pos, **kwargs)
        reference_points = self.encoder.get_encoder_reference_points(
            level_shapes, valid_ratios, device=query.device)
        for layer in self.encoder.layers:
            query = checkpoint(
                layer,
                query,
                query_pos,
                reference_points=reference_points,
                use_reentrant=False,
                **kwargs)
        return query

    def forward(self, feats: List[Tensor]
                ) -> Tuple[Optional[Tensor], EncoderMemory]:
        """Forward function.

        Args:
            feats (list[Tensor]): Backbone maps (B, C_i, H_i, W_i), from
                high to low resolution.

        Returns:
            tuple:
                - mask_features (Tensor | None): (B, out_channels, H/4,
                  W/4); None without masks (``with_mask=False``).
                - memory (EncoderMemory): The encoder output in decoder
                  level order, flattened once.
        """
        device_type = feats[0].device.type
        # Deformable attention has no half kernel on every device: the
        # official encoder always runs in fp32.
        with torch.autocast(device_type=device_type, enabled=False):
            feats = [f.float() for f in feats]
            memory, spatial_shapes, shapes = self._encode(
                self._project_levels(feats))
            mask_features = None
            if self.with_mask:
                mask_features = self._mask_features(
                    feats, self._level_map(memory, shapes,
                                           self.high_res_level))
        return mask_features, EncoderMemory.from_encoder_order(
            memory, spatial_shapes, shapes)

    @staticmethod
    def _level_map(memory: Tensor, level_shapes: List[Tuple[int, int]],
                   level: int) -> Tensor:
        """Level ``level`` of a flattened (B, sum HW, C) memory as a
        (B, C, h, w) map."""
        start = sum(h * w for h, w in level_shapes[:level])
        h, w = level_shapes[level]
        tokens = memory[:, start:start + h * w]
        return tokens.transpose(1, 2).reshape(memory.shape[0], -1, h, w)

    def _mask_features(self, feats: List[Tensor],
                       high_res: Tensor) -> Tensor:
        """The FPN step on the highest-resolution encoder map ``high_res``
        (B, C, h, w) and the mask embedding conv: (B, out_channels, H/4,
        W/4)."""
        y = None
        for idx in range(self.num_fpn_levels - 1, -1, -1):
            lateral = self.lateral_convs[idx](feats[idx])
            y = lateral + F.interpolate(
                high_res,
                size=lateral.shape[-2:],
                mode='bilinear',
                align_corners=False)
            y = self.output_convs[idx](y)
        return self.mask_feature(y)
