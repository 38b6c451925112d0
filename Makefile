# Two commands: `make demo` and `make test`. Both create .venv and install pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-slow test-all bench lint clean demo-model stage-data eval-sets evaluate-bundled \
	clean-demo-model FORCE

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

# The bundled demo model, from scratch (~275 min of training plus ~40 min of data and evaluation on 2 CPU cores;
# docs/training.md "The ppocr family"): PP-OCRv4's recogniser imported from rapidocr's wheel (digits only), stage 1
# trains it on real-crop strips, stage 2 on photos through the display crop (real-crop photos and our own renderings)
# beside fresh real-crop strips, stage 3 goes on with photometric augmentation (inverted polarity above all) over
# stage 1's strips and stage 2's photos; stages 2 and 3 averaged (`meterread average`); stage 4 goes on from that
# average over fresh strips, half of them recoloured (random ink/paper palettes), beside stage 2's photos; the
# average of stages 2 and 3 averaged with stage 4; that average set to read the taller strip (`meterread restrip`,
# same weights) and stage 5 goes on from it at that size over fresh strips (half recoloured) beside stage 2's
# photos; stage 5 averaged with the restripped average it started from is the bundled weights; then every
# evaluation beside PP-OCRv4 and the bundle (meterread/assets/demo-model/ with provenance.json). Needs the digit
# crops ($(DIGITS)); the product and `make demo` do not.
DATA ?= data
RUNS ?= runs
SIZES := 640x480,1024x768
DIGITS ?= ../shared/data/meter-digits
# The strip the recogniser reads: stages 1-4 at STRIP (the import's), stage 5 at TALL_STRIP. 64 x 424 gained on
# every rotation of unseen makes at 3.3x the CPU time a step (docs/training.md "The taller strip at full length");
# stage 5 moves the 48 px average there in one stage ("The taller strip from the bundle"). Both are recorded in
# provenance.json with the commands that use them.
STRIP ?= --strip-width 320
TALL_STRIP ?= --strip-width 424 --strip-height 64
# The training recipes (a folder of configs/*.yaml files)
CONFIGS ?= configs
# The meterread command of each data step, by the folder it writes under $(DATA) (demo-model, eval-sets and
# evaluate-bundled run them; provenance.json records them).
DATA_ppocr-strips = strips $(DIGITS) $(DATA)/ppocr-strips --train 24000 --valid 0 --test 0 --seed 16
DATA_strips-valid = strips $(DIGITS) $(DATA)/strips-valid --train 0 --valid 300 --test 0 --seed 18
DATA_ppocr-stage1 = mix $(DATA)/ppocr-stage1 $(DATA)/ppocr-strips $(DATA)/strips-valid
DATA_ppocr-strips2 = strips $(DIGITS) $(DATA)/ppocr-strips2 --train 12000 --valid 0 --test 0 --seed 17
DATA_realphotos = synth $(DATA)/realphotos --n 8000 --valid 300 --test 300 --seed 1515 --sizes $(SIZES) \
	--digits $(DIGITS)
DATA_photos-synth = synth $(DATA)/photos-synth --n 8000 --valid 300 --seed 707 --sizes $(SIZES) --roll-share 0.6
DATA_ppocr-photos = mix $(DATA)/ppocr-photos $(DATA)/ppocr-strips2 $(DATA)/strips-valid $(DATA)/realphotos \
	$(DATA)/photos-synth
DATA_ppocr-stage3 = mix $(DATA)/ppocr-stage3 $(DATA)/ppocr-strips $(DATA)/strips-valid $(DATA)/realphotos \
	$(DATA)/photos-synth
DATA_strips-recolour = strips $(DIGITS) $(DATA)/strips-recolour --train 24000 --valid 0 --test 0 --seed 20 \
	--recolour 0.5
DATA_ppocr-stage4 = mix $(DATA)/ppocr-stage4 $(DATA)/strips-recolour $(DATA)/strips-valid $(DATA)/realphotos \
	$(DATA)/photos-synth
DATA_strips-recolour5 = strips $(DIGITS) $(DATA)/strips-recolour5 --train 24000 --valid 0 --test 0 --seed 26 \
	--recolour 0.5
DATA_ppocr-taller = mix $(DATA)/ppocr-taller $(DATA)/strips-recolour5 $(DATA)/strips-valid $(DATA)/realphotos \
	$(DATA)/photos-synth
# Stage 2's validation photos alone (every split has its own seed: byte for byte the valid/ of the two commands
# above), and the validation set of stages 2-5 they make with the validation strips (evaluate-bundled)
DATA_realphotos-valid = synth $(DATA)/realphotos-valid --n 0 --valid 300 --test 0 --seed 1515 --sizes $(SIZES) \
	--digits $(DIGITS)
DATA_photos-synth-valid = synth $(DATA)/photos-synth-valid --n 0 --valid 300 --seed 707 --sizes $(SIZES) \
	--roll-share 0.6
DATA_stages-valid = mix --validation-only $(DATA)/stages-valid $(DATA)/strips-valid $(DATA)/realphotos-valid \
	$(DATA)/photos-synth-valid
# Evaluation sets: synthetic held-out photos, and real digit crops (strips and photos) of the meter models held out
# of training (meterread.data.crops.HELDOUT_MODELS never reach train/ or valid/) and of the seen models (crops no
# training set used). Same seeds as the training sets, so they are exactly those commands' test/heldout splits.
DATA_heldout = synth $(DATA)/heldout --n 0 --test 1200 --seed 909
DATA_strips-eval = strips $(DIGITS) $(DATA)/strips-eval --train 0 --valid 0 --test 600 --heldout 900 --seed 15
DATA_realphotos-eval = synth $(DATA)/realphotos-eval --n 0 --valid 0 --test 300 --seed 1515 --sizes $(SIZES) \
	--digits $(DIGITS)
DATA_realphotos-heldout = synth $(DATA)/realphotos-heldout --n 0 --test 600 --seed 1516 --digits $(DIGITS) \
	--digits-part heldout
# The meterread command of each step under $(RUNS), by the folder it writes: the import, the five training stages
# (each from the one before, or from an average), the averages and the restrip. Stage 2's and stage 3's best,
# averaged (a model soup; docs/training.md "Stage 3"), is stage 4's base; that average and stage 4's best, averaged
# (docs/training.md "Stage 4"), set to read the taller strip, is stage 5's base; that base and stage 5's best,
# averaged, are the bundled weights.
SOUP := $(RUNS)/ppocr-soup/best
SOUP4 := $(RUNS)/ppocr-soup4/best
TALL := $(RUNS)/ppocr-soup4-64
BUNDLED := $(RUNS)/ppocr-soup5/best
RUN_ppocr-base = import-ppocr $(RUNS)/ppocr-base --image-size 128 $(STRIP)
RUN_ppocr-real = train $(CONFIGS)/ppocr-real-strips.yaml base=$(RUNS)/ppocr-base dataset=$(DATA)/ppocr-stage1 \
	output=$(RUNS)/ppocr-real
RUN_ppocr-photos = train $(CONFIGS)/ppocr-photos.yaml base=$(RUNS)/ppocr-real/best dataset=$(DATA)/ppocr-photos \
	output=$(RUNS)/ppocr-photos
RUN_ppocr-augment = train $(CONFIGS)/ppocr-augment.yaml base=$(RUNS)/ppocr-photos/best dataset=$(DATA)/ppocr-stage3 \
	output=$(RUNS)/ppocr-augment
RUN_ppocr-soup = average $(SOUP) $(RUNS)/ppocr-photos/best $(RUNS)/ppocr-augment/best
RUN_ppocr-recolour = train $(CONFIGS)/ppocr-recolour.yaml base=$(SOUP) dataset=$(DATA)/ppocr-stage4 \
	output=$(RUNS)/ppocr-recolour
RUN_ppocr-soup4 = average $(SOUP4) $(SOUP) $(RUNS)/ppocr-recolour/best
RUN_ppocr-soup4-64 = restrip $(SOUP4) $(TALL) $(TALL_STRIP)
RUN_ppocr-taller = train $(CONFIGS)/ppocr-taller.yaml base=$(TALL) dataset=$(DATA)/ppocr-taller \
	output=$(RUNS)/ppocr-taller
RUN_ppocr-soup5 = average $(BUNDLED) $(TALL) $(RUNS)/ppocr-taller/best
# name:dataset:split of every evaluation the bundle records (model and PP-OCRv4 on the same photos)
EVAL_SETS := synthetic:$(DATA)/heldout:test real-strips-heldout-models:$(DATA)/strips-eval:heldout \
	real-strips-seen-models:$(DATA)/strips-eval:test real-photos-heldout-models:$(DATA)/realphotos-heldout:test \
	real-photos-seen-models:$(DATA)/realphotos-eval:test
# The real sets again, each photo read within its label's register (`--known-register`: a meter the meters table
# describes), recorded as NAME-known-register
KNOWN_REGISTER_SETS := $(filter real-%,$(EVAL_SETS))
# The command that makes each evaluation set, by name (provenance records it beside the set's figures)
MAKES_synthetic = meterread $(DATA_heldout)
MAKES_real-strips-heldout-models = meterread $(DATA_strips-eval)
MAKES_real-strips-seen-models = meterread $(DATA_strips-eval)
MAKES_real-photos-heldout-models = meterread $(DATA_realphotos-heldout)
MAKES_real-photos-seen-models = meterread $(DATA_realphotos-eval)
set_name = $(word 1,$(subst :, ,$(1)))
set_command = $(or $(MAKES_$(call set_name,$(1))),$(error no MAKES_$(call set_name,$(1)) for evaluation set $(1)))
BUNDLE_EVALS = $(foreach set,$(EVAL_SETS),--eval $(call set_name,$(set)) "$(call set_command,$(set))") \
	$(foreach set,$(KNOWN_REGISTER_SETS),--eval $(call set_name,$(set))-known-register "$(call set_command,$(set))")
# One evaluation: $(1) = name dataset split, $(2) = model, $(3) = folder; the model and PP-OCRv4 on the same photos.
# $(4): `known-register` to read each photo within its label's register (recorded as NAME-known-register).
define evaluate_set
$(BIN)/meterread eval $(word 2,$(1)) --split $(word 3,$(1)) --model $(2) --baseline ppocr $(if $(4),--$(4)) \
		--out $(3)/eval-$(word 1,$(1))$(if $(4),-$(4))

endef
# Every evaluation the bundle records (EVAL_SETS, then KNOWN_REGISTER_SETS read within their registers):
# $(1) = model, $(2) = folder
evaluate_all = $(foreach set,$(EVAL_SETS),$(call evaluate_set,$(subst :, ,$(set)),$(1),$(2))) \
	$(foreach set,$(KNOWN_REGISTER_SETS),$(call evaluate_set,$(subst :, ,$(set)),$(1),$(2),known-register))

# Every step of demo-model, stage-data, eval-sets and evaluate-bundled (a DATA_ or RUN_ command above) leaves a
# stamp once it has succeeded ($(DATA)/.made/NAME, $(RUNS)/.made/NAME), so an interrupted `make demo-model` goes on
# from the first step without one: a training stage from its own latest/ checkpoint (`--resume`, at most one
# eval_every_steps lost). A step runs again when its command text (NAME.command: the seeds, DIGITS, STRIP ...), a
# step it reads or its recipe file changed; a training stage then starts over (NAME.started empties its folder).
# Code changes are not tracked: after one, `make clean-demo-model` forgets every stamp.
MADE_DATA = $(DATA)/.made
MADE_RUNS = $(RUNS)/.made
stamp = @mkdir -p $(@D) && touch $@
# $(1) into the file $@ unless it holds it already (so the file's date is the text's last change)
remember = mkdir -p $(@D) && echo '$(1)' | cmp -s - $@ || echo '$(1)' > $@
command_of = $(or $($(1)_$(2)),$(error no $(1)_$(2): name the command of step $(2) in the Makefile))
STAGE_DATA := $(addprefix $(MADE_DATA)/,ppocr-stage1 ppocr-photos ppocr-stage3 ppocr-stage4 ppocr-taller)
EVAL_DATA := $(addprefix $(MADE_DATA)/,heldout strips-eval realphotos-heldout realphotos-eval)
# The command files stay after a run (make would delete them as intermediate files: a missing one remakes its step)
.PRECIOUS: $(MADE_DATA)/%.command $(MADE_RUNS)/%.command

demo-model: $(MADE_RUNS)/ppocr-soup5-evals
	$(BIN)/python scripts/bundle_demo_model.py $(RUNS)/ppocr-soup5 $(BUNDLE_EVALS) \
		--pretrained $(RUNS)/ppocr-base "meterread $(RUN_ppocr-base)" \
		--stage $(CONFIGS)/ppocr-real-strips.yaml $(RUNS)/ppocr-real auto \
			"meterread $(DATA_ppocr-strips); meterread $(DATA_strips-valid); meterread $(DATA_ppocr-stage1)" \
		--stage $(CONFIGS)/ppocr-photos.yaml $(RUNS)/ppocr-photos auto \
			"meterread $(DATA_ppocr-strips2); meterread $(DATA_realphotos); meterread $(DATA_photos-synth); meterread $(DATA_ppocr-photos)" \
		--stage $(CONFIGS)/ppocr-augment.yaml $(RUNS)/ppocr-augment auto "meterread $(DATA_ppocr-stage3)" \
		--stage $(CONFIGS)/ppocr-recolour.yaml $(RUNS)/ppocr-recolour auto \
			"meterread $(DATA_strips-recolour); meterread $(DATA_ppocr-stage4)" \
		--stage $(CONFIGS)/ppocr-taller.yaml $(RUNS)/ppocr-taller auto \
			"meterread $(DATA_strips-recolour5); meterread $(DATA_ppocr-taller)" \
		--earlier-average $(SOUP) $(RUNS)/ppocr-soup/eval-valid/metrics.json "meterread $(RUN_ppocr-soup)" \
		--earlier-average $(SOUP4) $(RUNS)/ppocr-soup4/eval-valid/metrics.json "meterread $(RUN_ppocr-soup4)" \
		--restripped $(TALL) "meterread $(RUN_ppocr-soup4-64)" \
		--averaged $(BUNDLED) $(RUNS)/ppocr-soup5/eval-valid/metrics.json "meterread $(RUN_ppocr-soup5)"

# The command files: `+` runs them under make -n too, so a dry run shows only what would really run.
$(MADE_DATA)/%.command: FORCE
	+@$(call remember,$(call command_of,DATA,$*))
$(MADE_RUNS)/%.command: FORCE
	+@$(call remember,$(call command_of,RUN,$*))

# A data step: its command, once it or a set it reads changed (the mixes' sources below)
$(MADE_DATA)/%: $(MADE_DATA)/%.command | $(STAMP)
	$(BIN)/meterread $(DATA_$*)
	$(stamp)
$(MADE_DATA)/ppocr-stage1: $(addprefix $(MADE_DATA)/,ppocr-strips strips-valid)
$(MADE_DATA)/ppocr-photos: $(addprefix $(MADE_DATA)/,ppocr-strips2 strips-valid realphotos photos-synth)
$(MADE_DATA)/ppocr-stage3: $(addprefix $(MADE_DATA)/,ppocr-strips strips-valid realphotos photos-synth)
$(MADE_DATA)/ppocr-stage4: $(addprefix $(MADE_DATA)/,strips-recolour strips-valid realphotos photos-synth)
$(MADE_DATA)/ppocr-taller: $(addprefix $(MADE_DATA)/,strips-recolour5 strips-valid realphotos photos-synth)
$(MADE_DATA)/stages-valid: $(addprefix $(MADE_DATA)/,strips-valid realphotos-valid photos-synth-valid)

# A training stage in two steps: NAME.started empties its folder (its command, recipe, base or data changed, or it
# never ran); NAME trains, continuing whatever latest/ the folder holds.
$(MADE_RUNS)/%.started: $(MADE_RUNS)/%.command
	rm -rf $(RUNS)/$*
	$(stamp)
$(MADE_RUNS)/%: $(MADE_RUNS)/%.started
	$(BIN)/meterread $(RUN_$*) --resume
	$(stamp)
$(MADE_RUNS)/ppocr-real.started: $(CONFIGS)/ppocr-real-strips.yaml $(MADE_RUNS)/ppocr-base $(MADE_DATA)/ppocr-stage1
$(MADE_RUNS)/ppocr-photos.started: $(CONFIGS)/ppocr-photos.yaml $(MADE_RUNS)/ppocr-real $(MADE_DATA)/ppocr-photos
$(MADE_RUNS)/ppocr-augment.started: $(CONFIGS)/ppocr-augment.yaml $(MADE_RUNS)/ppocr-photos $(MADE_DATA)/ppocr-stage3
$(MADE_RUNS)/ppocr-recolour.started: $(CONFIGS)/ppocr-recolour.yaml $(MADE_RUNS)/ppocr-soup $(MADE_DATA)/ppocr-stage4
$(MADE_RUNS)/ppocr-taller.started: $(CONFIGS)/ppocr-taller.yaml $(MADE_RUNS)/ppocr-soup4-64 $(MADE_DATA)/ppocr-taller

$(MADE_RUNS)/ppocr-base: $(MADE_RUNS)/ppocr-base.command | $(STAMP)
	$(BIN)/meterread $(RUN_ppocr-base)
	$(stamp)

# The averages, each scored on the validation set of the stage it follows
$(MADE_RUNS)/ppocr-soup: $(MADE_RUNS)/ppocr-soup.command $(MADE_RUNS)/ppocr-photos $(MADE_RUNS)/ppocr-augment
	$(BIN)/meterread $(RUN_ppocr-soup)
	$(BIN)/meterread eval $(DATA)/ppocr-stage3 --split valid --model $(SOUP) --out $(RUNS)/ppocr-soup/eval-valid
	$(stamp)
$(MADE_RUNS)/ppocr-soup4: $(MADE_RUNS)/ppocr-soup4.command $(MADE_RUNS)/ppocr-soup $(MADE_RUNS)/ppocr-recolour
	$(BIN)/meterread $(RUN_ppocr-soup4)
	$(BIN)/meterread eval $(DATA)/ppocr-stage4 --split valid --model $(SOUP4) --out $(RUNS)/ppocr-soup4/eval-valid
	$(stamp)
$(MADE_RUNS)/ppocr-soup5: $(MADE_RUNS)/ppocr-soup5.command $(MADE_RUNS)/ppocr-soup4-64 $(MADE_RUNS)/ppocr-taller
	$(BIN)/meterread $(RUN_ppocr-soup5)
	$(BIN)/meterread eval $(DATA)/ppocr-taller --split valid --model $(BUNDLED) --out $(RUNS)/ppocr-soup5/eval-valid
	$(stamp)

# The stage-4 average set to read the taller strip (a new folder each time: restrip copies into it)
$(MADE_RUNS)/ppocr-soup4-64: $(MADE_RUNS)/ppocr-soup4-64.command $(MADE_RUNS)/ppocr-soup4
	rm -rf $(TALL)
	$(BIN)/meterread $(RUN_ppocr-soup4-64)
	$(stamp)

$(MADE_RUNS)/ppocr-soup5-evals: $(MADE_RUNS)/ppocr-soup5 $(EVAL_DATA)
	$(call evaluate_all,$(BUNDLED),$(RUNS)/ppocr-soup5)
	$(stamp)

# The five stages' training data (train/ and valid/ of $(DATA)/ppocr-stage1, $(DATA)/ppocr-photos,
# $(DATA)/ppocr-stage3: stage 1's strips and stage 2's photos again, read through stage 3's augmentation,
# $(DATA)/ppocr-stage4 and $(DATA)/ppocr-taller: fresh strips, half recoloured, beside stage 2's photos). Each
# command rewrites its folder.
stage-data: $(STAGE_DATA)

eval-sets: $(EVAL_DATA)

# Re-measure the bundled model on every set beside PP-OCRv4 and record it (weights unchanged); the recommended
# min_confidence comes from the validation set of stages 2-5 again (its 900 images only, not the 40,000 of
# training). Always measures again (the bundle may have changed); its sets are made once.
evaluate-bundled: $(MADE_DATA)/stages-valid $(EVAL_DATA)
	$(BIN)/meterread eval $(DATA)/stages-valid --split valid --out $(RUNS)/bundled/eval-stages-valid
	$(call evaluate_all,meterread/assets/demo-model,$(RUNS)/bundled)
	$(BIN)/python scripts/bundle_demo_model.py $(RUNS)/bundled $(BUNDLE_EVALS) \
		--annotate-only $(RUNS)/bundled/eval-stages-valid/metrics.json \
			"the averaged checkpoint on the validation set of stages 2-5, re-measured (configs/ppocr-photos.yaml, configs/ppocr-augment.yaml, configs/ppocr-recolour.yaml, configs/ppocr-taller.yaml)"

# Forget every step demo-model made (its stamps): the next `make demo-model` makes every set and stage again.
clean-demo-model:
	rm -rf $(MADE_DATA) $(MADE_RUNS)

FORCE:

lint: $(STAMP)
	$(BIN)/ruff check meterread flows tests

clean:
	rm -rf demo .pytest_cache build *.egg-info
