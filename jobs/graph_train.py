"""Batch job: `star graph train` (see `star graph train --help`)."""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "graph", "train", *sys.argv[1:]]
    main()
