"""Stop training at the first NaN/Inf loss, naming the iteration, the loss
terms and the images, before anything is saved."""
from typing import Dict, List, Optional, Sequence

import torch
from mmdet.registry import HOOKS
from mmengine.dist import all_reduce
from mmengine.hooks import Hook


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or Inf."""


def nonfinite_terms(outputs: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """The loss terms (keys containing ``'loss'``) that are not finite.

    One device synchronisation for all terms; names are only collected
    when something is wrong.
    """
    keys = [
        k for k, v in outputs.items()
        if 'loss' in k and isinstance(v, torch.Tensor)
    ]
    if not keys:
        return {}
    values = torch.stack([outputs[k].detach().float().mean() for k in keys])
    if bool(torch.isfinite(values).all()):
        return {}
    return {
        k: float(v)
        for k, v in zip(keys, values.cpu()) if not torch.isfinite(v)
    }


def describe_images(data_batch: Optional[dict]) -> List[str]:
    """``img_id`` and path of every image of a (raw) training batch."""
    if not isinstance(data_batch, dict):
        return []
    samples: Sequence = data_batch.get('data_samples') or []
    names = []
    for sample in samples:
        meta = getattr(sample, 'metainfo', {}) or {}
        img_id, path = meta.get('img_id'), meta.get('img_path')
        if img_id is not None and path:
            names.append(f'{img_id} ({path})')
        else:
            names.append(str(img_id if img_id is not None else path))
    return names


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` as soon as a loss is NaN or Inf.

    The check runs after the iteration's update and before
    :class:`~mmengine.hooks.CheckpointHook` (priority ``VERY_LOW``) and the
    logger see it, so no checkpoint is written from the corrupted weights:
    the last checkpoint stays the last good one and ``--resume`` restarts
    from it. The message names the iteration, the non-finite terms (e.g.
    ``d3.dn_loss_bbox``) and the ids and files of the batch's images; under
    distributed training every rank stops (the flag is all-reduced, one
    scalar per iteration) and each names its own images.

    Disable with ``default_hooks.nonfinite_loss=None``.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        outputs = outputs or {}
        bad = nonfinite_terms(outputs)
        tensors = [v for v in outputs.values() if isinstance(v, torch.Tensor)]
        # on the losses' device: NCCL reduces CUDA tensors only
        flag = torch.tensor(
            float(len(bad) > 0),
            device=tensors[0].device if tensors else 'cpu')
        all_reduce(flag)  # no-op when not distributed
        if float(flag) == 0:
            return
        last = runner.message_hub.get_info('last_ckpt')
        where = ', '.join(f'{k}={v}' for k, v in list(bad.items())[:10])
        if len(bad) > 10:
            where += f' and {len(bad) - 10} more'
        images = describe_images(data_batch)
        raise NonFiniteLossError(
            f'Non-finite loss at iteration {runner.iter + 1}: ' +
            (f'{where}; images: {", ".join(images) or "unknown"}'
             if bad else 'on another rank') +
            '. Training stops before anything is saved from this '
            'iteration; the last checkpoint is '
            f'{last or "none (none was saved yet)"}. Resume from it with '
            '--resume, possibly with a lower learning rate, stronger '
            'gradient clipping or without AMP.')
