"""Batch job: load a marketplace (same as `star seed`).

    python jobs/seed.py --from DIR        python jobs/seed.py --synthetic --members 100000 --jobs 20000
"""

import sys

from star.cli import main

if __name__ == "__main__":
    sys.argv = ["star", "seed", *sys.argv[1:]]
    main()
