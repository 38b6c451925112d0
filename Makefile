# Two commands: `make demo` and `make test`. Both create .venv and install pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	# constraints.txt pins torch==2.13.0 (CPU build here) and every other package: nothing pulls CUDA torch.
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/meterread demo --workdir demo

test: $(STAMP)
	$(BIN)/ruff check meterread flows tests
	$(BIN)/python -m pytest -q

# Throughput on this machine with the bundled demo model (README "Performance"); results also in bench.json.
bench: $(STAMP)
	$(BIN)/meterread bench --n 128 --scale 10 --out bench.json

lint: $(STAMP)
	$(BIN)/ruff check meterread flows tests

clean:
	rm -rf demo .pytest_cache build *.egg-info
