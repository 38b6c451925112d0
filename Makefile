# Two commands: `make demo` and `make test`. Both create .venv and install pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-slow test-all bench lint clean demo-model eval-sets evaluate-bundled real-stage

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	# constraints.txt pins torch==2.13.0 (CPU build here) and every other package: nothing pulls CUDA torch.
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	# PP-OCRv4 peer baseline; --no-deps: its opencv-python would shadow opencv-python-headless (pyproject "baseline").
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt rapidocr-onnxruntime
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m flows.demo --workdir demo

# Tests by tier: `make test` is the fast tier (everything but @pytest.mark.slow); `make test-slow` the slow tier
# (training from scratch, two Prefect workers, the bundled model's held-out bars); `make test-all` both.
# Two pytest workers (pytest-xdist): the tests mostly wait on the Prefect test server and the moto S3 server, so
# two processes on two cores halve the wall time (measured: fast tier 256 s -> 168 s, slow tier 388 s -> 294 s).
# Each worker has its own Prefect harness and moto server; `loadfile` keeps a file's tests in order on one worker.
test: $(STAMP)
	$(BIN)/ruff check meterread flows tests
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n 2

test-all: test test-slow

# Throughput on this machine with the bundled demo model (README "Performance"); results also in bench.json.
bench: $(STAMP)
	$(BIN)/meterread bench --n 128 --scale 10 --out bench.json

# The bundled demo model, from scratch (~3.9 h of training plus ~40 min of synthesis on 2 CPU cores): stage 1
# trains a tiny PaliGemma from config, stage 2 continues it on a fresh, larger set, stage 3 on mostly rolling
# counter wheels, stages 4 to 6 on fresh photos at lower learning rates; then the held-out evaluation and the
# bundle (meterread/assets/demo-model/ with provenance.json).
DATA ?= data
RUNS ?= runs
SIZES := 640x480,1024x768
STAGE1_DATA = $(DATA)/demo --n 10000 --valid 400 --seed 101 --sizes $(SIZES)
STAGE2_DATA = $(DATA)/stage2 --n 24000 --valid 400 --seed 202 --sizes $(SIZES)
STAGE3_DATA = $(DATA)/stage3 --n 8000 --valid 400 --seed 303 --sizes $(SIZES) --roll-share 0.8
STAGE4_DATA = $(DATA)/stage4 --n 20000 --valid 400 --seed 404 --sizes $(SIZES) --roll-share 0.6
STAGE5_DATA = $(DATA)/stage5 --n 12000 --valid 400 --seed 505 --sizes $(SIZES) --roll-share 0.6
STAGE6_DATA = $(DATA)/stage6 --n 16000 --valid 400 --seed 606 --sizes $(SIZES) --roll-share 0.7
HELDOUT_DATA = $(DATA)/heldout --n 0 --test 1200 --seed 909
STAGE6_VALID_DATA = $(DATA)/stage6 --n 0 --valid 400 --seed 606 --sizes $(SIZES) --roll-share 0.7
# Real pixels. The digit crops are only needed for these sets (not by `make demo` or the product); the held-out
# meter models (meterread.data.crops.HELDOUT_MODELS) never reach train/ or valid/. Same seeds as the training sets,
# so the eval sets below are exactly the test/heldout splits of the training commands.
DIGITS ?= ../shared/data/meter-digits
STRIPS_DATA = $(DIGITS) $(DATA)/strips --train 24000 --valid 300 --test 600 --heldout 900 --seed 15
STRIPS_EVAL_DATA = $(DIGITS) $(DATA)/strips-eval --train 0 --valid 0 --test 600 --heldout 900 --seed 15
REALPHOTOS_DATA = $(DATA)/realphotos --n 8000 --valid 300 --test 300 --seed 1515 --sizes $(SIZES) --digits $(DIGITS)
REALPHOTOS_EVAL_DATA = $(DATA)/realphotos-eval --n 0 --valid 0 --test 300 --seed 1515 --sizes $(SIZES) \
	--digits $(DIGITS)
REALPHOTOS_HELDOUT_DATA = $(DATA)/realphotos-heldout --n 0 --test 600 --seed 1516 --digits $(DIGITS) \
	--digits-part heldout
STAGE7_SYNTH_DATA = $(DATA)/stage7-synth --n 8000 --valid 300 --seed 707 --sizes $(SIZES) --roll-share 0.6
LATER_STAGES := 2 3 4 5 6
# name:dataset:split of every evaluation the bundle records (model and PP-OCRv4 on the same photos)
EVAL_SETS := synthetic:$(DATA)/heldout:test real-strips-heldout-models:$(DATA)/strips-eval:heldout \
	real-strips-seen-models:$(DATA)/strips-eval:test real-photos-heldout-models:$(DATA)/realphotos-heldout:test \
	real-photos-seen-models:$(DATA)/realphotos-eval:test
BUNDLE_EVALS = --eval synthetic "meterread synth $(HELDOUT_DATA)" \
	--eval real-strips-heldout-models "meterread strips $(STRIPS_EVAL_DATA)" \
	--eval real-strips-seen-models "meterread strips $(STRIPS_EVAL_DATA)" \
	--eval real-photos-heldout-models "meterread synth $(REALPHOTOS_HELDOUT_DATA)" \
	--eval real-photos-seen-models "meterread synth $(REALPHOTOS_EVAL_DATA)"
# Stage $(1) continues the best checkpoint of run $(2) on its own fresh photos.
define continue_stage
$(BIN)/meterread synth $(STAGE$(1)_DATA)
$(BIN)/meterread train configs/demo-tiny-paligemma-stage$(1).yaml base=$(RUNS)/$(2)/best \
	dataset=$(DATA)/stage$(1) output=$(RUNS)/demo-stage$(1)
endef
# One evaluation: $(1) = name dataset split, $(2) = model, $(3) = folder; the model and PP-OCRv4 on the same photos.
define evaluate_set
$(BIN)/meterread eval $(word 2,$(1)) --split $(word 3,$(1)) --model $(2) --baseline ppocr --out $(3)/eval-$(word 1,$(1))

endef
demo-model: $(STAMP)
	$(BIN)/meterread synth $(STAGE1_DATA)
	$(BIN)/meterread train configs/demo-tiny-paligemma.yaml dataset=$(DATA)/demo output=$(RUNS)/demo
	$(call continue_stage,2,demo)
	$(call continue_stage,3,demo-stage2)
	$(call continue_stage,4,demo-stage3)
	$(call continue_stage,5,demo-stage4)
	$(call continue_stage,6,demo-stage5)
	$(MAKE) eval-sets
	$(foreach set,$(EVAL_SETS),$(call evaluate_set,$(subst :, ,$(set)),$(RUNS)/demo-stage6/best,$(RUNS)/demo-stage6))
	$(BIN)/python scripts/bundle_demo_model.py $(RUNS)/demo-stage6 $(BUNDLE_EVALS) \
		--stage configs/demo-tiny-paligemma.yaml $(RUNS)/demo auto "meterread synth $(STAGE1_DATA)" \
		$(foreach n,$(LATER_STAGES),--stage configs/demo-tiny-paligemma-stage$(n).yaml $(RUNS)/demo-stage$(n) auto \
			"meterread synth $(STAGE$(n)_DATA)")

# The evaluation sets: synthetic held-out photos, and real digit crops (strips and photos) of the meter models held
# out of training and of the seen models (crops no training set used). Needs $(DIGITS).
eval-sets: $(STAMP)
	$(BIN)/meterread synth $(HELDOUT_DATA)
	$(BIN)/meterread strips $(STRIPS_EVAL_DATA)
	$(BIN)/meterread synth $(REALPHOTOS_HELDOUT_DATA)
	$(BIN)/meterread synth $(REALPHOTOS_EVAL_DATA)

# Re-measure the bundled model on every set beside PP-OCRv4 and record it (weights unchanged).
evaluate-bundled: eval-sets
	$(BIN)/meterread synth $(STAGE6_VALID_DATA)
	$(BIN)/meterread eval $(DATA)/stage6 --split valid --out $(RUNS)/bundled/eval-stage6-valid
	$(foreach set,$(EVAL_SETS),$(call evaluate_set,$(subst :, ,$(set)),meterread/assets/demo-model,$(RUNS)/bundled))
	$(BIN)/python scripts/bundle_demo_model.py $(RUNS)/bundled $(BUNDLE_EVALS) \
		--annotate-only $(RUNS)/bundled/eval-stage6-valid/metrics.json "stage 6's validation set (seed 606)"

# Experiment, not bundled (docs/training.md): stage 6 continued on real-crop strips, real-crop photos and fresh
# synthetic photos. After 9,000 steps it read 1.2% of held-out-model strips and 92.3% of synthetic photos.
real-stage: eval-sets
	$(BIN)/meterread strips $(STRIPS_DATA)
	$(BIN)/meterread synth $(REALPHOTOS_DATA)
	$(BIN)/meterread synth $(STAGE7_SYNTH_DATA)
	$(BIN)/meterread mix $(DATA)/stage7 $(DATA)/strips $(DATA)/realphotos $(DATA)/stage7-synth
	$(BIN)/meterread train configs/demo-tiny-paligemma-stage7.yaml base=$(RUNS)/demo-stage6/best \
		dataset=$(DATA)/stage7 output=$(RUNS)/demo-stage7
	$(foreach set,$(EVAL_SETS),$(call evaluate_set,$(subst :, ,$(set)),$(RUNS)/demo-stage7/best,$(RUNS)/demo-stage7))

lint: $(STAMP)
	$(BIN)/ruff check meterread flows tests

clean:
	rm -rf demo .pytest_cache build *.egg-info
