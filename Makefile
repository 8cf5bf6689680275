# One-command set-up and entry points. Every target builds the virtual
# environment first, so `make test` / `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
REQS := requirements/build.txt requirements/mmcv.txt requirements/runtime.txt \
        requirements/tests.txt requirements/deploy.txt requirements/constraints.txt setup.cfg setup.py
PYTEST_ARGS ?=

.PHONY: install test demo clean-venv

install: $(STAMP)

# The stamp is rebuilt whenever a requirements file changes; every step is a
# pip install of exact pins, so re-running it is cheap and idempotent.
$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c requirements/constraints.txt -r requirements/build.txt numpy
	@echo ">>> mmcv 2.1.0 with ops: compiled from source on the first run (~23 min on 2 cores), then taken from pip's wheel cache"
	MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-2} $(PIP) install -q --no-build-isolation \
		-c requirements/constraints.txt -r requirements/mmcv.txt
	$(PIP) install -q -c requirements/constraints.txt -r requirements/runtime.txt -r requirements/tests.txt -r requirements/deploy.txt
	# panopticapi is not on PyPI; the lite build declares numpy<2 but works with numpy 2.
	$(PIP) install -q --no-deps panopticapi-lite==0.2.0
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import projects.mask_dino, mask_dino_mmdet, mmdet, mmseg, panopticapi; from mmcv.ops import MultiScaleDeformableAttention"
	touch $(STAMP)

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: install
	$(PY) tools/demo/run_demo.py

clean-venv:
	rm -rf $(VENV)
