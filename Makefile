# `make run` runs the full pipeline on the real data; `make test` runs the tests.
# Both create .venv with Python 3.10 and install the locked dependency set first.
VENV ?= .venv
OUTPUT_ROOT ?= outputs
DATA_DIR ?= /usr/share/datasets/fashion-mnist
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run quick test data venv clean

run: $(INSTALLED) data
	$(BIN)/fmnist-pipeline run --data-dir $(DATA_DIR) --output-root $(OUTPUT_ROOT)

quick: $(INSTALLED) data
	$(BIN)/fmnist-pipeline run --quick --data-dir $(DATA_DIR) --output-root $(OUTPUT_ROOT)

test: $(INSTALLED)
	$(BIN)/python -m pytest

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	@python310=$$(tools/find-python3.10) || exit 1; \
	  echo "Creating $(VENV) with $$python310"; \
	  $$python310 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt wheel setuptools
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

# The Debian package puts the four IDX gz files in /usr/share/datasets/fashion-mnist.
# Elsewhere, `fmnist-pipeline download --data-dir DIR` fetches and verifies them.
data:
	@if [ -f $(DATA_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$(DATA_DIR)" = /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null \
	     && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); \
	else \
	  $(BIN)/fmnist-pipeline download --data-dir $(DATA_DIR); \
	fi

clean:
	rm -rf $(VENV) $(OUTPUT_ROOT)
