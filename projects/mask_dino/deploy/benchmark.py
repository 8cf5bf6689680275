"""PyTorch vs ONNX Runtime latency of the network, in one process.

Both run on the same normalised input with the same thread count,
interleaved (PyTorch, ONNX Runtime, PyTorch, ...) so that load from other
processes hits both alike; the ratio of the medians is the figure to
read. Timed: the network from the padded batch to the raw outputs
(``extract_feat`` + ``MaskDINOHead.predict`` under ``inference_mode`` vs
``session.run``); post-processing is the same fusion head for both and is
not timed.
"""
import statistics
import time
from typing import Dict, Optional, Sequence

import torch

from .exporter import build_detector, export_onnx, load_config, padded_shape
from .runtime import create_session, run_session
from .verify import raw_max_abs_diff, torch_outputs


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark_onnx(config: str,
                   onnx_file: str,
                   checkpoint: Optional[str] = None,
                   shape: Sequence[int] = (800, 1333),
                   threads: int = 2,
                   repeat: int = 5,
                   warmup: int = 1,
                   export: bool = True) -> Dict[str, object]:
    """Time PyTorch and ONNX Runtime on one input, interleaved.

    Args:
        config (str): Config file.
        onnx_file (str): ONNX file; written first when ``export``.
        checkpoint (str, optional): Checkpoint (None: random weights, the
            same as the export's when exported here).
        shape (Sequence[int]): Input (H, W), rounded up to the padding
            divisor.
        threads (int): Threads of both runtimes.
        repeat (int): Timed runs of each.
        warmup (int): Untimed runs of each first.
        export (bool): Export ``onnx_file`` from the same weights first.

    Returns:
        dict: ``torch_s`` / ``ort_s`` (median, min, max), ``times`` (every
        run), ``ratio`` (median ORT / median PyTorch), ``pair_ratio``
        (median of ORT / PyTorch over the interleaved pairs),
        ``max_abs_diff`` per output after undoing query swaps
        (+ ``moved_queries``, see :mod:`.verify`).
    """
    torch.set_num_threads(threads)
    cfg = load_config(config)
    detector = build_detector(cfg, checkpoint)
    shape = padded_shape(cfg, shape)
    if export:
        export_onnx(detector, onnx_file, shape=shape)
    session = create_session(onnx_file, threads)
    inputs = torch.randn(
        1, 3, *shape, generator=torch.Generator().manual_seed(0))
    feed = inputs.numpy()

    def run_torch():
        return torch_outputs(detector, inputs)

    def run_ort():
        return run_session(session, feed)

    for _ in range(warmup):
        run_torch()
        run_ort()
    times = dict(torch=[], ort=[])
    for _ in range(repeat):
        times['torch'].append(_timed(run_torch))
        times['ort'].append(_timed(run_ort))
    diffs = raw_max_abs_diff(
        run_torch(), run_ort(), align=True)
    summary = {
        f'{name}_s': dict(
            median=statistics.median(ts), min=min(ts), max=max(ts))
        for name, ts in times.items()
    }
    # Each ORT run follows its PyTorch run, so the two see about the same
    # outside load: the median of the per-pair ratios is the steadier
    # figure when other jobs come and go.
    pair_ratios = [o / t for t, o in zip(times['torch'], times['ort'])]
    summary.update(
        shape=list(shape),
        threads=threads,
        repeat=repeat,
        times=times,
        ratio=summary['ort_s']['median'] / summary['torch_s']['median'],
        pair_ratio=statistics.median(pair_ratios),
        max_abs_diff=diffs)
    return summary
