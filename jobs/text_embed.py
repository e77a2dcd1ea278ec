"""Batch job: `star text embed` (see `star text embed --help`)."""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "text", "embed", *sys.argv[1:]]
    main()
