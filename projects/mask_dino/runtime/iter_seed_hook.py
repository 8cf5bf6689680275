"""Per-iteration seeding: a resumed run continues like an unbroken one."""
from typing import Optional

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook

DATA_BATCH = Optional[dict]


def iteration_seed(base_seed: int, iteration: int, rank: int) -> int:
    """A 64-bit seed that depends only on (base seed, iteration, rank).

    ``numpy.random.SeedSequence`` mixes the three numbers, so neighbouring
    iterations or ranks get unrelated streams.
    """
    if base_seed < 0 or iteration < 0 or rank < 0:
        raise ValueError('seed, iteration and rank must be >= 0, got '
                         f'{base_seed}, {iteration}, {rank}')
    sequence = np.random.SeedSequence([base_seed, iteration, rank])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Seed torch's generators from (seed, iteration, rank) before every
    training iteration.

    When mmengine resumes an iteration-based run it re-seeds the generators
    and replays the data loader up to the resumed iteration. That restores
    the data order and the augmentation draws of the pipeline (numpy /
    ``random`` in the loading process or in seeded workers), but not the
    torch draws of the model: Mask DINO draws its denoising noise and its
    mask sampling points from the global torch generators, so the resumed
    run would follow another random path than the uninterrupted one.

    Re-seeding torch's CPU and CUDA generators at the start of every
    iteration makes the model's randomness a function of (``runner.seed``,
    iteration, rank) alone: nothing has to be stored in the checkpoints or
    exchanged between ranks, a run killed after a checkpoint and resumed
    with ``--resume`` ends with the same weights as an uninterrupted run of
    the same seed (with ``randomness=dict(seed=..., deterministic=True)``;
    GPU kernels with atomic adds aside), validation during training does
    not change the training trajectory, and every data-parallel rank draws
    different noise (as the official detectron2 training, which seeds each
    rank differently).

    The data pipeline must not draw from torch's global generator in the
    training process (mmdet's transforms use numpy). The seed is that of the
    runner, which mmengine keeps in the checkpoint and restores on resume.
    """

    priority = 'VERY_HIGH'

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        """Seed the generators for iteration ``runner.iter``."""
        torch.manual_seed(iteration_seed(runner.seed, runner.iter, get_rank()))
