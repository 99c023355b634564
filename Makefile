# `make run` runs the full pipeline on the real data; `make test` runs the tests.
# Both create .venv with Python 3.10 and install the locked dependency set first.
VENV ?= .venv
OUTPUT_ROOT ?= outputs
DATA_DIR ?= /usr/share/datasets/fashion-mnist
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The pipeline image: built here (`make image`, then `docker push $(IMAGE)`) or on Cloud Build
# (`make cloud-image`), tagged with the commit, the tag `fmnist-pipeline compile` checks.
REGION ?= us-central1
PROJECT ?= $(shell gcloud config get-value project 2>/dev/null)
REPOSITORY ?= fmnist
IMAGE_REPO ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/pipeline
TAG = $(shell git rev-parse --short HEAD)
IMAGE = $(IMAGE_REPO):$(TAG)
# What the Dockerfile copies (pipeline/image_tag.py IMAGE_SOURCES): must be committed.
IMAGE_SOURCES := Dockerfile constraints.txt pyproject.toml components contract dataset pipeline serving trainer tools/cuda_libraries.py

.PHONY: run quick test data venv image cloud-image clean-checkout clean

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

image: clean-checkout
	@case "$(IMAGE_REPO)" in *//*) \
	  echo "no GCP project: make image PROJECT=my-gcp-project (or IMAGE_REPO=...)" >&2; exit 1;; esac
	docker build -t $(IMAGE) .
	@echo "Built $(IMAGE); push it with: docker push $(IMAGE)"

cloud-image: clean-checkout
	gcloud builds submit --config cloudbuild.yaml \
	  --substitutions=_TAG=$(TAG),_REGION=$(REGION),_REPOSITORY=$(REPOSITORY)

# An image tagged with a commit must hold that commit's code, not uncommitted edits.
clean-checkout:
	@changed=$$(git status --porcelain -- $(IMAGE_SOURCES)); \
	  if [ -n "$$changed" ]; then \
	    echo "uncommitted changes would go into an image tagged $(TAG); commit them first:" >&2; \
	    echo "$$changed" >&2; exit 1; \
	  fi

clean:
	rm -rf $(VENV) $(OUTPUT_ROOT)
