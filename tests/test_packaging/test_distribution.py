"""Packaging metadata: what ``pip install .`` installs, the extras, the
namespace layout and the top-level requirements file."""
import os.path as osp
import runpy
import sys

import pytest
import setuptools
from conftest import REPO


def read_requirements(rel):
    """Package lines of one requirements file."""
    with open(osp.join(REPO, rel)) as f:
        lines = [line.split('#', 1)[0].strip() for line in f]
    return [line for line in lines if line and not line.startswith('-')]


@pytest.fixture(scope='module')
def setup_kwargs():
    """The keyword arguments setup.py passes to ``setuptools.setup``."""
    captured = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        runpy.run_path(osp.join(REPO, 'setup.py'), run_name='__main__')
    finally:
        setuptools.setup = original
    return captured


def names(requirements):
    return {r.split('==')[0].lower() for r in requirements}


def test_install_requires_is_runtime_plus_torch(setup_kwargs):
    install_requires = setup_kwargs['install_requires']
    assert install_requires[:-1] == read_requirements(
        'requirements/runtime.txt')
    assert install_requires[-1].startswith('torch==')
    # mmcv's ops must be compiled against the installed torch, which pip's
    # build isolation cannot do: it comes through the build step / mim.
    assert 'mmcv' not in names(install_requires)


def test_extras(setup_kwargs):
    extras = setup_kwargs['extras_require']
    assert extras['tests'] == read_requirements('requirements/tests.txt')
    assert extras['deploy'] == read_requirements('requirements/deploy.txt')
    assert {'onnx', 'onnxruntime'} <= names(extras['deploy'])
    assert extras['mim'] == ['mmcv==2.1.0']
    assert 'mmcv' not in names(extras['all'])


def test_every_pin_is_in_the_constraints(setup_kwargs):
    constraints = set(read_requirements('requirements/constraints.txt'))
    constraints = {c.lower() for c in constraints}
    pins = list(setup_kwargs['install_requires'])
    pins += setup_kwargs['extras_require']['tests']
    for pin in pins:
        assert pin.lower() in constraints, pin


def test_projects_is_a_namespace_package():
    # no projects/__init__.py: other distributions can own projects.<name>
    assert not osp.exists(osp.join(REPO, 'projects', '__init__.py'))
    import projects
    import projects.mask_dino
    assert getattr(projects, '__file__', None) is None
    assert projects.mask_dino.__file__.endswith(
        osp.join('projects', 'mask_dino', '__init__.py'))


def test_setup_cfg_packages_and_python():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(osp.join(REPO, 'setup.cfg'))
    assert cfg['options']['packages'].strip() == 'find_namespace:'
    include = cfg['options.packages.find']['include'].split()
    assert include == [
        'mask_dino_mmdet', 'projects.mask_dino', 'projects.mask_dino.*'
    ]
    # mim takes the first line of top_level.txt, which setuptools sorts
    assert sorted(['mask_dino_mmdet', 'projects'])[0] == 'mask_dino_mmdet'
    assert cfg['options']['python_requires'].strip() == '>=3.11'
    assert sys.version_info >= (3, 11)


def test_top_level_requirements_include_the_requirement_files():
    with open(osp.join(REPO, 'requirements.txt')) as f:
        lines = [line.strip() for line in f if line.strip()]
    includes = [line.split()[1] for line in lines if line.startswith('-r')]
    assert includes == [
        'requirements/build.txt', 'requirements/runtime.txt',
        'requirements/tests.txt', 'requirements/deploy.txt'
    ]
    assert '-c requirements/constraints.txt' in lines
    for rel in includes:
        assert osp.isfile(osp.join(REPO, rel))


def test_license_and_citation():
    import yaml
    with open(osp.join(REPO, 'LICENSE')) as f:
        assert 'Apache License' in f.readline() + f.readline()
    with open(osp.join(REPO, 'CITATION.cff')) as f:
        cff = yaml.safe_load(f)
    paper = cff['preferred-citation']
    assert paper['year'] == 2023 and 'Mask DINO' in paper['title']
    assert len(paper['authors']) == 7
