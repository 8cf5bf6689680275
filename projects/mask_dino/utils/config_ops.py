"""Passing a fact a parent module owns down to a sub-module's config."""
from typing import Any


def pass_down(cfg: Any, owner: str, name: str, **values: Any) -> dict:
    """A copy of the sub-module config ``cfg`` with ``values`` set.

    A config states each fact once, on the module that owns it (e.g. the
    class counts on ``MaskDINOHead``), which passes it to the sub-modules
    that need it, as mmdet's ``Mask2FormerHead`` does. A sub-module config
    may still repeat a value (older configs, converted checkpoints); a
    repeated value that differs is an error rather than silently
    overridden.

    Args:
        cfg (dict): Config of the sub-module.
        owner (str): Name of the module that owns the values (messages),
            with the fact they follow from where the names differ, e.g.
            ``'MaskDINOHead (embed_dims)'``.
        name (str): Name of the sub-module's config entry (messages).
        **values: The facts to pass; ``None`` values are skipped.

    Returns:
        dict: The config with the values set.

    Raises:
        ValueError: If ``cfg`` states one of the values differently.
    """
    cfg = dict(cfg)
    for key, value in values.items():
        if value is None:
            continue
        if key in cfg and cfg[key] != value:
            raise ValueError(
                f'{name}.{key}={cfg[key]!r} contradicts {key}={value!r} of '
                f'{owner}, which passes it down: leave it out of {name}')
        cfg[key] = value
    return cfg


def pass_down_at(cfg: Any, path: str, owner: str, name: str,
                 **values: Any) -> dict:
    """:func:`pass_down` into the config nested in ``cfg`` at ``path``.

    For facts that a module passes to the parts of its parts, e.g. the
    pixel decoder's width to ``encoder.layer_cfg.self_attn_cfg``. The
    configs along the path are copied (the input is not changed) and
    created where missing (a missing config then holds the passed values
    only, not the defaults of the module that builds it).

    Args:
        cfg (dict): Config of the sub-module.
        path (str): Dotted keys of the nested config in ``cfg``, e.g.
            ``'layer_cfg.ffn_cfg'``; ``''`` is ``cfg`` itself.
        owner (str): Name of the module that owns the values (messages).
        name (str): Name of ``cfg``'s entry (messages).
        **values: The facts to pass; ``None`` values are skipped.

    Returns:
        dict: A copy of ``cfg`` with the values set in the nested config.

    Raises:
        ValueError: If the nested config states one of the values
            differently.
    """
    if not path or all(value is None for value in values.values()):
        return pass_down(cfg, owner, name, **values)
    key, _, rest = path.partition('.')
    cfg = dict(cfg)
    cfg[key] = pass_down_at(
        cfg.get(key) or {}, rest, owner, f'{name}.{key}', **values)
    return cfg
