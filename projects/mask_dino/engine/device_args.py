"""The device options shared by the speed tools
(``tools/analysis_tools/benchmark.py`` and ``benchmark_peers.py``)."""
import argparse

import torch


def apply_device_args(args: argparse.Namespace) -> None:
    """Check ``--device``, ``--amp`` and ``--threads`` against this machine
    and set the torch CPU threads.

    Raises:
        SystemExit: With a message naming the option, if CUDA is asked for
            but missing, ``--amp`` is given without ``--device cuda``, or
            ``--threads`` is below 1.
    """
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available')
    if args.amp and args.device != 'cuda':
        raise SystemExit('--amp needs --device cuda')
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit('--threads must be >= 1')
        torch.set_num_threads(args.threads)
