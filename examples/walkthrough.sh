#!/usr/bin/env bash
# The README's "Your own tomograms" walk, command for command, on two synthetic tomograms at CPU
# sizes: `make walkthrough` (a few minutes on 2 cores). tests/test_walkthrough.py checks that every
# voxuda command of that README section is here, so the two cannot drift apart.
#
#   bash examples/walkthrough.sh [FOLDER]      # default: ./walkthrough
set -euo pipefail
VOXUDA=${VOXUDA:-voxuda}
PYTHON=${PYTHON:-python}
DIR=${1:-walkthrough}
# What the README says to add on a CPU (its defaults, 300 epochs at width 32, are for a GPU),
# made smaller still here: the walk checks that the commands run, not what the network learns.
CPU_TRAIN="--epochs 2 --width 8 --batch-size 8 --threads 2"
CPU_SIMULATE="--n-per-structure 4 --workers 1"

mkdir -p "$DIR"
cd "$DIR"
rm -rf work tomos particles.star

# Two 10 A tomograms with 12 dense particles each and RELION 4 picks (pixels from the first voxel)
$PYTHON - <<'PYTHON'
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume

rng = np.random.default_rng(0)
shape = (64, 128, 128)
grid = np.indices(shape, dtype=np.float32)
Path("tomos").mkdir()
rows = []
for name in ("TS_01", "TS_02"):
    volume = rng.normal(0.0, 1.0, shape).astype(np.float32)
    for _ in range(12):
        centre = rng.uniform((20, 20, 20), np.array(shape) - 20)
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
        volume += 1.5 * (distance <= 6)
        rows.append({"rlnMicrographName": f"{name}.mrc", "rlnCoordinateX": centre[2],
                     "rlnCoordinateY": centre[1], "rlnCoordinateZ": centre[0]})
    write_mrc(Path("tomos") / f"{name}.mrc", Volume(volume, voxel_size=10.0))
starfile.write(pd.DataFrame(rows), "particles.star", overwrite=True)
PYTHON

# 1. subtomograms at the picks, at the voxel size the model will have
$VOXUDA extract tomos/TS_01.mrc tomos/TS_02.mrc --coords particles.star -o work/target.h5 --box 32 --voxel-size 10
# 2. simulated source data at the same voxel size (the picked preset)
$VOXUDA simulate-prep work/source.h5 --preset picked --voxel-size 10 --box 32 $CPU_SIMULATE
# 3. adapt a network to the subtomograms
$VOXUDA train --src work/source.h5 --tgt work/target.h5 -o work/run $CPU_TRAIN
# 4. segment them and paste the masks back into each tomogram
$VOXUDA predict work/run work/target.h5 -o work/pred.h5 --smooth 36 --paste work/segmentations --probabilities
# and a whole tomogram directly
$VOXUDA predict work/run tomos/TS_01.mrc -o work/masks/

test -f work/segmentations/TS_01.mrc && test -f work/segmentations/TS_02.mrc && test -f work/masks/TS_01.mrc
echo "walkthrough: every step ran; outputs in $DIR/work"
