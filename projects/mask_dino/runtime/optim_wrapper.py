"""bfloat16 mixed precision that also runs on the CPU."""
from contextlib import contextmanager

import torch
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast
from torch import nn


@OPTIM_WRAPPERS.register_module()
class BF16AmpOptimWrapper(OptimWrapper):
    """Automatic mixed precision with bfloat16 autocast, on CPU or GPU.

    mmengine's :class:`AmpOptimWrapper` refuses to start without an
    accelerator and scales the loss for fp16. bfloat16 has the exponent
    range of fp32, so no loss scaling is needed and the wrapper is a plain
    :class:`OptimWrapper` whose forward runs under
    ``autocast(dtype=torch.bfloat16)`` on the runner's device. This is what
    ``tools/train.py --amp`` selects on a machine without CUDA.

    Mask DINO keeps its precision-sensitive parts in fp32 whatever the
    autocast state: the pixel decoder (deformable encoder) and the
    transformer decoder disable autocast, the Hungarian matching costs and
    every loss are computed on fp32 copies of the predictions. Under
    autocast only the backbone and the prediction heads run in bf16.

    Args:
        **kwargs: Arguments of :class:`mmengine.optim.OptimWrapper`
            (``optimizer``, ``clip_grad``, ``accumulative_counts``).
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of :class:`OptimWrapper` plus bf16
        autocast for the forward pass."""
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield
