#!/usr/bin/env bash
# Smoke run of every grid's MNIST cells from the checkout CHECKOUT into RESULTS, with the python
# of the current environment (so two commits can be compared with one venv):
#   scripts/smoke_every_grid.sh CHECKOUT RESULTS
# then: python scripts/compare_rows.py RESULTS_A RESULTS_B
set -u
checkout=$(cd "$1" && pwd); results=$2
export PYTHONPATH="$checkout"   # the checkout's aae_core/bench, not the installed ones
cd "$checkout"
for grid in table1 table2 table3 dim_reduction figure2 figure4 figure5_6 figure9 figure11; do
  python -c "import sys; from bench.cli import main; sys.exit(main())" \
    run "$grid" --profile smoke --seeds 1 --dataset mnist --results "$results" --no-table || echo "FAILED $grid"
done
