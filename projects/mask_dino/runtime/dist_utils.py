"""Distributed training on machines without CUDA (gloo backend)."""
import datetime
import os
import subprocess

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

CPU_BACKEND = 'gloo'


def _set_slurm_env(port: str = '29500') -> None:
    """Translate the SLURM task variables into the ``env://`` ones."""
    for key in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        if key not in os.environ:
            raise RuntimeError(
                f'--launcher slurm needs the environment variable {key} '
                '(run the script through srun).')
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', port)
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Start a gloo process group when a launcher is used without CUDA.

    mmengine's ``init_dist`` pins every process to a CUDA device and the
    runner gives ``device_ids=[LOCAL_RANK]`` to DDP, both of which fail on a
    CPU-only build of torch. On such machines this function initialises the
    process group itself (``env://``, backend gloo; an ``nccl`` backend in
    ``env_cfg.dist_cfg`` is replaced by gloo), so the runner finds it ready,
    and sets a DDP wrapper without device ids. With CUDA available, or
    without a launcher, it does nothing and mmengine proceeds as usual.

    Args:
        cfg (Config): The full config; ``env_cfg.dist_cfg`` and
            ``model_wrapper_cfg`` may be updated in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        bool: Whether a CPU process group was initialised.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    if torch_dist.is_initialized():
        return False
    if launcher == 'slurm':
        _set_slurm_env()
    elif launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {launcher} without CUDA is not supported; use '
            '--launcher pytorch (tools/dist_train.sh) or slurm.')
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if key not in os.environ:
            raise RuntimeError(
                f'--launcher {launcher} needs the environment variable {key}'
                ' (start the script with torchrun / tools/dist_train.sh).')

    if cfg.get('env_cfg') is None:
        cfg.env_cfg = dict()
    dist_cfg = dict(cfg.env_cfg.get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', CPU_BACKEND)
    if backend != CPU_BACKEND:
        print_log(
            f'CUDA is not available: using the {CPU_BACKEND} backend '
            f'instead of {backend} for distributed training.',
            logger='current')
        backend = CPU_BACKEND
    cfg.env_cfg.dist_cfg = dict(dist_cfg, backend=backend)
    if dist_cfg.get('timeout') is not None:  # seconds, as mmengine's
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    torch_dist.init_process_group(backend=backend, **dist_cfg)

    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,  # CPU modules take no device ids
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True
