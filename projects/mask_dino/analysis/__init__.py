"""Speed, memory, parameter and FLOP measurements of detectors: one model
(:mod:`.benchmark`, ``tools/analysis_tools/benchmark.py``) and Mask DINO
next to its peers (:mod:`.peers`, ``tools/analysis_tools/benchmark_peers.py``).

Not imported by :mod:`projects.mask_dino`; import the modules explicitly.
"""
