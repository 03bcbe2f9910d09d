"""TransferLab engine: backbones, data, training, look-inside tools and the zoo.

Nothing here imports Streamlit except the `lib.ui` package, which owns session state, cached
resources and the UI sections every page shares.
"""

import os

# TensorFlow's C++ INFO lines drown the CLI's own output; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
