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

from bench import artifacts, diagnostics
from bench.config import config_from_dict


def main(directories: list[str]) -> int:
    if not directories:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for directory in map(Path, directories):
        if not (directory / artifacts.WEIGHTS).is_file():
            print(f"{directory}: no {artifacts.WEIGHTS} (weights stay where the trial ran)", file=sys.stderr)
            return 2
        config = config_from_dict(json.loads((directory / "config.json").read_text(encoding="utf-8")))
        trial = artifacts.TrialArtifact(directory.name, config.seed, directory / artifacts.WEIGHTS, config)
        # the test images the trial's latents were computed on (found as the figures find them)
        images = artifacts.hold_out_images(trial, artifacts.latents(trial)["y"])
        if images is None:
            print(f"{directory}: its test images were not found (set AAE_BENCH_DATA)", file=sys.stderr)
            return 2
        images = torch.from_numpy(images)
        net = artifacts.load_model(trial)
        with torch.no_grad():
            code = net.code(images)
        z = (code[1] if isinstance(code, tuple) else code)[0].numpy()
        distinct, largest = diagnostics.code_collapse(z)
        print(f"{directory.name} {config.grid} {config.variant}/{config.prior}: "
              f"{distinct} distinct codes z of {len(z)} test images (largest share {largest:.4f})")
        for layer in diagnostics.encoder_activity(net.encoder, images):
            print(f"  hidden layer {layer.layer}: {layer.alive} of {layer.units} units ever active, "
                  f"{layer.mean_active:.3f} active per image on average, "
                  f"{layer.inputs_all_dead} images with every unit zero")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
