"""Export a Mask DINO config (+ checkpoint) to an ONNX file.

The graph is :class:`~.wrapper.MaskDINOExportWrapper` traced by
``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``): input
``inputs`` (B, 3, H, W), the data preprocessor's normalised and padded
batch; outputs ``cls_scores`` (B, Q, C'), ``mask_preds`` (B, Q, H/4, W/4)
(not in box-only models) and ``bbox_preds`` (B, Q, 4). The file carries its config, class names and
task switches as ONNX metadata, so that :class:`~.runtime.ORTMaskDINO`
needs nothing but the ``.onnx`` file.
"""
import copy
import json
import math
import os
import os.path as osp
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.config import Config
from torch import nn

from .wrapper import INPUT_NAMES, MaskDINOExportWrapper, export_mode, \
    output_names

#: ``--task`` values and the ``test_cfg`` switches they set.
TASK_SWITCHES = {
    'instance': dict(instance_on=True, panoptic_on=False, semantic_on=False),
    'panoptic': dict(instance_on=False, panoptic_on=True, semantic_on=False),
    'semantic': dict(instance_on=False, panoptic_on=False, semantic_on=True),
}
#: Opsets the exporter accepts. 16 is the default because the tests run
#: at it; 17+ (``nn.LayerNorm`` as one ``LayerNormalization`` node) gives
#: the same outputs within float rounding (R50, 384x384: 2.1e-6 abs after
#: undoing query swaps, see :mod:`.verify`).
SUPPORTED_OPSETS = (13, 14, 15, 16, 17, 18, 19, 20)
DEFAULT_OPSET = 16
#: Metadata keys written into the ONNX file.
META_CONFIG, META_DATASET, META_EXPORT = ('mmdet_config', 'dataset_meta',
                                          'export_info')


def load_config(config: Union[str, Config],
                task: Optional[str] = None,
                cfg_options: Optional[dict] = None) -> Config:
    """Load a config for inference.

    Args:
        config (str | Config): Config file or object (copied).
        task (str, optional): Keep only this task on in ``model.test_cfg``
            (``'instance'``, ``'panoptic'`` or ``'semantic'``); None keeps
            the config's switches.
        cfg_options (dict, optional): Overrides, as ``--cfg-options``.

    Returns:
        Config: The config, with the backbone's pretrained init off (the
        checkpoint, or random weights, replace it).
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else \
        copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None
    if task is not None:
        if task not in TASK_SWITCHES:
            raise ValueError(f'task must be one of {sorted(TASK_SWITCHES)}, '
                             f'got {task!r}')
        cfg.model.test_cfg.update(TASK_SWITCHES[task])
    return cfg


def build_detector(cfg: Config,
                   checkpoint: Optional[str] = None,
                   seed: int = 0) -> nn.Module:
    """Build the detector of ``cfg`` on the CPU, in eval mode.

    Args:
        cfg (Config): From :func:`load_config`.
        checkpoint (str, optional): Checkpoint file; None or ``'none'``
            gives random weights (``init_weights`` after
            ``torch.manual_seed(seed)``), useful for tests and benchmarks.
        seed (int): Seed of the random weights.

    Returns:
        nn.Module: The detector, with ``cfg`` and ``dataset_meta``.
    """
    import projects.mask_dino  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    dataset_meta = dict(cfg.get('test_dataloader', {}).get(
        'dataset', {}).get('metainfo', {}) or {})
    if checkpoint in (None, '', 'none', 'None'):
        model.init_weights()
    else:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        dataset_meta.update(ckpt.get('meta', {}).get('dataset_meta', {}))
    model.cfg = cfg
    model.dataset_meta = dataset_meta
    return model.eval()


def padded_shape(cfg: Config, shape: Sequence[int]) -> Tuple[int, int]:
    """Round (H, W) up to the data preprocessor's ``pad_size_divisor``,
    the size of the batches the model actually sees (800x1333 ->
    800x1344 for the COCO configs)."""
    divisor = int(cfg.model.data_preprocessor.get('pad_size_divisor', 1)
                  or 1)
    return tuple(int(math.ceil(s / divisor) * divisor) for s in shape)


def export_onnx(detector: nn.Module,
                out_file: str,
                shape: Sequence[int] = (800, 1344),
                batch_size: int = 1,
                dynamic: bool = False,
                opset: int = DEFAULT_OPSET,
                task: Optional[str] = None) -> str:
    """Trace the detector's network and write the ONNX file.

    Args:
        detector (nn.Module): From :func:`build_detector`.
        out_file (str): Output path.
        shape (Sequence[int]): (H, W) of the example input (the static
            input size unless ``dynamic``). Should be a multiple of the
            padding divisor (see :func:`padded_shape`).
        batch_size (int): Batch of the example input.
        dynamic (bool): Make batch, height and width dynamic axes.
        opset (int): ONNX opset, one of :data:`SUPPORTED_OPSETS`.
        task (str, optional): Recorded in the metadata.

    Returns:
        str: ``out_file``.
    """
    if opset not in SUPPORTED_OPSETS:
        raise ValueError(f'opset must be one of {SUPPORTED_OPSETS}, got '
                         f'{opset}')
    detector = detector.eval()
    wrapper = MaskDINOExportWrapper(detector).eval()
    example = torch.zeros(batch_size, 3, *shape)
    outputs = output_names(detector.panoptic_head.with_mask)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {
            'inputs': {0: 'batch', 2: 'height', 3: 'width'},
            'cls_scores': {0: 'batch'},
            'mask_preds': {0: 'batch', 2: 'mask_height', 3: 'mask_width'},
            'bbox_preds': {0: 'batch'},
        }
        dynamic_axes = {
            name: axes
            for name, axes in dynamic_axes.items()
            if name in INPUT_NAMES + outputs
        }
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with export_mode(detector), torch.no_grad(), warnings.catch_warnings():
        # Shape checks of the head (e.g. "enough tokens for the top-K") run
        # once at trace time; the tracer warns about each of them.
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=UserWarning)
        torch.onnx.export(
            wrapper, (example, ),
            out_file,
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True)
    _write_metadata(
        out_file, detector,
        dict(
            shape=list(shape),
            batch_size=batch_size,
            dynamic=dynamic,
            opset=opset,
            task=task,
            torch=torch.__version__))
    return out_file


def _write_metadata(out_file: str, detector: nn.Module,
                    export_info: Dict) -> None:
    """Store the config, the dataset meta and the export settings as
    ONNX ``metadata_props`` (strings)."""
    import onnx
    model = onnx.load(out_file)
    entries = {
        META_CONFIG: detector.cfg.pretty_text,
        META_DATASET: json.dumps(detector.dataset_meta, default=list),
        META_EXPORT: json.dumps(export_info),
    }
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, out_file)


def pytorch2onnx(config: str,
                 checkpoint: Optional[str],
                 out_file: str,
                 shape: Sequence[int] = (800, 1333),
                 dynamic: bool = False,
                 opset: int = DEFAULT_OPSET,
                 task: Optional[str] = None,
                 cfg_options: Optional[dict] = None) -> str:
    """Config + checkpoint -> ONNX file (the command-line tool's body).

    Args:
        config (str): Config file.
        checkpoint (str, optional): Checkpoint; None / ``'none'`` for
            random weights.
        out_file (str): Output ``.onnx`` path.
        shape (Sequence[int]): Input (H, W), rounded up to the padding
            divisor.
        dynamic (bool): Dynamic batch / height / width.
        opset (int): ONNX opset.
        task (str, optional): Task switches of the post-processing.
        cfg_options (dict, optional): Config overrides.

    Returns:
        str: ``out_file``.
    """
    cfg = load_config(config, task, cfg_options)
    detector = build_detector(cfg, checkpoint)
    return export_onnx(
        detector,
        out_file,
        shape=padded_shape(cfg, shape),
        dynamic=dynamic,
        opset=opset,
        task=task)
