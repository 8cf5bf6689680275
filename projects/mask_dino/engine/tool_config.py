"""Config loading shared by ``tools/train.py``, ``tools/test.py`` and
``tools/demo/image_demo.py``, and the ``--tta`` switch of
``tools/test.py``."""
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config, ConfigDict

# Config sections that hold dataset and annotation paths.
DATA_SECTIONS = ('_dataloader', '_evaluator')


def _moved(path: str, old_root: str, new_root: str) -> str:
    """``path`` with the prefix ``old_root`` replaced by ``new_root``
    (``path`` itself when it does not lie under ``old_root``)."""
    old = old_root.rstrip('/')
    if path.rstrip('/') == old:
        return new_root
    if path.startswith(old + '/'):
        return osp.join(new_root, path[len(old) + 1:])
    return path


def _relocate(node: Any, old_root: str, new_root: str, seen: set) -> Any:
    """``node`` with every string under ``old_root`` moved to
    ``new_root``; dicts and lists are changed in place, once each (configs
    share them, e.g. ``test_evaluator = val_evaluator``)."""
    if isinstance(node, str):
        return _moved(node, old_root, new_root)
    if isinstance(node, (dict, list)):
        if id(node) in seen:
            return node
        seen.add(id(node))
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _relocate(value, old_root, new_root, seen)
    elif isinstance(node, list):
        node[:] = [_relocate(v, old_root, new_root, seen) for v in node]
    elif isinstance(node, tuple):
        return tuple(_relocate(v, old_root, new_root, seen) for v in node)
    return node


def merge_cfg_options(cfg: Config, cfg_options: Optional[dict]) -> Config:
    """Apply ``--cfg-options``; ``data_root=ROOT`` moves the whole config.

    A config states its dataset location once, as ``data_root``, but the
    dataloaders and evaluators copy it into their paths when the config is
    parsed, so overriding ``data_root`` alone changed nothing. Here every
    path of the ``*_dataloader`` / ``*_evaluator`` sections that lies under
    the config's ``data_root`` is moved under the new one. Explicit
    overrides of single paths are applied first and kept when they point
    elsewhere.

    Args:
        cfg (Config): The loaded config (changed in place).
        cfg_options (dict, optional): ``--cfg-options`` key/value pairs.

    Returns:
        Config: ``cfg``.
    """
    if not cfg_options:
        return cfg
    old_root = cfg.get('data_root')
    cfg.merge_from_dict(cfg_options)
    new_root = cfg.get('data_root')
    if old_root and new_root and new_root != old_root:
        seen: set = set()
        for key in list(cfg.keys()):
            if key.endswith(DATA_SECTIONS):
                cfg[key] = _relocate(cfg[key], old_root, new_root, seen)
    return cfg


def load_tool_config(config: str,
                     launcher: str,
                     cfg_options: Optional[dict] = None,
                     work_dir: Optional[str] = None) -> Config:
    """Load ``config`` and apply the launchers' common arguments.

    Args:
        config (str): Config file path.
        launcher (str): ``none``, ``pytorch``, ``slurm`` or ``mpi``.
        cfg_options (dict, optional): ``--cfg-options`` overrides (see
            :func:`merge_cfg_options` for ``data_root``).
        work_dir (str, optional): ``--work-dir``; when None, the config's
            own ``work_dir`` or ``./work_dirs/<config name>``.

    Returns:
        Config: The config with ``launcher`` and ``work_dir`` set.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    merge_cfg_options(cfg, cfg_options)
    # work_dir: command line > config > ./work_dirs/<config name>
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def enable_tta(cfg: Config) -> Config:
    """Wrap the model in the config's ``tta_model`` and test with its
    ``tta_pipeline``.

    The instance configs (``configs/maskdino_*_instance.py``) define both:
    ``MaskDINOTTAModel`` merges the boxes and masks of flipped and resized
    views. mmdet's fallback (``DetTTAModel``) merges boxes only and rejects
    masks, and panoptic / semantic maps are not merged across views, so any
    other config is refused with the list of what is supported.

    Raises:
        ValueError: If the config lacks ``tta_model`` or ``tta_pipeline``.
    """
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise ValueError(
            f'{cfg.filename}: --tta is not supported for this config (no '
            f'{" and ".join(missing)}). Test-time augmentation is supported '
            'for instance segmentation: configs/maskdino_r50_coco_instance'
            '.py, maskdino_swin-l_coco_instance.py and '
            'maskdino_tiny_synthetic_instance.py (MaskDINOTTAModel merges '
            'the boxes and masks of flipped and resized views); panoptic '
            'and semantic results cannot be merged across views.')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg
