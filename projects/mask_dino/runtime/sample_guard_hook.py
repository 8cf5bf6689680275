"""Training-log reports of bad samples: how many were skipped, and which
sample a dying data-loader worker was loading."""
import os
import re
import signal
import threading
from typing import Callable, Iterable, Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop

from .robust_dataset import SkipBadSamplesDataset, find_skip_wrapper

_PIDS = re.compile(r'DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\)')


class DataLoaderWorkerError(RuntimeError):
    """A data-loader worker died; the message names the sample it was
    loading."""


def _exit_status(pid: int) -> Optional[str]:
    """How child ``pid`` ended (without reaping it), or None if it still
    runs, exited normally or is not (any longer) our child."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    if info is None:
        return None
    if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        try:
            name = signal.Signals(info.si_status).name
        except ValueError:
            name = str(info.si_status)
        return f'killed by signal {name}'
    if info.si_status != 0:
        return f'exit code {info.si_status}'
    return None


def dead_worker_report(dataset: SkipBadSamplesDataset,
                       pids: Optional[Iterable[int]] = None) -> Optional[str]:
    """Describe the sample that a dead worker was loading.

    Args:
        dataset: The wrapper whose shared table records the sample each
            worker is loading.
        pids: Pids known to be dead (from PyTorch's error); if None, the
            workers with a sample in flight are checked with ``waitid``.

    Returns:
        str or None: e.g. ``'DataLoader worker (pid 12) was killed by signal
        SIGKILL while loading sample 3 (img_path=...)'``.
    """
    known = None if pids is None else set(pids)
    for pid, idx in dataset.samples_in_flight().items():
        if pid == os.getpid() or (known is not None and pid not in known):
            continue
        status = _exit_status(pid)
        if status is None and known is None:
            continue
        how = f'was {status}' if status and status.startswith('killed') \
            else f'exited ({status})' if status else 'died'
        return (f'DataLoader worker (pid {pid}) {how} while loading '
                f'{dataset.describe_sample(idx)}')
    return None


class _ReportingIterator:
    """Iterator proxy that turns PyTorch's "DataLoader worker (pid X)
    exited unexpectedly" into a :class:`DataLoaderWorkerError` naming the
    sample."""

    def __init__(self, iterator, dataset: SkipBadSamplesDataset,
                 on_report: Callable[[], None]) -> None:
        self._iterator = iterator
        self._dataset = dataset
        self._on_report = on_report

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._iterator)
        except DataLoaderWorkerError:
            raise
        except RuntimeError as err:
            match = _PIDS.search(str(err))
            if match is None:
                raise
            pids = [int(p) for p in re.findall(r'\d+', match.group(1))]
            report = dead_worker_report(self._dataset, pids)
            if report is None:
                raise
            self._on_report()
            raise DataLoaderWorkerError(f'{report} ({err})') from err

    def __getattr__(self, name):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class SampleGuardHook(Hook):
    """Report what :class:`SkipBadSamplesDataset` does, in the main
    process.

    - After every iteration in which samples were skipped (by any worker),
      one warning with the running total; a summary after training.
    - If a data-loader worker dies (e.g. killed by the OOM killer, or a
      crash in an image decoder), the error names the sample it was
      loading: ``DataLoaderWorkerError: DataLoader worker (pid 123) was
      killed by signal SIGKILL while loading sample 42 (img_path=...)``.
      Both PyTorch's detection paths are covered: the SIGCHLD handler (a
      handler chained in front of PyTorch's) and the data-queue time-out
      (the iterator of ``IterBasedTrainLoop`` is wrapped).

    Does nothing when the training dataset is not wrapped in
    :class:`SkipBadSamplesDataset`.
    """

    # first in ``before_run``: workers start when the train loop is built,
    # just before, and one may already be dying
    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._dataset: Optional[SkipBadSamplesDataset] = None
        self._reported = 0
        self._previous_handler = None
        self._installed = False

    def before_run(self, runner) -> None:
        loop = getattr(runner, '_train_loop', None)
        if not isinstance(loop, BaseLoop):  # not training
            return
        dataloader = getattr(loop, 'dataloader', None)
        self._dataset = find_skip_wrapper(getattr(dataloader, 'dataset', None))
        if self._dataset is None:
            return
        self._reported = self._dataset.num_skipped
        if hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _ReportingIterator(
                loop.dataloader_iterator, self._dataset,
                self._restore_sigchld_handler)
        if getattr(dataloader, 'num_workers', 0) > 0:
            self._install_sigchld_handler()
            report = dead_worker_report(self._dataset)
            if report is not None:  # died before the handler was there
                self._restore_sigchld_handler()
                raise DataLoaderWorkerError(report)

    def _install_sigchld_handler(self) -> None:
        if not hasattr(signal, 'SIGCHLD') or \
                threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGCHLD)
        dataset = self._dataset

        def handler(signum, frame):
            report = dead_worker_report(dataset)
            if report is not None:
                # one report only: the run ends with this error
                self._restore_sigchld_handler()
                raise DataLoaderWorkerError(report)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGCHLD, handler)
        self._previous_handler = previous
        self._installed = True

    def _restore_sigchld_handler(self) -> None:
        if self._installed:
            signal.signal(signal.SIGCHLD, self._previous_handler)
            self._installed = False

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if self._dataset is None:
            return
        total = self._dataset.num_skipped
        if total > self._reported:
            runner.logger.warning(
                f'{total} unreadable or invalid training samples skipped so '
                f'far ({total - self._reported} in iteration '
                f'{runner.iter + 1}); each is named in a warning above.')
            self._reported = total

    def after_train(self, runner) -> None:
        self._restore_sigchld_handler()
        if self._dataset is not None and self._dataset.num_skipped:
            runner.logger.warning(
                f'Training skipped {self._dataset.num_skipped} unreadable or '
                'invalid samples in total.')
