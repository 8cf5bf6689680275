"""Convert an official Mask DINO checkpoint (detectron2) to this project.

The official checkpoints (``IDEA-Research/MaskDINO``, released on
``detrex-storage``) are detectron2 files: a ``.pth`` holding
``dict(model=state_dict, ...)`` or a ``.pkl`` pickle of numpy arrays
(``dict(model=..., __author__=...)``); a bare state dict is accepted too.
Every key is mapped to the name of this project's module (the rules are in
``docs/model_converter.md``), tensors that the official model stores under
several names (the shared box MLP, ``decoder_norm`` = ``decoder.norm``) are
checked to be equal and written once, and the result is loaded with
``strict=True`` into the model built from ``--config`` before it is saved
as an mmengine checkpoint::

    dict(state_dict=..., meta=dict(dataset_meta=dict(classes=...),
                                   converter=dict(...provenance...)))

Any source key without a rule, any target key without a source, any shape
difference or any pair of "tied" tensors that differ stops the conversion
with an error that lists them.

Example::

    python tools/model_converters/maskdino2mmdet.py \\
        maskdino_r50_50ep_300q_hid2048_3sd1_panoptic_pq53.0.pth \\
        checkpoints/maskdino_r50_coco_panoptic.pth \\
        --config configs/maskdino_r50_coco_panoptic.py

See ``docs/model_converter.md`` for the mapping rules;
``tools/model_converters/maskdino2mmdet.py`` is the command line.
"""
import hashlib
import os.path as osp
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import (Callable, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np
import torch
from torch import Tensor, nn

from ..utils.dataset_meta import (
    dataset_meta_from_config as config_dataset_meta)

# The repository root: provenance names configs relative to it.
REPO_ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# Source prefixes (detectron2 names) and target prefixes (this project).
SRC_BACKBONE = 'backbone.'
SRC_PIXEL_DECODER = 'sem_seg_head.pixel_decoder.'
SRC_PREDICTOR = 'sem_seg_head.predictor.'
DST_BACKBONE = 'backbone.'
DST_PIXEL_DECODER = 'panoptic_head.pixel_decoder.'
DST_HEAD = 'panoptic_head.'

# Entries of official checkpoints that are not model weights here: the
# no-object class weight of the loss (a buffer of the official criterion)
# and the normalisation constants (``data_preprocessor`` here).
DROPPED_KEYS = {
    'criterion.empty_weight': 'a loss buffer: the no-object class weight',
    'pixel_mean': 'input normalisation (data_preprocessor here)',
    'pixel_std': 'input normalisation (data_preprocessor here)',
}

# Globals a detectron2 ``.pkl`` of numpy arrays may reference.
_PKL_GLOBALS = {
    ('collections', 'OrderedDict'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
}

Transform = Callable[[Tensor], Tensor]
LevelTag = Tuple[str, int]  # ('backbone', out index) or ('extra', k)


class ConversionError(ValueError):
    """The checkpoint does not match the target model."""


# ----------------------------------------------------------------------
# Reading the official checkpoint
# ----------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds dicts and numpy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PKL_GLOBALS:
            raise pickle.UnpicklingError(
                f'refused global {module}.{name}: a detectron2 .pkl '
                'checkpoint holds only dicts and numpy arrays')
        return super().find_class(module, name)


def load_official_checkpoint(path: str) -> Tuple[Dict[str, Tensor], dict]:
    """Read an official checkpoint into a state dict of tensors.

    Args:
        path (str): A ``.pth`` (torch) or ``.pkl`` (detectron2 pickle of
            numpy arrays) file, holding ``dict(model=state_dict, ...)`` or a
            bare state dict.

    Returns:
        tuple: the state dict (name -> Tensor, in file order) and a dict
        describing the file (``format``, ``container``, ``author``).

    Raises:
        ConversionError: If the file cannot be read or holds no state dict.
    """
    if not osp.isfile(path):
        raise ConversionError(f'checkpoint not found: {path}')
    if path.endswith('.pkl'):
        fmt = 'pkl'
        try:
            with open(path, 'rb') as f:
                obj = _ArrayUnpickler(f, encoding='latin1').load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise ConversionError(f'cannot read {path} as a detectron2 .pkl '
                                  f'checkpoint: {e}') from e
    else:
        fmt = 'pth'
        import projects.mask_dino  # noqa: F401  safe-loader allow-list
        try:
            obj = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:  # torch raises several types here
            raise ConversionError(
                f'cannot read {path} with torch.load(weights_only=True): '
                f'{e}') from e
    if not isinstance(obj, Mapping):
        raise ConversionError(f'{path} holds a {type(obj).__name__}, not a '
                              'dict')
    info = dict(format=fmt, author=obj.get('__author__'))
    if 'model' in obj and isinstance(obj['model'], Mapping):
        state, info['container'] = obj['model'], "'model' entry"
    elif obj and all(
            isinstance(v, (Tensor, np.ndarray)) for v in obj.values()):
        state, info['container'] = obj, 'bare state dict'
    else:
        raise ConversionError(
            f'{path} has no state dict: expected a "model" entry or a bare '
            f'state dict, found keys {sorted(map(str, obj))[:10]}')
    tensors = OrderedDict()
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not isinstance(v, Tensor):
            raise ConversionError(f'{path}: entry {k!r} is a '
                                  f'{type(v).__name__}, not an array')
        tensors[k] = v
    return tensors, info


# ----------------------------------------------------------------------
# Level orders (input projections, level embedding, MSDA level axes)
# ----------------------------------------------------------------------
@dataclass
class LevelLayout:
    """Which level sits at which index.

    Attributes:
        proj (list[LevelTag]): the level of each ``input_proj`` entry.
        encoder (list[LevelTag]): encoder (token) order; the decoder order
            is its reverse in both implementations.
    """
    proj: List[LevelTag]
    encoder: List[LevelTag]

    @property
    def decoder(self) -> List[LevelTag]:
        return self.encoder[::-1]

    def names(self, order: Sequence[LevelTag],
              strides: Sequence[int]) -> List[str]:
        """Readable level names, e.g. ``['1/8', '1/16', 'extra0']``."""
        return [
            f'1/{strides[i]}' if kind == 'backbone' else f'extra{i}'
            for kind, i in order
        ]


def _encoder_order(proj: List[LevelTag],
                   feature_order: str) -> List[LevelTag]:
    """Official encoder order given the ``input_proj`` order: backbone
    levels in projection order, extra levels in reverse creation order,
    after (``low2high``) or before (``high2low``) the backbone levels."""
    backbone = [t for t in proj if t[0] == 'backbone']
    extras = [t for t in proj if t[0] == 'extra'][::-1]
    return backbone + extras if feature_order == 'low2high' \
        else extras + backbone


def target_level_layout(pixel_decoder: nn.Module) -> LevelLayout:
    """Level layout of this project's :class:`MaskDINOPixelDecoder`."""
    proj = [('backbone', i) for i in pixel_decoder.proj_indices]
    proj += [('extra', k) for k in range(pixel_decoder.num_extra_levels)]
    return LevelLayout(proj, _encoder_order(proj,
                                            pixel_decoder.feature_order))


def official_level_layout(src: Mapping[str, Tensor],
                          pixel_decoder: nn.Module) -> LevelLayout:
    """Level layout of an official checkpoint, read from its projections.

    1x1 ``input_proj`` convs project backbone levels (identified by their
    input channels among the target's backbone channels), 3x3 convs are
    the extra stride-2 levels. The official ``feature_order`` follows from
    the projection order: ``low2high`` lists the backbone levels from high
    to low resolution, ``high2low`` from low to high.

    Raises:
        ConversionError: If the checkpoint has no input projections.
    """
    proj_re = re.compile(re.escape(SRC_PIXEL_DECODER) +
                         r'input_proj\.(\d+)\.0\.weight')
    shapes = {}
    for k, v in src.items():
        m = proj_re.fullmatch(k)
        if m:
            shapes[int(m.group(1))] = tuple(v.shape)
    if not shapes or sorted(shapes) != list(range(len(shapes))):
        raise ConversionError(
            f'the checkpoint has no (or non-contiguous) {SRC_PIXEL_DECODER}'
            'input_proj.<i>.0.weight entries: not a Mask DINO checkpoint?')
    target = target_level_layout(pixel_decoder)
    target_backbone = [t for t in target.proj if t[0] == 'backbone']
    channels = pixel_decoder.in_channels
    proj, num_extra, num_backbone = [], 0, 0
    for i in range(len(shapes)):
        in_c, kernel = shapes[i][1], shapes[i][2]
        if kernel != 1:
            proj.append(('extra', num_extra))
            num_extra += 1
            continue
        matches = [t for t in target_backbone if channels[t[1]] == in_c]
        if len(matches) != 1:  # unknown or ambiguous width: the
            # target's order is assumed (shape checks catch a wrong width)
            matches = target_backbone[num_backbone:num_backbone + 1] or [
                ('backbone', -1 - num_backbone)
            ]
        proj.append(matches[0])
        num_backbone += 1
    backbone_idx = [i for kind, i in proj if kind == 'backbone']
    feature_order = pixel_decoder.feature_order
    if len(backbone_idx) > 1:
        feature_order = 'low2high' if backbone_idx == sorted(
            backbone_idx) else 'high2low'
    return LevelLayout(proj, _encoder_order(proj, feature_order))


def level_permutation(src_order: Sequence[LevelTag],
                      dst_order: Sequence[LevelTag]) -> Optional[List[int]]:
    """``perm[j]`` = source position of the level at target position ``j``
    (None when the level sets differ: shapes will not match anyway)."""
    if sorted(src_order) != sorted(dst_order):
        return None
    return [list(src_order).index(t) for t in dst_order]


def permute_msda_levels(tensor: Tensor, perm: Sequence[int], num_heads: int,
                        num_points: int, per_point: int) -> Tensor:
    """Reorder the level axis of an MSDA projection (weight or bias).

    ``sampling_offsets`` outputs are laid out (heads, levels, points, 2)
    and ``attention_weights`` outputs (heads, levels, points), in both
    implementations.

    Args:
        tensor (Tensor): ``(H * L * P * per_point, ...)`` weight or bias.
        perm (Sequence[int]): New level ``j`` takes old level ``perm[j]``.
        num_heads (int): H.
        num_points (int): P.
        per_point (int): 2 for ``sampling_offsets``, 1 for
            ``attention_weights``.

    Returns:
        Tensor: Same shape, levels reordered.
    """
    num_levels = len(perm)
    rest = tensor.shape[1:]
    view = tensor.reshape(num_heads, num_levels, num_points, per_point,
                          *rest)
    index = torch.as_tensor(list(perm), dtype=torch.long)
    return view.index_select(1, index).reshape(tensor.shape)


# ----------------------------------------------------------------------
# Swin patch merging: official concatenation order -> nn.Unfold order
# ----------------------------------------------------------------------
def _unfold_order(num_channels: int) -> Tensor:
    """Source channel of every target channel of a 2x2 patch merge.

    The official ``PatchMerging`` concatenates the four pixels of a 2x2
    patch as ``[(0,0), (1,0), (0,1), (1,1)]`` (row, col) blocks of C
    channels; mmdet's ``PatchMerging`` uses ``nn.Unfold``, whose output
    channel ``c * 4 + 2 * row + col`` is channel-major.
    """
    block_of = {(0, 0): 0, (1, 0): 1, (0, 1): 2, (1, 1): 3}
    order = [
        block_of[(row, col)] * num_channels + c for c in range(num_channels)
        for row in range(2) for col in range(2)
    ]
    return torch.as_tensor(order, dtype=torch.long)


def swin_reduction_to_unfold(weight: Tensor) -> Tensor:
    """Reorder the input channels of ``downsample.reduction.weight``."""
    return weight[:, _unfold_order(weight.shape[1] // 4)]


def swin_norm_to_unfold(param: Tensor) -> Tensor:
    """Reorder ``downsample.norm`` parameters (4C channels)."""
    return param[_unfold_order(param.shape[0] // 4)]


# ----------------------------------------------------------------------
# Key rules
# ----------------------------------------------------------------------
# (pattern of the source name, target name or function of the match,
#  transform of the tensor or None)
Rule = Tuple[str, Union[str, Callable[[re.Match], str]], Optional[Transform]]

RESNET_RULES: List[Rule] = [
    (r'stem\.conv1\.weight', 'conv1.weight', None),
    (r'stem\.conv1\.norm\.(\w+)', r'bn1.\1', None),
    (r'res(\d)\.(\d+)\.conv(\d)\.weight',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.weight', None),
    (r'res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.{m[4]}', None),
    (r'res(\d)\.(\d+)\.shortcut\.weight',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.downsample.0.weight', None),
    (r'res(\d)\.(\d+)\.shortcut\.norm\.(\w+)',
     lambda m: f'layer{int(m[1]) - 1}.{m[2]}.downsample.1.{m[3]}', None),
]

SWIN_RULES: List[Rule] = [
    (r'patch_embed\.proj\.(weight|bias)', r'patch_embed.projection.\1',
     None),
    (r'patch_embed\.norm\.(weight|bias)', r'patch_embed.norm.\1', None),
    (r'absolute_pos_embed', 'absolute_pos_embed', None),
    (r'layers\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(weight|bias)',
     r'stages.\1.blocks.\2.\3.\4', None),
    (r'layers\.(\d+)\.blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)',
     r'stages.\1.blocks.\2.attn.w_msa.\3.\4', None),
    (r'layers\.(\d+)\.blocks\.(\d+)\.attn\.(relative_position_\w+)',
     r'stages.\1.blocks.\2.attn.w_msa.\3', None),
    (r'layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(weight|bias)',
     r'stages.\1.blocks.\2.ffn.layers.0.0.\3', None),
    (r'layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(weight|bias)',
     r'stages.\1.blocks.\2.ffn.layers.1.\3', None),
    (r'layers\.(\d+)\.downsample\.reduction\.weight',
     r'stages.\1.downsample.reduction.weight', swin_reduction_to_unfold),
    (r'layers\.(\d+)\.downsample\.norm\.(weight|bias)',
     r'stages.\1.downsample.norm.\2', swin_norm_to_unfold),
    (r'norm(\d)\.(weight|bias)', r'norm\1.\2', None),
]


@dataclass
class ConversionReport:
    """What the conversion did (see :meth:`summary`)."""
    source_keys: int = 0
    target_keys: int = 0
    mapped: Dict[str, List[str]] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    filled: List[str] = field(default_factory=list)
    permuted: Dict[str, List[int]] = field(default_factory=dict)
    level_names: Dict[str, List[str]] = field(default_factory=dict)
    unmapped: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)
    tie_mismatch: List[str] = field(default_factory=list)

    @property
    def tied(self) -> Dict[str, List[str]]:
        """Targets written once from several (equal) source entries."""
        return {k: v for k, v in self.mapped.items() if len(v) > 1}

    @property
    def ok(self) -> bool:
        return not (self.unmapped or self.missing or self.shape_mismatch
                    or self.tie_mismatch)

    def summary(self) -> List[str]:
        """Human-readable summary lines."""
        tied = self.tied
        sources = sum(len(v) for v in self.mapped.values())
        lines = [
            f'source entries: {self.source_keys} (mapped {sources}, dropped '
            f'{len(self.dropped)}); target entries: {self.target_keys} '
            f'(converted {len(self.mapped)}, filled {len(self.filled)})',
            f'tied: {sum(len(v) for v in tied.values())} source entries '
            f'written once as {len(tied)} target tensors',
        ]
        for name, order in self.level_names.items():
            lines.append(f'level order ({name}): {order}')
        if self.permuted:
            for name, perm in self.permuted.items():
                lines.append(f'permuted levels of {name}: new[j] = old[perm'
                             f'[j]], perm = {perm}')
        else:
            lines.append('level axes: same order in checkpoint and model, '
                         'no permutation')
        for k, why in self.dropped.items():
            lines.append(f'dropped: {k} ({why})')
        if self.filled:
            lines.append(f'filled: {len(self.filled)} BN num_batches_tracked'
                         ' = 0 (detectron2 FrozenBN has none)')
        lines.append(
            f'unmapped: {len(self.unmapped)}, missing: {len(self.missing)}, '
            f'shape mismatches: {len(self.shape_mismatch)}, differing tied '
            f'tensors: {len(self.tie_mismatch)}')
        return lines

    def error_message(self, limit: int = 50) -> str:
        """The problems, listed by kind."""
        parts = []
        for title, items in (
            ('source entries with no rule (unmapped)', self.unmapped),
            ('model entries with no source (missing)', self.missing),
            ('shape mismatches', self.shape_mismatch),
            ('tied entries that differ', self.tie_mismatch)):
            if items:
                shown = '\n  '.join(items[:limit])
                more = f'\n  ... and {len(items) - limit} more' \
                    if len(items) > limit else ''
                parts.append(f'{len(items)} {title}:\n  {shown}{more}')
        return '\n'.join(parts)


class _KeyMapper:
    """Maps one official key to (target key, transform) for a model."""

    def __init__(self, src: Mapping[str, Tensor], model: nn.Module) -> None:
        head = model.panoptic_head
        pixel_decoder = head.pixel_decoder
        self.backbone_rules = self._backbone_rules(src, model)
        src_layout = official_level_layout(src, pixel_decoder)
        dst_layout = target_level_layout(pixel_decoder)
        strides = pixel_decoder.strides
        self.level_names = {
            'checkpoint encoder': src_layout.names(src_layout.encoder,
                                                   strides),
            'model encoder': dst_layout.names(dst_layout.encoder, strides),
        }
        # input_proj: official index -> target index (None: no such level)
        self.proj_map = {
            i: (dst_layout.proj.index(t) if t in dst_layout.proj else None)
            for i, t in enumerate(src_layout.proj)
        }
        self.enc_perm = level_permutation(src_layout.encoder,
                                          dst_layout.encoder)
        self.dec_perm = level_permutation(src_layout.decoder,
                                          dst_layout.decoder)
        identity = list(range(len(dst_layout.encoder)))
        self.permuted = {}
        if self.enc_perm is not None and self.enc_perm != identity:
            if head.two_stage:
                raise ConversionError(
                    'the checkpoint orders its levels '
                    f'{self.level_names["checkpoint encoder"]} but the '
                    f'model {self.level_names["model encoder"]}; for a '
                    'two-stage model the proposal sizes depend on the level '
                    'position, so no permutation gives the same model: set '
                    'pixel_decoder.feature_order in the config to match the '
                    'checkpoint')
            self.permuted = {
                'level_embed, encoder MSDA': self.enc_perm,
                'decoder MSDA': self.dec_perm
            }
        enc_attn = pixel_decoder.encoder.layers[0].self_attn
        dec_attn = head.decoder.layers[0].cross_attn
        self.enc_msda = (enc_attn.num_heads, enc_attn.num_points)
        self.dec_msda = (dec_attn.num_heads, dec_attn.num_points)
        self.norm_names = {
            'input_proj': pixel_decoder.input_proj[0].norm_name,
            'lateral': pixel_decoder.lateral_convs[0].norm_name,
            'output': pixel_decoder.output_convs[0].norm_name,
        }
        self.parts = [
            (SRC_BACKBONE, DST_BACKBONE, self.backbone_rules),
            (SRC_PIXEL_DECODER, DST_PIXEL_DECODER,
             self._pixel_decoder_rules()),
            (SRC_PREDICTOR, DST_HEAD, self._predictor_rules()),
        ]

    @staticmethod
    def _backbone_rules(src: Mapping[str, Tensor],
                        model: nn.Module) -> List[Rule]:
        """ResNet or Swin rules, checked against the model's backbone."""
        is_swin = any(
            k.startswith(SRC_BACKBONE + 'patch_embed.') for k in src)
        is_resnet = any(k.startswith(SRC_BACKBONE + 'stem.') for k in src)
        kind = type(model.backbone).__name__
        if is_swin and kind != 'SwinTransformer':
            raise ConversionError('the checkpoint has a Swin backbone but '
                                  f'the config builds {kind}')
        if is_resnet and kind != 'ResNet':
            raise ConversionError('the checkpoint has a ResNet backbone but '
                                  f'the config builds {kind}')
        return SWIN_RULES if is_swin else RESNET_RULES

    # -- per-part rules ---------------------------------------------------
    def _pixel_decoder_rules(self) -> List[Rule]:
        enc_h, enc_p = self.enc_msda
        # ConvModule names its norm after the norm type ('gn' for GN)
        norm = self.norm_names

        def proj(m: re.Match) -> str:
            dst = self.proj_map.get(int(m[1]))
            sub = 'conv' if m[2] == '0' else norm['input_proj']
            # an index the model lacks yields a name that is not in the
            # model, reported as unmapped
            return f'input_proj.{dst if dst is not None else "?"}.' \
                f'{sub}.{m[3]}'

        def msda(per_point: int) -> Optional[Transform]:
            return self._level_transform(self.enc_perm, enc_h, enc_p,
                                         per_point)

        layer = r'transformer\.encoder\.layers\.(\d+)\.'
        rules: List[Rule] = [
            (r'input_proj\.(\d+)\.([01])\.(weight|bias)', proj, None),
            (r'transformer\.level_embed', 'level_embed',
             self._rows(self.enc_perm)),
            (layer + r'self_attn\.sampling_offsets\.(weight|bias)',
             r'encoder.layers.\1.self_attn.sampling_offsets.\2', msda(2)),
            (layer + r'self_attn\.attention_weights\.(weight|bias)',
             r'encoder.layers.\1.self_attn.attention_weights.\2', msda(1)),
            (layer + r'self_attn\.(value_proj|output_proj)\.(weight|bias)',
             r'encoder.layers.\1.self_attn.\2.\3', None),
            (layer + r'norm1\.(weight|bias)', r'encoder.layers.\1.norms.0.\2',
             None),
            (layer + r'norm2\.(weight|bias)', r'encoder.layers.\1.norms.1.\2',
             None),
            (layer + r'linear1\.(weight|bias)',
             r'encoder.layers.\1.ffn.layers.0.0.\2', None),
            (layer + r'linear2\.(weight|bias)',
             r'encoder.layers.\1.ffn.layers.1.\2', None),
            (r'mask_features\.(weight|bias)', r'mask_feature.\1', None),
            (r'adapter_(\d+)\.(weight|bias)',
             lambda m: f'lateral_convs.{int(m[1]) - 1}.conv.{m[2]}', None),
            (r'adapter_(\d+)\.norm\.(weight|bias)', lambda m:
             f'lateral_convs.{int(m[1]) - 1}.{norm["lateral"]}.{m[2]}',
             None),
            (r'layer_(\d+)\.(weight|bias)',
             lambda m: f'output_convs.{int(m[1]) - 1}.conv.{m[2]}', None),
            (r'layer_(\d+)\.norm\.(weight|bias)', lambda m:
             f'output_convs.{int(m[1]) - 1}.{norm["output"]}.{m[2]}', None),
        ]
        return rules

    def _predictor_rules(self) -> List[Rule]:
        dec_h, dec_p = self.dec_msda

        def msda(per_point: int) -> Optional[Transform]:
            return self._level_transform(self.dec_perm, dec_h, dec_p,
                                         per_point)

        layer = r'decoder\.layers\.(\d+)\.'
        box_mlp = r'(?:_bbox_embed|bbox_embed\.\d+|decoder\.bbox_embed\.\d+)'
        rules: List[Rule] = [
            (r'(enc_output|enc_output_norm)\.(weight|bias)', r'\1.\2', None),
            (r'class_embed\.(weight|bias)', r'cls_embed.\1', None),
            (r'label_enc\.weight', 'dn_generator.label_embedding.weight',
             None),
            (r'(query_feat|query_embed)\.weight', r'\1.weight', None),
            (r'mask_embed\.layers\.(\d+)\.(weight|bias)',
             r'mask_embed.layers.\1.\2', None),
            # decoder_norm and decoder.norm are one LayerNorm
            (r'(?:decoder_norm|decoder\.norm)\.(weight|bias)',
             r'decoder.norm.\1', None),
            # one box MLP, stored under 19 names in the official model
            (box_mlp + r'\.layers\.(\d+)\.(weight|bias)',
             r'bbox_embed.layers.\1.\2', None),
            (r'decoder\.ref_point_head\.layers\.(\d+)\.(weight|bias)',
             r'decoder.ref_point_head.layers.\1.\2', None),
            (layer + r'cross_attn\.sampling_offsets\.(weight|bias)',
             r'decoder.layers.\1.cross_attn.sampling_offsets.\2', msda(2)),
            (layer + r'cross_attn\.attention_weights\.(weight|bias)',
             r'decoder.layers.\1.cross_attn.attention_weights.\2', msda(1)),
            (layer + r'cross_attn\.(value_proj|output_proj)\.(weight|bias)',
             r'decoder.layers.\1.cross_attn.\2.\3', None),
            (layer + r'self_attn\.(in_proj_weight|in_proj_bias)',
             r'decoder.layers.\1.self_attn.attn.\2', None),
            (layer + r'self_attn\.out_proj\.(weight|bias)',
             r'decoder.layers.\1.self_attn.attn.out_proj.\2', None),
            # official norm2 / norm1 / norm3 follow self-attn / cross-attn /
            # FFN; mmdet numbers the norms in that order
            (layer + r'norm2\.(weight|bias)', r'decoder.layers.\1.norms.0.\2',
             None),
            (layer + r'norm1\.(weight|bias)', r'decoder.layers.\1.norms.1.\2',
             None),
            (layer + r'norm3\.(weight|bias)', r'decoder.layers.\1.norms.2.\2',
             None),
            (layer + r'linear1\.(weight|bias)',
             r'decoder.layers.\1.ffn.layers.0.0.\2', None),
            (layer + r'linear2\.(weight|bias)',
             r'decoder.layers.\1.ffn.layers.1.\2', None),
        ]
        return rules

    @staticmethod
    def _level_transform(perm: Optional[List[int]], num_heads: int,
                         num_points: int,
                         per_point: int) -> Optional[Transform]:
        if perm is None or perm == sorted(perm):
            return None
        return lambda t: permute_msda_levels(t, perm, num_heads, num_points,
                                             per_point)

    @staticmethod
    def _rows(perm: Optional[List[int]]) -> Optional[Transform]:
        if perm is None or perm == sorted(perm):
            return None
        index = torch.as_tensor(perm, dtype=torch.long)
        return lambda t: t.index_select(0, index)

    # -- entry point ------------------------------------------------------
    def __call__(self, key: str) -> Optional[Tuple[str, Optional[Transform]]]:
        """(target key, transform or None), or None if no rule applies."""
        for src_prefix, dst_prefix, rules in self.parts:
            if not key.startswith(src_prefix):
                continue
            name = key[len(src_prefix):]
            for pattern, repl, transform in rules:
                m = re.fullmatch(pattern, name)
                if m is None:
                    continue
                new = repl(m) if callable(repl) else m.expand(repl)
                return dst_prefix + new, transform
            return None
        return None


def convert_state_dict(src: Mapping[str, Tensor], model: nn.Module
                       ) -> Tuple['OrderedDict[str, Tensor]',
                                  ConversionReport]:
    """Map an official state dict onto ``model``'s state dict.

    Args:
        src (Mapping[str, Tensor]): Official (detectron2) state dict.
        model (nn.Module): This project's ``MaskDINO`` built from the target
            config; its state dict gives the expected names and shapes.

    Returns:
        tuple: the converted state dict, in the model's key order, and the
        report.

    Raises:
        ConversionError: On any unmapped source entry, missing model entry,
            shape mismatch or tied entries with different values; the
            message lists them.
    """
    mapper = _KeyMapper(src, model)
    template = model.state_dict()
    report = ConversionReport(
        source_keys=len(src),
        target_keys=len(template),
        level_names=mapper.level_names,
        permuted=mapper.permuted)
    converted: Dict[str, Tensor] = {}
    mismatched = set()  # reported as shape mismatches, not as missing
    for key, value in src.items():
        if key in DROPPED_KEYS:
            report.dropped[key] = DROPPED_KEYS[key]
            continue
        target = mapper(key)
        if target is None or target[0] not in template:
            report.unmapped.append(
                key if target is None else f'{key} -> {target[0]} (no such '
                'entry in the model)')
            continue
        dst, transform = target
        tensor = transform(value) if transform is not None else value
        expected = template[dst]
        if tuple(tensor.shape) != tuple(expected.shape):
            report.shape_mismatch.append(
                f'{key} {tuple(value.shape)} -> {dst} '
                f'{tuple(expected.shape)}')
            mismatched.add(dst)
            continue
        tensor = tensor.to(expected.dtype)
        if dst in converted:
            if not torch.equal(converted[dst], tensor):
                report.tie_mismatch.append(
                    f'{key} != {report.mapped[dst][0]} (both are {dst})')
            report.mapped[dst].append(key)
            continue
        converted[dst] = tensor
        report.mapped[dst] = [key]

    for dst, expected in template.items():
        if dst in converted or dst in mismatched:
            continue
        sibling = dst.rsplit('.', 1)[0] + '.running_mean'
        if dst.endswith('.num_batches_tracked') and sibling in converted:
            converted[dst] = torch.zeros_like(expected, device='cpu')
            report.filled.append(dst)
        else:
            report.missing.append(dst)
    if not report.ok:
        raise ConversionError(report.error_message())
    state_dict = OrderedDict((k, converted[k]) for k in template)
    return state_dict, report


# ----------------------------------------------------------------------
# Target model and dataset classes
# ----------------------------------------------------------------------
def build_target(config: str,
                 cfg_options: Optional[dict] = None
                 ) -> Tuple[nn.Module, object]:
    """Build this project's model (CPU, no pretrained init) from a config.

    Returns:
        tuple: the model and the mmengine ``Config``.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import projects.mask_dino  # noqa: F401  registers the modules

    register_all_modules()
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.eval()
    return model, cfg


def dataset_meta_from_config(cfg, num_classes: int) -> dict:
    """``dataset_meta`` (classes, palette, ...) of the config's test set
    (see :func:`projects.mask_dino.utils.dataset_meta_from_config`).

    Raises:
        ConversionError: If no test/val dataset or class names are found,
            or their number differs from the model's.
    """
    try:
        return config_dataset_meta(cfg, num_classes)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoint(src: str,
                       dst: str,
                       config: str,
                       cfg_options: Optional[dict] = None,
                       log: Callable[[str], None] = print
                       ) -> ConversionReport:
    """Convert ``src`` for ``config``, load it strictly, save to ``dst``.

    Args:
        src (str): Official checkpoint (``.pth`` / ``.pkl``).
        dst (str): Output mmengine checkpoint.
        config (str): This project's config the checkpoint is meant for.
        cfg_options (dict, optional): Overrides merged into the config.
        log (Callable): Receives the summary lines.

    Returns:
        ConversionReport: What was done.
    """
    state, info = load_official_checkpoint(src)
    model, cfg = build_target(config, cfg_options)
    new_state, report = convert_state_dict(state, model)
    model.load_state_dict(new_state, strict=True)
    head = model.panoptic_head
    dataset_meta = dataset_meta_from_config(cfg, head.num_classes)
    meta = dict(
        dataset_meta=dataset_meta,
        converter=dict(
            tool='tools/model_converters/maskdino2mmdet.py',
            source=osp.basename(src),
            source_sha256=_sha256(src),
            source_format=info['format'],
            source_container=info['container'],
            source_author=info.get('author'),
            config=osp.relpath(osp.abspath(config), REPO_ROOT)
            if osp.abspath(config).startswith(REPO_ROOT) else config,
            tied={k: v for k, v in report.tied.items()},
            dropped=sorted(report.dropped),
            filled=len(report.filled),
            permuted=dict(report.permuted)))
    torch.save(dict(state_dict=new_state, meta=meta), dst)
    log(f'source: {src} ({info["format"]}, {info["container"]})')
    log(f'target: {config} ({type(model).__name__}, '
        f'{head.num_classes} classes from the test dataset)')
    for line in report.summary():
        log(line)
    log('strict load into the model: OK')
    log(f'saved: {dst}')
    return report
