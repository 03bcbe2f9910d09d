"""`python -m lib …` is the command-line interface."""

import os
import sys


def _import_tensorflow_quietly() -> None:
    # TF's C++ layer prints INFO lines on import and on the first device probe that no environment variable silences in 2.21;
    # they would bury the CLI's one-line error messages, so fd 2 is muted just for the import.
    if "--debug" in sys.argv:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, also muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Guarded: `--scheduler local` starts worker processes that re-import this module (as
# `__mp_main__`), and they must not run the command again.
if __name__ == "__main__":
    _import_tensorflow_quietly()

    from lib.cli import main

    sys.exit(main())
