"""Saving the weights a benchmark or demo run ends with."""
import os.path as osp

from mmengine.runner import Runner


def save_final_checkpoint(runner: Runner,
                          work_dir: str,
                          filename: str = 'model_final.pth') -> str:
    """Save the trained weights alone (no optimiser or scheduler state),
    for ``tools/test.py`` or ``DetInferencer``.

    Args:
        runner (Runner): The runner that trained the model.
        work_dir (str): Folder of the checkpoint.
        filename (str): Its file name.

    Returns:
        str: The checkpoint's path.
    """
    runner.save_checkpoint(
        work_dir,
        filename,
        save_optimizer=False,
        save_param_scheduler=False,
        by_epoch=False)
    return osp.join(work_dir, filename)
