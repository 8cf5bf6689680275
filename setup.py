"""Packaging of Mask DINO for MMDetection 3.x.

Static metadata lives in setup.cfg; the dependency lists are read here from
``requirements/*.txt`` (the files ``make install`` installs), split the way
MMDetection splits them:

* ``install_requires``: the runtime pins (``requirements/runtime.txt``) and
  torch. ``pip install .`` installs them.
* mmcv is not among them: its compiled ops have to be built against the
  installed torch, which pip's build isolation cannot do. Build it first
  (``make install`` does, see the README) or let OpenMMLab's ``mim`` fetch
  a prebuilt wheel through the ``mim`` extra (``mim install .[mim]``).
* extras: ``tests``, ``deploy`` (ONNX export), ``build`` (build tools and
  torch, needed before mmcv is compiled), ``mim`` and ``all``.

Wheels also carry the model index, the configs and the tools under
``mask_dino_mmdet/.mim`` (see that package), where ``mim`` looks for them.
"""
import os
import os.path as osp
import re
import shutil
from typing import Dict, List

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))


def parse_requirements(fname: str) -> List[str]:
    """Requirement specifiers of one requirements file.

    Comments, blank lines and pip options (``-r``, ``-c``, ``--...``) are
    skipped: only the package lines become metadata.

    Args:
        fname: Path of the file relative to the repository root.

    Returns:
        The requirement lines in file order, e.g. ``['mmdet==3.3.0']``.
    """
    path = osp.join(HERE, fname)
    if not osp.isfile(path):
        return []
    requirements = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                requirements.append(line)
    return requirements


def requirement_name(requirement: str) -> str:
    """Normalised project name of a requirement (``'Torch==2'`` -> 'torch')."""
    name = re.split(r'[<>=!~;\[ ]', requirement, maxsplit=1)[0]
    return re.sub(r'[-_.]+', '-', name).lower()


def runtime_requirements() -> List[str]:
    """The runtime pins plus torch.

    torch is pinned in ``requirements/build.txt`` because mmcv is compiled
    against it before the rest is installed; the project imports it at run
    time, so it belongs to ``install_requires`` too. ``==2.13.0`` accepts
    the CPU and the CUDA builds (local labels such as ``+cu128``).
    """
    torch = [
        r for r in parse_requirements('requirements/build.txt')
        if requirement_name(r) == 'torch'
    ]
    return parse_requirements('requirements/runtime.txt') + torch


def extras() -> Dict[str, List[str]]:
    """Optional dependency groups, one per requirements file."""
    groups = {
        'tests': parse_requirements('requirements/tests.txt'),
        'deploy': parse_requirements('requirements/deploy.txt'),
        'build': parse_requirements('requirements/build.txt'),
    }
    # 'all' is what pip can install by itself, so it leaves mmcv out.
    groups['all'] = sorted({r for group in groups.values() for r in group})
    # mim resolves this extra to a prebuilt mmcv wheel for the installed
    # torch/CUDA pair (`mim install .[mim]`), as MMDetection's `mim` extra.
    groups['mim'] = parse_requirements('requirements/mmcv.txt')
    return groups


class BuildPyWithMim(build_py):
    """``build_py`` that copies the files linked from ``mask_dino_mmdet/.mim``.

    The repository keeps symbolic links there (so ``mim`` works from a
    checkout); an installed copy needs the files themselves.
    """

    #: Entries of ``.mim``, relative to the repository root.
    MIM_ITEMS = ('model-index.yml', 'configs', 'tools')

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # the editable finder maps the package to the checkout
        target = osp.join(self.build_lib, 'mask_dino_mmdet', '.mim')
        os.makedirs(target, exist_ok=True)
        for item in self.MIM_ITEMS:
            src, dst = osp.join(HERE, item), osp.join(target, item)
            if osp.isdir(dst) and not osp.islink(dst):
                shutil.rmtree(dst)
            elif osp.lexists(dst):
                os.remove(dst)
            if osp.isdir(src):
                shutil.copytree(
                    src,
                    dst,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copy2(src, dst)


setup(
    install_requires=runtime_requirements(),
    extras_require=extras(),
    cmdclass={'build_py': BuildPyWithMim})
