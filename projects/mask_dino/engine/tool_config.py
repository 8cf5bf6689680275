"""Config loading shared by ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
from typing import Optional

from mmengine.config import Config


def load_tool_config(config: str,
                     launcher: str,
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Load ``config`` and apply the launchers' common arguments.

    Args:
        config (str): Config file path.
        launcher (str): ``none``, ``pytorch``, ``slurm`` or ``mpi``.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        work_dir (str, optional): ``--work-dir``; when None, the config's
            own ``work_dir`` or ``./work_dirs/<config name>``.

    Returns:
        Config: The config with ``launcher`` and ``work_dir`` set.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    # work_dir: command line > config > ./work_dirs/<config name>
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg
