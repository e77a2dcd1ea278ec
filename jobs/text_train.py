"""Batch job: `star text train` (see `star text train --help`)."""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "text", "train", *sys.argv[1:]]
    main()
