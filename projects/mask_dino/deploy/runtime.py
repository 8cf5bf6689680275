"""Run an exported Mask DINO with ONNX Runtime, with mmdet's data flow.

:class:`ORTMaskDINO` takes the place of the PyTorch detector in
``inference_detector``-style use and in mmengine's test loop:

- pre-processing is the config's own: the test pipeline
  (``mmdet.apis``'s ``get_test_pipeline_cfg``, ``LoadImageFromNDArray``
  for arrays) and the model's ``data_preprocessor`` (normalisation,
  padding, ``batch_input_shape``);
- the network is the ONNX session;
- post-processing is the config's own :class:`MaskDINOFusionHead` and
  ``MaskDINO.add_pred_to_datasample`` applied to the session's outputs,
  so the results are :class:`DetDataSample` objects with the fields of
  ``inference_detector`` (``pred_instances``, ``pred_panoptic_seg``,
  ``pred_sem_seg`` / ``seg_logits``), ready for the visualiser and the
  metrics.

A static-shape model needs batches of exactly its input size: smaller
batches are zero-padded at the bottom/right (the data preprocessor's own
padding value), and ``batch_input_shape`` is updated so that masks and
boxes are decoded on the padded canvas, as the PyTorch model would do on
that padding. Larger batches are refused.
"""
import copy
import json
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from torch import Tensor

from ..detectors.maskdino import fusion_head_cfgs
from .exporter import META_CONFIG, META_DATASET, META_EXPORT, TASK_SWITCHES
from .wrapper import INPUT_NAMES, OUTPUT_NAMES

ImageType = Union[str, np.ndarray]


def _load_dataset_meta(text: str) -> dict:
    """``dataset_meta`` from its JSON metadata entry.

    JSON turns the palette's RGB tuples into lists, which mmengine's
    visualiser takes for lists of colours; they are made tuples again.
    """
    meta = json.loads(text)
    for key, value in meta.items():
        if key.endswith('palette') and isinstance(value, list):
            meta[key] = [tuple(c) if isinstance(c, list) else c
                         for c in value]
    return meta


def run_session(session, inputs: np.ndarray
                ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
    """Run an exported graph: ``(cls_scores, mask_preds, bbox_preds)``,
    the triple of ``MaskDINOHead.predict``, with None masks for box-only
    graphs (which have no ``mask_preds`` output).

    Args:
        session (onnxruntime.InferenceSession): The model's session.
        inputs (np.ndarray): (B, 3, H, W) float32 batch.

    Returns:
        tuple: class logits (B, Q, C'), mask logits (B, Q, H/4, W/4) or
        None, boxes (B, Q, 4) normalised cxcywh.
    """
    names = [out.name for out in session.get_outputs()]
    outputs: Dict[str, Tensor] = {
        name: torch.from_numpy(out)
        for name, out in zip(names, session.run(names, {
            INPUT_NAMES[0]: inputs}))
    }
    return tuple(outputs.get(name) for name in OUTPUT_NAMES)


def create_session(onnx_file: str, num_threads: Optional[int] = None):
    """An ONNX Runtime CPU session with all graph optimisations.

    Args:
        onnx_file (str): Model file.
        num_threads (int, optional): Intra-op threads; None lets ONNX
            Runtime choose (all cores).

    Returns:
        onnxruntime.InferenceSession: The session.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(
        onnx_file, options, providers=['CPUExecutionProvider'])


class ORTMaskDINO:
    """An exported Mask DINO behind the detector's inference interface.

    Args:
        onnx_file (str): The exported model.
        config (str | Config, optional): Config to take the pipeline,
            data preprocessor and post-processing from; defaults to the
            one stored in the file.
        task (str, optional): Override the stored task switches
            (``'instance'``, ``'panoptic'``, ``'semantic'``).
        num_threads (int, optional): ONNX Runtime intra-op threads.
    """

    def __init__(self,
                 onnx_file: str,
                 config: Union[str, Config, None] = None,
                 task: Optional[str] = None,
                 num_threads: Optional[int] = None) -> None:
        import projects.mask_dino  # noqa: F401  (registers the modules)
        from mmdet.registry import MODELS
        from mmengine.registry import init_default_scope

        self.session = create_session(onnx_file, num_threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.export_info = json.loads(meta.get(META_EXPORT, '{}'))
        if config is None:
            if META_CONFIG not in meta:
                raise ValueError(f'{onnx_file} carries no config; pass one')
            config = Config.fromstring(meta[META_CONFIG], '.py')
        elif isinstance(config, str):
            config = Config.fromfile(config)
        self.cfg = copy.deepcopy(config)
        if task is not None:
            self.cfg.model.test_cfg.update(TASK_SWITCHES[task])
        init_default_scope(self.cfg.get('default_scope', 'mmdet'))
        self.dataset_meta = _load_dataset_meta(meta.get(META_DATASET, '{}'))
        model_cfg = self.cfg.model
        self.data_preprocessor = MODELS.build(model_cfg.data_preprocessor)
        fusion_cfg, test_cfg = fusion_head_cfgs(
            model_cfg.panoptic_head, model_cfg.panoptic_fusion_head,
            model_cfg.test_cfg)
        fusion_cfg.update(test_cfg=test_cfg)
        self.fusion_head = MODELS.build(fusion_cfg)
        self._pipelines = {}
        shape = self.session.get_inputs()[0].shape
        self.input_shape = tuple(shape[2:]) if all(
            isinstance(s, int) for s in shape[2:]) else None
        self.input_batch = shape[0] if isinstance(shape[0], int) else None

    # ------------------------------------------------------------------
    # network
    # ------------------------------------------------------------------
    def forward(self, inputs: Tensor
                ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """Raw network outputs, as ``MaskDINOHead.predict``.

        Args:
            inputs (Tensor): (B, 3, H, W) normalised, padded batch.

        Returns:
            tuple: class logits (B, Q, C'), mask logits (B, Q, H/4, W/4)
            (None for box-only models), boxes (B, Q, 4) normalised
            cxcywh.
        """
        return run_session(self.session,
                           inputs.float().contiguous().numpy())

    def _fit_input_shape(self, inputs: Tensor,
                         data_samples: list) -> Tensor:
        """Zero-pad a batch to a static model's input size (bottom/right)
        and record the padded size in the samples' metainfo."""
        if self.input_shape is None:
            return inputs
        height, width = inputs.shape[-2:]
        target_h, target_w = self.input_shape
        if height > target_h or width > target_w:
            raise ValueError(
                f'the pre-processed batch is {height}x{width}, larger than '
                f'the static input {target_h}x{target_w} of the ONNX model;'
                ' export with --dynamic or a larger --shape')
        if (height, width) == (target_h, target_w):
            return inputs
        pad_value = float(self.data_preprocessor.pad_value)
        inputs = F.pad(inputs, (0, target_w - width, 0, target_h - height),
                       value=pad_value)
        for sample in data_samples:
            sample.set_metainfo(
                dict(batch_input_shape=(target_h, target_w),
                     pad_shape=(target_h, target_w)))
        return inputs

    # ------------------------------------------------------------------
    # mmengine / mmdet interface
    # ------------------------------------------------------------------
    def test_step(self, data: dict) -> list:
        """Pre-process, run and post-process a batch (``BaseModel.
        test_step`` contract: a dataloader batch in, data samples out).

        Args:
            data (dict): ``inputs`` (list of uint8 (3, H, W) tensors) and
                ``data_samples``, as collated by the test dataloader.

        Returns:
            list[DetDataSample]: With the prediction fields.
        """
        from ..detectors.maskdino import MaskDINO

        data = self.data_preprocessor(data, False)
        samples = data['data_samples']
        inputs = self._fit_input_shape(data['inputs'], samples)
        if self.input_batch is not None and len(inputs) != self.input_batch:
            # a static batch size: run image by image
            outputs = [self.forward(x[None]) for x in inputs]
            outputs = tuple(None if o[0] is None else torch.cat(o)
                            for o in zip(*outputs))
        else:
            outputs = self.forward(inputs)
        results = self.fusion_head.predict(*outputs, samples, rescale=True)
        # add_pred_to_datasample uses no detector state.
        return MaskDINO.add_pred_to_datasample(self, samples, results)

    def _pipeline(self, from_array: bool):
        """The config's test pipeline, built once per input kind."""
        if from_array not in self._pipelines:
            from mmcv.transforms import Compose
            from mmdet.utils import get_test_pipeline_cfg
            pipeline = get_test_pipeline_cfg(self.cfg.copy())
            if from_array:
                pipeline[0].type = 'mmdet.LoadImageFromNDArray'
            self._pipelines[from_array] = Compose(pipeline)
        return self._pipelines[from_array]

    def __call__(self, imgs: Union[ImageType, Sequence[ImageType]]):
        """``inference_detector(model, imgs)`` with this model.

        Args:
            imgs (str | ndarray | list): Image path(s) or BGR array(s).

        Returns:
            DetDataSample | list[DetDataSample]: One per image.
        """
        is_batch = isinstance(imgs, (list, tuple))
        results = []
        for img in (imgs if is_batch else [imgs]):
            from_array = isinstance(img, np.ndarray)
            data = dict(img=img, img_id=0) if from_array else dict(
                img_path=img, img_id=0)
            data = self._pipeline(from_array)(data)
            batch = dict(
                inputs=[data['inputs']], data_samples=[data['data_samples']])
            results.append(self.test_step(batch)[0])
        return results if is_batch else results[0]


def evaluate_onnx(model: ORTMaskDINO,
                  dataloader_cfg: Optional[dict] = None,
                  evaluator_cfg=None,
                  log_interval: int = 50) -> dict:
    """The config's test dataloader and evaluator on an ONNX model
    (``tools/test.py`` without the runner).

    Args:
        model (ORTMaskDINO): The model.
        dataloader_cfg (dict, optional): Defaults to
            ``model.cfg.test_dataloader``.
        evaluator_cfg (dict | list, optional): Defaults to
            ``model.cfg.test_evaluator``.
        log_interval (int): Print progress every that many batches.

    Returns:
        dict: The metrics.
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner

    dataloader = Runner.build_dataloader(
        dataloader_cfg or model.cfg.test_dataloader)
    evaluator = Evaluator(evaluator_cfg or model.cfg.test_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    for i, batch in enumerate(dataloader):
        outputs = model.test_step(batch)
        evaluator.process(data_samples=outputs, data_batch=batch)
        if log_interval and (i + 1) % log_interval == 0:
            print(f'[{i + 1}/{len(dataloader)}]', flush=True)
    return evaluator.evaluate(len(dataloader.dataset))
