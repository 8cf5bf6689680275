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
        owner (str): Name of the module that owns the values (messages).
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
                f'{owner}: state it on the {owner} only, which passes it '
                'down')
        cfg[key] = value
    return cfg
