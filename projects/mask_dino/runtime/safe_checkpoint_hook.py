"""Checkpoints that survive a crash at any moment, and a clear error when a
checkpoint of another model (e.g. another class count) is resumed."""
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper

ATOMIC_BACKEND = 'atomic_local'

# Tensors whose first dimension is the number of classes (+1 with a
# no-object class).
CLASS_TENSORS = ('panoptic_head.cls_embed.weight',
                 'panoptic_head.cls_embed.bias',
                 'panoptic_head.dn_generator.label_embedding.weight')


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is resumed into."""


def _fsync_dir(path: str) -> None:
    """Persist a rename (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that ``path`` is always either its old
    content or all of ``data``: temporary file in the same directory,
    fsync, then ``os.replace`` (atomic on POSIX and Windows)."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """Local file backend whose writes are atomic (see :func:`atomic_write`).

    Select it with ``backend_args=dict(backend='atomic_local')``.
    """

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


def _strip_prefix(key: str) -> str:
    return re.sub(r'^module\.', '', key)


def shape_mismatches(model_state: dict,
                     ckpt_state: dict) -> List[Tuple[str, tuple, tuple]]:
    """``(key, checkpoint shape, model shape)`` of the tensors present in
    both with different shapes."""
    out = []
    for key, value in ckpt_state.items():
        key = _strip_prefix(key)
        own = model_state.get(key)
        if own is None or not hasattr(value, 'shape'):
            continue
        if tuple(value.shape) != tuple(own.shape):
            out.append((key, tuple(value.shape), tuple(own.shape)))
    return out


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """:class:`~mmengine.hooks.CheckpointHook` that never loses the last
    good checkpoint.

    mmengine 0.10's hook writes ``iter_N.pth`` in place, deletes the oldest
    checkpoint *before* writing the new one and rewrites ``last_checkpoint``
    in place. A SIGKILL (OOM killer, preemption) at the wrong moment leaves
    a truncated checkpoint, with ``max_keep_ckpts=1`` no valid checkpoint at
    all, or an empty ``last_checkpoint`` that makes ``--resume`` fail. For
    a local ``out_dir`` this hook instead

    1. writes every checkpoint (interval, last and best ones) to a
       temporary file and renames it into place (:class:`AtomicLocalBackend`),
       so ``iter_N.pth`` is complete or absent;
    2. then updates ``last_checkpoint`` atomically;
    3. only then deletes the checkpoints beyond ``max_keep_ckpts``.

    A kill at any point leaves the previous checkpoint valid and named by
    ``last_checkpoint``, which is what ``--resume`` loads.

    Before any checkpoint is loaded into the model (``after_load_checkpoint``)
    its tensor shapes are compared with the model: resuming (``--resume``)
    from a checkpoint of another shape, typically another number of
    classes, raises :class:`CheckpointMismatchError` explaining how to
    fine-tune instead; loading one with ``load_from`` (fine-tuning) logs
    which tensors keep their initialisation.

    Arguments are those of :class:`~mmengine.hooks.CheckpointHook`.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir or runner.work_dir
        if self.backend_args is None and self.file_client_args is None \
                and '://' not in str(out_dir):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)

    @property
    def _atomic(self) -> bool:
        return isinstance(self.file_backend, AtomicLocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not self._atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        expired = self._update_keep_list(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        self.file_backend.put_text(
            self.last_ckpt, osp.join(runner.work_dir, 'last_checkpoint'))
        for old in expired:
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)

    def _update_keep_list(self, runner, step: int) -> List[int]:
        """Record ``step`` among the kept checkpoints (before saving, so the
        checkpoint itself carries the list, as in the parent) and return the
        steps that fall out of it; they are deleted after the save."""
        if self.max_keep_ckpts <= 0:
            return []
        ids = self.keep_ckpt_ids
        expired = []
        if not ids or ids[-1] != step:
            if len(ids) == self.max_keep_ckpts:
                expired.append(ids[0])  # the bounded deque drops it
            ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(ids))
        return expired

    # ------------------------------------------------------------------
    # loading
    # ------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = checkpoint.get('state_dict', checkpoint)
        mismatches = shape_mismatches(model.state_dict(), state)
        if not mismatches:
            return
        listing = '; '.join(f'{k}: checkpoint {tuple(a)}, model {tuple(b)}'
                            for k, a, b in mismatches[:8])
        classes = self._class_counts(mismatches, checkpoint, runner)
        if getattr(runner, '_resume', False):
            raise CheckpointMismatchError(
                f'Cannot resume from this checkpoint: {len(mismatches)} '
                f'tensors do not fit the model ({listing}){classes}. To '
                'fine-tune a checkpoint trained with another number of '
                'classes, start a new run with load_from=CHECKPOINT (e.g. '
                '--cfg-options load_from=CHECKPOINT) and without --resume: '
                'the class-specific layers are then initialised from scratch '
                'and every other weight is loaded.')
        runner.logger.warning(
            f'Fine-tuning: {len(mismatches)} checkpoint tensors do not fit '
            f'the model and keep their initialisation ({listing})'
            f'{classes}; every other weight is loaded.')

    @staticmethod
    def _class_counts(mismatches: list, checkpoint: dict, runner) -> str:
        """Text naming both class counts when the classifier differs."""
        shapes: Dict[str, tuple] = {k: (a, b) for k, a, b in mismatches}
        key = CLASS_TENSORS[0]
        if key not in shapes:
            return ''
        ckpt_meta = (checkpoint.get('meta') or {}).get('dataset_meta') or {}
        ckpt_classes: Optional[int] = None
        if ckpt_meta.get('classes') is not None:
            ckpt_classes = len(ckpt_meta['classes'])
        (ckpt_out, _), (model_out, _) = shapes[key]
        found = f' (classifier outputs: checkpoint {ckpt_out}, model ' \
            f'{model_out}'
        if ckpt_classes is not None:
            found += f'; the checkpoint was trained on {ckpt_classes} classes'
        return found + ')'
