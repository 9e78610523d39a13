# `make demo`: the whole Vox-UDA workflow on built-in data, as shell commands a user would write.
# Small but real settings so it fits ~15 minutes on 2 CPU cores; scale N, EPOCHS and WIDTH up on a GPU.
# Both source presets are trained, source-only and vox-uda, and scored on the same held-out-nuisance
# target: the domain-randomised source (which measured best there, benchmarks/results.md) and the
# paper's. `make demo SOURCES=source` runs the paper's alone.
VOXUDA  ?= voxuda
OUT     ?= demo
SOURCES ?= randomized source  # source presets: randomized (domain-randomised), source (the paper's)
METHODS ?= source-only vox-uda
TARGET  ?= crowded   # target preset: crowded (hard: neighbours, background, coloured noise, MTF) or target (easy)
N       ?= 20        # source subtomograms per molecule and SNR level of the paper's source (randomized: 2N)
NT      ?= 30        # target subtomograms per molecule
EPOCHS  ?= 8
WIDTH   ?= 8
BATCH   ?= 8
SEED    ?= 0
MAIN    := $(firstword $(SOURCES))
TRAIN   := --epochs $(EPOCHS) --width $(WIDTH) --batch-size $(BATCH) --lr-step 1000 --seed $(SEED) --device auto
SCORES  := $(foreach s,$(SOURCES),$(foreach m,$(METHODS),$(OUT)/score_$(s)_$(m).json))

.PHONY: all
.SECONDARY:  # keep every intermediate (models, predictions): users look at them
all: $(SCORES) $(OUT)/pseudo.h5
	@python3 -c "import json,sys; \
	print('\nsource       method        mIoU   Dice   (target: $(strip $(TARGET)) preset, scored on its masks, which training never reads)'); \
	[print(f'{s:<12} {m:<13} {r[\"mean\"][\"iou\"]*100:5.1f}  {r[\"mean\"][\"dice\"]*100:5.1f}') \
	 for s in '$(SOURCES)'.split() for m in '$(METHODS)'.split() \
	 for r in [json.load(open(f'$(OUT)/score_{s}_{m}.json'))]]"
	@echo "PNG figures in $(OUT)/: source_*.png target.png ibf_preview.png pseudo.png curves_*.png prediction_*.png montage_*.png (target / prediction / truth)"

$(OUT)/source_source.h5:
	$(VOXUDA) simulate-prep $@ --preset source --n-per-structure $(N) --seed $(SEED) --workers 2 --preview $(OUT)/source_source.png

$(OUT)/source_randomized.h5:
	$(VOXUDA) simulate-prep $@ --preset randomized --n-per-structure $(shell expr 2 \* $(N)) --seed $(SEED) --workers 2 \
	  --preview $(OUT)/source_randomized.png

# The "real" data: other molecules in crowded boxes with other optics and nuisances; its masks are
# kept aside for scoring only.
$(OUT)/target_truth.h5:
	$(VOXUDA) simulate-prep $@ --preset $(TARGET) --n-per-structure $(NT) --seed $(shell expr $(SEED) + 1) --workers 2 --preview $(OUT)/target.png

$(OUT)/noise.json: $(OUT)/target_truth.h5
	$(VOXUDA) estimate-noise $< -o $@ --seed $(SEED)

$(OUT)/target_ibf.h5: $(OUT)/target_truth.h5
	$(VOXUDA) ibf-denoise $< -o $@ --preview $(OUT)/ibf_preview.png

# One run per source preset and method: $(OUT)/run_SOURCE_METHOD/.
define RUN
$(OUT)/run_$(1)_$(2)/model.pt: $(OUT)/source_$(1).h5 $(OUT)/target_truth.h5 $(OUT)/noise.json
	$(VOXUDA) train --src $(OUT)/source_$(1).h5 --tgt $(OUT)/target_truth.h5 --noise $(OUT)/noise.json \
	  --method $(2) -o $(OUT)/run_$(1)_$(2) --overwrite $(TRAIN)
	cp $(OUT)/run_$(1)_$(2)/curves.png $(OUT)/curves_$(1)_$(2).png
endef
$(foreach s,$(SOURCES),$(foreach m,$(METHODS),$(eval $(call RUN,$(s),$(m)))))

# What the main source's teacher teaches (the IBF preview beside it shows the paper's teacher input).
$(OUT)/pseudo.h5: $(OUT)/run_$(MAIN)_vox-uda/model.pt $(OUT)/target_ibf.h5
	$(VOXUDA) pseudo-label $(OUT)/run_$(MAIN)_vox-uda $(OUT)/target_truth.h5 -o $@ --preview $(OUT)/pseudo.png

$(OUT)/pred_%.h5: $(OUT)/run_%/model.pt
	$(VOXUDA) predict $(OUT)/run_$* $(OUT)/target_truth.h5 -o $@ --probabilities --preview $(OUT)/prediction_$*.png

$(OUT)/score_%.json: $(OUT)/pred_%.h5
	$(VOXUDA) score $< $(OUT)/target_truth.h5 --preview $(OUT)/montage_$*.png
	$(VOXUDA) score $< $(OUT)/target_truth.h5 --json > $@.tmp && mv $@.tmp $@
