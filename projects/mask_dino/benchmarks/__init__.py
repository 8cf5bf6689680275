"""The learning benchmark (``tools/benchmarks/learn_synthetic.py``): the
tiny Mask DINO next to MMDetection's Mask2Former and DINO on the synthetic
dataset (:mod:`.learning`), and the adaptations of those peers that the
configs of ``configs/benchmarks/`` load (:mod:`.peers`).

Not imported by :mod:`projects.mask_dino`; import the modules explicitly.
"""
