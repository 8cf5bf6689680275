"""The top-level module of the ``mask-dino-mmdet`` distribution.

The model itself is :mod:`projects.mask_dino`: the name configs load through
``custom_imports`` and the one users import. ``projects`` is a PEP 420
namespace that other distributions may share, so this distribution also owns
one top-level name that nothing else installs. OpenMMLab's ``mim`` resolves a
package to ``<site-packages>/<first top-level module>`` and reads
``.mim/model-index.yml``, ``.mim/configs`` and ``.mim/tools`` there
(``mim search``, ``mim download``, ``mim train``/``test``/``run``). In the
repository ``.mim`` holds symbolic links to the real files; ``setup.py``
copies those files into wheels.
"""
import os.path as osp

#: Where ``mim`` finds the model index, the configs and the tools.
MIM_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '.mim')
