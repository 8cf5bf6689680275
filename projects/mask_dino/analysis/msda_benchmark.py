"""Forward + backward time of CPU deformable attention, interleaved A/B.

Times ``MultiScaleDeformableAttention`` modules (mmcv's, whose CPU path is
``multi_scale_deformable_attn_pytorch``, against this project's
:class:`~projects.mask_dino.layers.msda.FastMultiScaleDeformableAttention`,
or any other class with mmcv's constructor and state dict) at the sizes of
the R50 configs: 4 levels at strides 8, 16, 32 and 64, 8 heads, 4 points,
256 channels, batch 2;

- ``encoder``: self-attention over all encoder tokens, 2-d reference
  points;
- ``decoder``: 300 matching + 100 denoising queries over all tokens, 4-d
  reference boxes.

Each repeat runs every implementation once in turn (A B A B ...) in one
process, so that the ratios are meaningful on a shared machine; the
medians are reported. Usage::

    python -m projects.mask_dino.analysis.msda_benchmark --sizes 512 1024
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple, Type

import torch
from mmcv.ops import MultiScaleDeformableAttention
from torch import Tensor, nn

#: Strides of the encoder / decoder levels of the R50 configs.
STRIDES = (8, 16, 32, 64)
#: 300 matching queries + at most 100 denoising queries.
DECODER_QUERIES = 400


def _level_shapes(image_size: int) -> Tensor:
    """(L, 2) level sizes of a square, 32-divisible image."""
    sizes = [-(-image_size // s) for s in STRIDES]
    return torch.tensor([[s, s] for s in sizes])


def make_case(stage: str, image_size: int, batch: int = 2,
              embed_dims: int = 256, seed: int = 0) -> Dict[str, Tensor]:
    """Keyword arguments of one deformable-attention call.

    Args:
        stage (str): 'encoder' (queries = keys, 2-d reference points) or
            'decoder' (``DECODER_QUERIES`` queries, 4-d reference boxes).
        image_size (int): Side of the square input image.

    Returns:
        dict: ``query``, ``value`` (both requiring grad), ``query_pos``,
        ``reference_points``, ``spatial_shapes``, ``level_start_index``.
    """
    if stage not in ('encoder', 'decoder'):
        raise ValueError(f"stage must be 'encoder' or 'decoder', got "
                         f'{stage!r}')
    g = torch.Generator().manual_seed(seed)
    shapes = _level_shapes(image_size)
    areas = shapes.prod(1)
    num_keys = int(areas.sum())
    num_queries = num_keys if stage == 'encoder' else DECODER_QUERIES
    ref_dims = 2 if stage == 'encoder' else 4
    refs = torch.rand(batch, num_queries, 1, ref_dims, generator=g)
    if ref_dims == 4:
        refs[..., 2:] = refs[..., 2:] * 0.5 + 0.05  # box sizes
    return dict(
        query=torch.randn(batch, num_queries, embed_dims, generator=g),
        value=torch.randn(batch, num_keys, embed_dims, generator=g),
        query_pos=torch.randn(batch, num_queries, embed_dims, generator=g),
        reference_points=refs.expand(-1, -1, len(shapes), -1).contiguous(),
        spatial_shapes=shapes,
        level_start_index=torch.cat([areas.new_zeros(1),
                                     areas.cumsum(0)[:-1]]))


def make_modules(classes: Dict[str, Type[nn.Module]], embed_dims: int = 256,
                 seed: int = 0) -> Dict[str, nn.Module]:
    """One module per class, all with the same (perturbed mmcv-initialised)
    parameters, as in the R50 configs."""
    torch.manual_seed(seed)
    cfg = dict(
        embed_dims=embed_dims, num_heads=8, num_levels=len(STRIDES),
        num_points=4, dropout=0.0, batch_first=True)
    source = MultiScaleDeformableAttention(**cfg)
    source.init_weights()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    modules = {}
    for name, cls in classes.items():
        modules[name] = cls(**cfg)
        modules[name].load_state_dict(source.state_dict())
    return modules


def _fwd_bwd(module: nn.Module, case: Dict[str, Tensor]) -> Tuple[float,
                                                                  float]:
    """Wall and process CPU seconds of one forward + backward (grads of
    query, value and parameters)."""
    module.zero_grad(set_to_none=True)
    query = case['query'].clone().requires_grad_()
    value = case['value'].clone().requires_grad_()
    kwargs = {k: v for k, v in case.items() if k not in ('query', 'value')}
    start, cpu = time.perf_counter(), time.process_time()
    out = module(query, value=value, **kwargs)
    out.sum().backward()
    return time.perf_counter() - start, time.process_time() - cpu


def time_interleaved(fns: Dict[str, Callable[[], Tuple[float, ...]]],
                     repeats: int) -> Dict[str, Tuple[float, ...]]:
    """Median of every timing of every function, run A B A B ... after one
    warm-up round."""
    for fn in fns.values():
        fn()
    times: Dict[str, List[Tuple[float, ...]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(fn())
    return {
        name: tuple(statistics.median(column) for column in zip(*t))
        for name, t in times.items()
    }


def run_msda_benchmark(classes: Dict[str, Type[nn.Module]],
                       sizes: Sequence[int] = (512, 1024),
                       threads: Sequence[int] = (1, 2),
                       stages: Sequence[str] = ('encoder', 'decoder'),
                       repeats: int = 5) -> List[dict]:
    """Forward + backward time of every class at every setting.

    Returns:
        list[dict]: one row per (threads, size, stage): the settings and,
        for every class, the median wall seconds (``seconds``), the median
        process CPU seconds (``cpu_seconds``, all threads; less sensitive
        to other processes on a shared machine) and the ratio of its wall
        time to the first class's (``ratio``).
    """
    modules = make_modules(classes)
    rows = []
    old_threads = torch.get_num_threads()
    try:
        for num_threads in threads:
            torch.set_num_threads(num_threads)
            for size in sizes:
                for stage in stages:
                    case = make_case(stage, size)
                    fns = {
                        name: (lambda m=m: _fwd_bwd(m, case))
                        for name, m in modules.items()
                    }
                    medians = time_interleaved(fns, repeats)
                    wall = {k: v[0] for k, v in medians.items()}
                    first = next(iter(wall.values()))
                    rows.append(
                        dict(threads=num_threads, size=size, stage=stage,
                             queries=case['query'].shape[1],
                             seconds=wall,
                             cpu_seconds={k: v[1]
                                          for k, v in medians.items()},
                             ratio={k: v / first
                                    for k, v in wall.items()}))
    finally:
        torch.set_num_threads(old_threads)
    return rows


def format_rows(rows: List[dict]) -> str:
    """A plain-text table of :func:`run_msda_benchmark`'s rows."""
    names = list(rows[0]['seconds'])
    head = ['threads', 'size', 'stage', 'queries'] + \
        [f'{n} s' for n in names] + [f'{n}/{names[0]}' for n in names[1:]] \
        + [f'{n} cpu s' for n in names]
    lines = ['  '.join(head)]
    for r in rows:
        cells = [str(r['threads']), str(r['size']), r['stage'],
                 str(r['queries'])]
        cells += [f"{r['seconds'][n]:.4f}" for n in names]
        cells += [f"{r['ratio'][n]:.3f}" for n in names[1:]]
        cells += [f"{r['cpu_seconds'][n]:.4f}" for n in names]
        lines.append('  '.join(cells))
    return '\n'.join(lines)


def main() -> None:
    from projects.mask_dino.layers.msda import \
        FastMultiScaleDeformableAttention
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[512, 1024])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--stages', nargs='+',
                        default=['encoder', 'decoder'])
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    rows = run_msda_benchmark(
        dict(mmcv=MultiScaleDeformableAttention,
             fast=FastMultiScaleDeformableAttention),
        args.sizes, args.threads, args.stages, args.repeats)
    print(format_rows(rows))


if __name__ == '__main__':
    main()
