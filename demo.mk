# `make demo`: the whole Vox-UDA workflow on built-in data, as shell commands a user would write.
# Small but real settings so it fits ~15 minutes on 2 CPU cores; scale N, EPOCHS and WIDTH up on a GPU.
VOXUDA ?= voxuda
OUT    ?= demo
SOURCE ?= source    # source preset: source (the paper's) or randomized (domain-randomised)
TARGET ?= crowded   # target preset: crowded (hard: neighbours, background, coloured noise, MTF) or target (easy)
N      ?= 20        # source subtomograms per molecule and SNR level of the paper's source (randomized: 2N)
NT     ?= 30        # target subtomograms per molecule
EPOCHS ?= 8
WIDTH  ?= 8
BATCH  ?= 8
SEED   ?= 0
NS     := $(if $(filter source,$(SOURCE)),$(N),$(shell expr 2 \* $(N)))
TRAIN  := --epochs $(EPOCHS) --width $(WIDTH) --batch-size $(BATCH) --lr-step 1000 --seed $(SEED) --device auto

.PHONY: all
.SECONDARY:  # keep every intermediate (models, predictions): users look at them
all: $(OUT)/score_source-only.json $(OUT)/score_vox-uda.json
	@python3 -c "import json,sys; \
	rows=[(m, json.load(open('$(OUT)/score_'+m+'.json'))) for m in ('source-only','vox-uda')]; \
	print('\nmethod        mIoU   Dice   (target: $(strip $(TARGET)) preset, source: $(strip $(SOURCE)) preset)'); \
	[print(f'{m:<13} {r[\"mean\"][\"iou\"]*100:5.1f}  {r[\"mean\"][\"dice\"]*100:5.1f}') for m,r in rows]"
	@echo "PNG figures in $(OUT)/: source.png target.png ibf_preview.png pseudo.png curves_*.png prediction_*.png montage_*.png (target / prediction / truth)"

$(OUT)/source.h5:
	$(VOXUDA) simulate-prep $@ --preset $(SOURCE) --n-per-structure $(NS) --seed $(SEED) --workers 2 --preview $(OUT)/source.png

# The "real" data: other molecules in crowded boxes with other optics and nuisances; its masks are
# kept aside for scoring only.
$(OUT)/target_truth.h5:
	$(VOXUDA) simulate-prep $@ --preset $(TARGET) --n-per-structure $(NT) --seed $(shell expr $(SEED) + 1) --workers 2 --preview $(OUT)/target.png

$(OUT)/noise.json: $(OUT)/target_truth.h5
	$(VOXUDA) estimate-noise $< -o $@ --seed $(SEED)

$(OUT)/target_ibf.h5: $(OUT)/target_truth.h5
	$(VOXUDA) ibf-denoise $< -o $@ --preview $(OUT)/ibf_preview.png

$(OUT)/run_%/model.pt: $(OUT)/source.h5 $(OUT)/target_truth.h5 $(OUT)/noise.json
	$(VOXUDA) train --src $(OUT)/source.h5 --tgt $(OUT)/target_truth.h5 --noise $(OUT)/noise.json \
	  --method $* -o $(OUT)/run_$* --overwrite $(TRAIN)
	cp $(OUT)/run_$*/curves.png $(OUT)/curves_$*.png

$(OUT)/pseudo.h5: $(OUT)/run_vox-uda/model.pt $(OUT)/target_ibf.h5
	$(VOXUDA) pseudo-label $(OUT)/run_vox-uda $(OUT)/target_truth.h5 -o $@ --preview $(OUT)/pseudo.png

$(OUT)/pred_%.h5: $(OUT)/run_%/model.pt $(OUT)/pseudo.h5
	$(VOXUDA) predict $(OUT)/run_$* $(OUT)/target_truth.h5 -o $@ --probabilities --preview $(OUT)/prediction_$*.png

$(OUT)/score_%.json: $(OUT)/pred_%.h5
	$(VOXUDA) score $< $(OUT)/target_truth.h5 --preview $(OUT)/montage_$*.png
	$(VOXUDA) score $< $(OUT)/target_truth.h5 --json > $@.tmp && mv $@.tmp $@
