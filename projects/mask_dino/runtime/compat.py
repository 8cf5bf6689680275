"""Checkpoint loading under torch's safe (``weights_only``) unpickler.

Since torch 2.6, :func:`torch.load` defaults to ``weights_only=True``: only
tensors, plain containers and explicitly allow-listed globals may be
unpickled. mmengine 0.10.7 calls :func:`torch.load` without the argument,
so its own checkpoints fail to load, because their ``meta`` and
``message_hub`` entries hold numpy scalars and arrays and mmengine
:class:`~mmengine.logging.HistoryBuffer` objects.

This module keeps the safe loader and allow-lists exactly the globals that
mmengine-saved checkpoints contain (found by saving real checkpoints with a
``Runner``), nothing broader. It also wraps mmengine's local-file
checkpoint loader once, so that a refused checkpoint raises
:class:`UnsafeCheckpointError` naming the file and the refused global
instead of torch's advice to switch the safe loader off.

Both steps run once, when :mod:`projects.mask_dino.runtime` is imported
(the configs' ``custom_imports``); calling
:func:`install` again is a no-op.
"""
import functools
import pickle
import re
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

try:  # numpy >= 2 moved ``numpy.core`` to ``numpy._core``.
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray

SafeGlobal = Union[Callable, Tuple[Callable, str]]


def _numpy_function_aliases(name: str) -> List[Tuple[Callable, str]]:
    """Allow-list entries for a ``numpy(._)core.multiarray`` function.

    A pickle names a function by its import path at save time, so
    checkpoints saved with numpy 1.x say ``numpy.core.multiarray.<name>``
    and those saved with numpy 2.x say ``numpy._core.multiarray.<name>``.
    Both paths resolve to the same function object.

    Args:
        name (str): Function name inside the ``multiarray`` module.

    Returns:
        list[tuple[Callable, str]]: ``(function, pickled path)`` pairs.
    """
    func = getattr(_np_multiarray, name)
    return [(func, f'{prefix}.multiarray.{name}')
            for prefix in ('numpy._core', 'numpy.core')]


# The statistics methods every HistoryBuffer pickles (see below).
_HISTORY_BUFFER_METHODS = frozenset(('min', 'max', 'current', 'mean'))


def history_buffer_method(owner: type, name: str) -> Callable:
    """Safe stand-in for ``getattr`` when unpickling a HistoryBuffer.

    ``HistoryBuffer.__getstate__`` pickles the class's statistics methods,
    and pickle protocol 2 (torch's default) writes a method as
    ``builtins.getattr(HistoryBuffer, 'min')``. Allow-listing the real
    ``getattr`` would let a checkpoint fetch any attribute of any
    allow-listed object, so this function is allow-listed under that
    name instead and resolves only those four methods.

    Args:
        owner (type): The object ``getattr`` is applied to.
        name (str): The attribute name.

    Returns:
        Callable: ``HistoryBuffer.<name>``.

    Raises:
        pickle.UnpicklingError: For any other lookup.
    """
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    path = (f'{owner.__module__}.{owner.__qualname__}' if isinstance(
        owner, type) else f'<{type(owner).__name__} object>')
    # Worded like torch's own refusal so that torch and
    # UnsafeCheckpointError report the attribute as the refused global.
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL {path}.{name} was not an allowed '
        'global by default (getattr may only fetch the statistics '
        'methods of mmengine.logging.HistoryBuffer).')


#: Globals that mmengine-saved checkpoints contain besides what torch
#: allows by default, found by saving checkpoints with a real ``Runner``
#: (see ``tests/test_utils/test_compat.py``):
#:
#: - ``multiarray.scalar`` + ``numpy.dtype``: numpy scalars, e.g. the
#:   ``eta`` in the message hub's runtime info;
#: - ``multiarray._reconstruct`` + ``numpy.ndarray``: the history arrays
#:   of :class:`~mmengine.logging.HistoryBuffer`;
#: - the dtype classes of those scalars and arrays (float64 values, int64
#:   counts), whose ``__setstate__`` runs after ``numpy.dtype(...)``;
#: - :class:`~mmengine.logging.HistoryBuffer` itself (message hub scalars)
#:   and, as ``builtins.getattr``, :func:`history_buffer_method` for the
#:   statistics methods it pickles.
SAFE_GLOBALS: Tuple[SafeGlobal, ...] = (
    *_numpy_function_aliases('scalar'),
    *_numpy_function_aliases('_reconstruct'),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.float64)),
    type(np.dtype(np.int64)),
    HistoryBuffer,
    (history_buffer_method, 'builtins.getattr'),
)

_WRAPPED_MARK = '_mask_dino_safe_loader'
_REFUSED_GLOBAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module \S+ is blocked'),
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a global outside the safe loader's allow-list.

    Subclasses :class:`pickle.UnpicklingError`, the type torch raises, so
    existing handlers keep working. torch's original error is kept as
    ``__cause__``.

    Args:
        filename (str): Path of the refused checkpoint.
        refused_global (str, optional): Import path of the refused global,
            if torch's error or a static scan of the file names one.
        reason (str): torch's own description of the refusal.
    """

    def __init__(self, filename: str, refused_global: Optional[str],
                 reason: str) -> None:
        self.filename = filename
        self.refused_global = refused_global
        self.reason = reason
        if refused_global:
            what = (f'it needs the global `{refused_global}`, which is not '
                    'on the allow-list of the safe checkpoint loader.')
        else:
            what = ('the safe checkpoint loader cannot unpickle it (the '
                    'file is corrupt or holds objects outside the '
                    'allow-list).')
        super().__init__(
            f'Refused to load checkpoint "{filename}": {what} '
            'Checkpoints are loaded with torch\'s safe allow-list '
            'unpickler (weights_only=True), which accepts only tensors, '
            'plain containers and the numpy/mmengine types listed in '
            'projects.mask_dino.runtime.compat.SAFE_GLOBALS. If you trust '
            'this file and that global is harmless, allow-list it with '
            'torch.serialization.add_safe_globals before loading. '
            f'torch reported: {reason}')


def _refused_global(filename: str, message: str) -> Optional[str]:
    """Find the global that torch's safe unpickler refused.

    Args:
        filename (str): Path of the checkpoint.
        message (str): Text of torch's ``UnpicklingError``.

    Returns:
        str | None: Import path of the refused global, if one is known.
    """
    for pattern in _REFUSED_GLOBAL_PATTERNS:
        match = pattern.search(message)
        if match is not None:
            return match.group(1)
    # Refusals of REDUCE/BUILD name no global; scan the pickle instead.
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename)
    except Exception:  # not a zip checkpoint: nothing more to report
        return None
    return ', '.join(sorted(unsafe)) or None


def _torch_reason(message: str) -> str:
    """The part of torch's message that explains the refusal."""
    # torch prefixes the reason with advice to switch the safe loader off,
    # which this project deliberately does not follow; keep only the rest.
    for marker in ('WeightsUnpickler error:',
                   getattr(torch.serialization, 'UNSAFE_MESSAGE', None)):
        if marker and marker in message:
            message = message.rsplit(marker, 1)[-1]
            break
    message = message.split('Check the documentation of torch.load')[0]
    return ' '.join(message.split())


def _wrap_local_loader(loader: Callable) -> Callable:
    """Make mmengine's local loader raise :class:`UnsafeCheckpointError`.

    Args:
        loader (Callable): mmengine's ``load_from_local(filename,
            map_location)``.

    Returns:
        Callable: The wrapped loader; keeps ``__name__`` because mmengine
        derives the backend name it logs from it.
    """

    @functools.wraps(loader)
    def safe_load_from_local(filename, map_location=None):
        try:
            return loader(filename, map_location)
        except pickle.UnpicklingError as err:
            message = str(err)
            if not message.startswith('Weights only load failed'):
                raise  # a corrupt file, not a refusal
            raise UnsafeCheckpointError(
                str(filename), _refused_global(filename, message),
                _torch_reason(message)) from err

    setattr(safe_load_from_local, _WRAPPED_MARK, True)
    return safe_load_from_local


def register_safe_globals() -> None:
    """Allow-list :data:`SAFE_GLOBALS` for ``torch.load(weights_only=True)``.

    Idempotent: torch keeps the allow-list as a set.
    """
    torch.serialization.add_safe_globals(list(SAFE_GLOBALS))


def install_safe_local_loader() -> None:
    """Route mmengine's local checkpoint loading through the clear error.

    Idempotent: an already wrapped loader is left as it is.
    """
    loader = CheckpointLoader._schemes['']
    if getattr(loader, _WRAPPED_MARK, False):
        return
    CheckpointLoader.register_scheme(
        prefixes='', loader=_wrap_local_loader(loader), force=True)


def install() -> None:
    """Allow-list the safe globals and wrap mmengine's local loader."""
    register_safe_globals()
    install_safe_local_loader()


install()
