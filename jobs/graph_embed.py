"""Batch job: `star graph embed` (see `star graph embed --help`)."""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "graph", "embed", *sys.argv[1:]]
    main()
