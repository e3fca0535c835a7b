# Everything runs in a local virtual environment (.venv) that the first target creates.
# torch is pinned to 2.13.0 (a local CPU wheel here); an unpinned install would pull gigabytes of CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: install test train benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

# The main job: fine-tune a GFNet sentiment classifier on the movie-review sentences, print eval accuracy, save it
# to outputs/gfnet-sentiment and classify a few sentences with pipeline("text-classification").
train: install
	$(BIN)/python examples/run_text_classification.py --output_dir outputs/gfnet-sentiment --learning_rate 5e-4 \
		--config_overrides hidden_dropout_prob=0.3,drop_path_rate=0.1,filter_activation=sigmoid,pooling=attention

benchmark: install
	$(BIN)/python scripts/benchmark.py --quick

clean:
	rm -rf $(VENV) .pytest_cache
