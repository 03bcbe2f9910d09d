"""`python -m lib.zoo JOB_JSON`: the worker that measures one backbone in a fresh process."""

import sys

from lib.zoo.measure import run_worker

if __name__ == "__main__":
    sys.exit(run_worker(sys.argv[1]))
