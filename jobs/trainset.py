"""Batch job: a point-in-time training set (same as `star trainset`).

    python jobs/trainset.py apply --out out/trainset_apply.parquet
"""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "trainset", *sys.argv[1:]]
    main()
