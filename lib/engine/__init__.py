"""Inference engines for layers that do not train: LiteRT (XNNPACK) first, TensorFlow as fallback.

TensorFlow stays the engine for everything with gradients (training, fine-tuning, attacks, ideal
images, Grad-CAM); this package runs the forward-only passes.
"""

from lib.engine.forward import (  # noqa: F401
    ENGINE_ENV,
    ENGINES,
    LITERT,
    TF,
    Forward,
    ForwardResult,
    build_tf_forward,
    forward_batches,
    open_forward,
    resolve_engine,
)
from lib.engine.litert import (  # noqa: F401
    EngineUnavailable,
    LiteRTPool,
    LiteRTRunner,
    cached_tflite,
    engine_key,
)
from lib.engine.threads import ThreadBudget, available_cores, thread_budget  # noqa: F401
from lib.engine.timing import time_forward  # noqa: F401
