"""TransferLab engine: backbones, data, training, look-inside tools and the zoo.

Nothing here imports Streamlit except `lib.ui_state`, which owns session state and cached resources.
"""

import os

# TensorFlow's C++ INFO lines drown the CLI's own output; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
