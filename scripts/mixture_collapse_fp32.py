"""Diagnostic of Fig. 2 (b) (issue #16), not a campaign cell: does the AAE's collapse under the
mixture-of-10-Gaussians prior (trial a38efe42f373546c, bf16: every test code at one point from
about epoch 15) happen at fp32 too? The same config at fp32 ("no"), 25 epochs: the schedule's
first step is at epoch 50, so epochs 1-25 train exactly as the long trial's do but for precision.

    AAE_BENCH_DATA=... python scripts/mixture_collapse_fp32.py OUT_DIR

Writes OUT_DIR/rows.json and OUT_DIR/artifacts/<trial>/ (curve.csv, latents.npz, ...), and
prints the test codes' std and how many distinct codes (rounded to 1e-4) there are. Its rows are
not study rows (a 25-epoch config of its own): keep them out of results/.
"""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from aae_core import datasets
from bench.grids import grid_configs
from bench.trial import run_trial

out = Path(sys.argv[1])
(config,) = [c for c in grid_configs("figure2", "long", 1, ("mnist",))
             if c.variant == "unsupervised" and c.prior == "mixture"]
config = dataclasses.replace(config, precision="no", epochs=25)
rows = run_trial(config, data=datasets.load("mnist", None), threads=1,
                 command="scripts/mixture_collapse_fp32.py", artifacts_dir=out / "artifacts")
(out / "rows.json").write_text(json.dumps(rows, default=str, indent=1))
z = np.load(next((out / "artifacts").glob("*/latents.npz")))["z"]
print("trial", config.trial_id, "z std", z.std(0), "distinct codes",
      len(np.unique(z.round(4), axis=0)), "of", len(z))
