"""`python -m lib …` is the command-line interface."""

import sys

# Guarded: `--scheduler local` starts worker processes that re-import this module (as
# `__mp_main__`), and they must not run the command again. TensorFlow is imported by `main` only
# for the commands that need it, so `backbones`, `data` and `--help` answer without it.
if __name__ == "__main__":
    from lib.cli import main

    sys.exit(main())
