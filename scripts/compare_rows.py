"""Two results directories must hold bit-identical rows: every (grid, trial_id, metric) present in
both, with equal value, stderr, n, status, trained-parameter digests and labelled-subset hash.

    python scripts/compare_rows.py RESULTS_A RESULTS_B     # exit 1 on any difference
"""

import sys
from pathlib import Path

import pandas as pd

KEY = ["grid", "trial_id", "metric"]
COMPARED = ["value", "stderr", "n", "status", "param_digests", "subset_hash"]


def rows(directory: str) -> pd.DataFrame:
    files = sorted(Path(directory).rglob("*.csv"))
    files = [f for f in files if "artifacts" not in f.parts and "ray" not in f.parts]
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)[KEY + COMPARED]


def main(a: str, b: str) -> int:
    both = rows(a).merge(rows(b), on=KEY, how="outer", suffixes=("_a", "_b"), indicator=True)
    unmatched = both[both["_merge"] != "both"]
    differing = []
    for column in COMPARED:
        x, y = both[f"{column}_a"], both[f"{column}_b"]
        same = (x == y) | (x.isna() & y.isna())
        differing += [(column, *key) for key in both.loc[~same & (both["_merge"] == "both"), KEY].itertuples(index=False)]
    print(f"{len(both)} (grid, trial, metric) keys; {len(unmatched)} in one directory only; "
          f"{len(differing)} differing values")
    for item in differing[:20]:
        print("differs:", *item)
    if len(unmatched):
        print(unmatched[KEY + ["_merge"]].head(20).to_string(index=False))
    return 1 if differing or len(unmatched) else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
