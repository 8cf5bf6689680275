"""The pinned environment the project is built and tested against."""
import importlib
import importlib.metadata
import importlib.util

import pytest


def _release(version):
    """``'2.13.0+cpu'`` -> ``'2.13.0'`` (drop the local build label)."""
    return version.split('+')[0]


def test_project_and_openmmlab_packages_import():
    import mmdet
    import mmseg
    from mmcv.ops import MultiScaleDeformableAttention
    from mmdet.registry import MODELS

    import projects.mask_dino  # noqa: F401
    assert mmdet.__version__ and mmseg.__version__
    # mmcv was built with its compiled ops, which the deformable
    # attention of the pixel decoder needs.
    assert importlib.util.find_spec('mmcv._ext') is not None
    assert MultiScaleDeformableAttention.__module__.startswith('mmcv.ops')
    assert MODELS.get('DINO') is not None


@pytest.mark.parametrize(('package', 'version'), [
    ('mmcv', '2.1.0'),
    ('mmdet', '3.3.0'),
    ('mmengine', '0.10.7'),
    ('torch', '2.13.0'),
])
def test_pinned_versions(package, version):
    module = importlib.import_module(package)
    assert _release(module.__version__) == version
    assert _release(importlib.metadata.version(package)) == version


def test_panopticapi_imports():
    import numpy as np
    from panopticapi.utils import id2rgb, rgb2id

    color = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert rgb2id(color).tolist() == [[1 + 2 * 256 + 3 * 256**2]]
    assert id2rgb(np.array([[197121]])).tolist() == [[[1, 2, 3]]]


def test_setuptools_below_82():
    # setuptools 82 dropped pkg_resources, which mmcv 2.1.0's build needs.
    major = int(importlib.metadata.version('setuptools').split('.')[0])
    assert major < 82


def test_torchvision_is_not_installed():
    assert importlib.util.find_spec('torchvision') is None
    with pytest.raises(ImportError):
        importlib.import_module('torchvision')
