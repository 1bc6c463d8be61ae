"""Diagnostic of collapsed cells (issue #16): how many of each trained encoder's hidden ReLU
units the test images switch on, and how many distinct codes they get (bench.diagnostics).

    AAE_BENCH_DATA=... python scripts/encoder_activity.py ARTIFACT_DIR [ARTIFACT_DIR ...]

ARTIFACT_DIR is a trial's `results/artifacts/<grid>/<trial_id>/`, with its model.pt (written
where the trial ran; not committed) and model_args.json. Prints one line per hidden layer.
"""

import json
import sys
from pathlib import Path

import torch

from aae_core import datasets
from bench import artifacts, diagnostics


def main(directories: list[str]) -> int:
    if not directories:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    test = {}
    for directory in map(Path, directories):
        if not (directory / artifacts.WEIGHTS).is_file():
            print(f"{directory}: no {artifacts.WEIGHTS} (weights stay where the trial ran)", file=sys.stderr)
            return 2
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        name = config["dataset"]
        if name not in test:
            test[name] = torch.from_numpy(datasets.load(name, None, download=False).test_x)
        trial = artifacts.TrialArtifact(directory.name, config["seed"], directory / artifacts.WEIGHTS)
        net = artifacts.load_model(trial)
        with torch.no_grad():
            code = net.code(test[name])
        z = (code[1] if isinstance(code, tuple) else code)[0].numpy()
        distinct, largest = diagnostics.code_collapse(z)
        print(f"{directory.name} {config['grid']} {config['variant']}/{config['prior']}: "
              f"{distinct} distinct codes z of {len(z)} test images (largest share {largest:.4f})")
        for layer in diagnostics.encoder_activity(net.encoder, test[name]):
            print(f"  hidden layer {layer.layer}: {layer.alive} of {layer.units} units ever active, "
                  f"{layer.mean_active:.3f} active per image on average, "
                  f"{layer.inputs_all_dead} images with every unit zero")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
