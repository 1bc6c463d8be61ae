"""Packs: seeds of one config trained as one seed-batched model in one Tune trial.

A pack is a tuple of configs that differ in their seed only (`--seeds-per-trial`). Its Tune
trial's config holds its first member's fields and id and the members' seeds and ids
(`pack_params`); the driver and the progress lines read the members back from it. A pack of
one is exactly a trial of an unpacked sweep.
"""

from __future__ import annotations

import dataclasses

from bench.config import TrialConfig, config_from_dict

Pack = tuple[TrialConfig, ...]

# Keys of a Tune trial's config that a pack adds to its first member's fields.
PACK_KEYS = ("pack_seeds", "pack_trial_ids")


def pack_configs(configs: list[TrialConfig], seeds_per_trial: int) -> list[Pack]:
    """Configs that differ only in their seed, by seed, in packs of at most `seeds_per_trial`;
    groups in the order of their first config. Pass pending configs only: done seeds stay out."""
    groups: dict[TrialConfig, list[TrialConfig]] = {}
    for config in configs:
        groups.setdefault(dataclasses.replace(config, seed=0), []).append(config)
    packs = []
    for members in groups.values():
        members.sort(key=lambda c: c.seed)
        packs += [tuple(members[i:i + seeds_per_trial])
                  for i in range(0, len(members), seeds_per_trial)]
    return packs


def pack_name(trial_ids: list[str] | tuple[str, ...]) -> str:
    """A Tune trial's name: its trial id, or a pack's first member id and how many more."""
    return trial_ids[0] if len(trial_ids) == 1 else f"{trial_ids[0]}+{len(trial_ids) - 1}"


def pack_params(pack: Pack) -> dict:
    """A Tune trial's config: its first member's fields and id, and a pack's seeds and ids.
    A pack of one is exactly a trial of an unpacked sweep."""
    first = pack[0]
    params = first.as_dict() | {"trial_id": first.trial_id}
    if len(pack) > 1:
        params |= {"pack_seeds": [c.seed for c in pack],
                   "pack_trial_ids": [c.trial_id for c in pack]}
    return params


def pack_members(params: dict) -> list[dict]:
    """Each member's config (as `pack_params` of it alone would give) from a Tune trial's."""
    base = {k: v for k, v in params.items() if k not in PACK_KEYS}
    if "pack_seeds" not in params:
        return [base]
    return [base | {"seed": seed, "trial_id": tid}
            for seed, tid in zip(params["pack_seeds"], params["pack_trial_ids"], strict=True)]


def pack_trial_ids(params: dict) -> list[str]:
    return [m.get("trial_id", "?") for m in pack_members(params)]


def pack_from_params(params: dict) -> Pack:
    return tuple(config_from_dict(m) for m in pack_members(params))
