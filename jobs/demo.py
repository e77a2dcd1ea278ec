"""Batch job: the main pipeline end to end on the embedded default (same as `star demo`).

    python jobs/demo.py [--members 2000 --jobs 400 --seed 0]
"""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "demo", *sys.argv[1:]]
    main()
