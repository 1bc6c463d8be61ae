"""bench: the study around aae_core (grids, runner, evaluators, rows, tables)."""
