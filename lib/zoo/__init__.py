"""The model zoo, measured on this machine and cached per machine fingerprint.

Published tables give latency on someone else's hardware; this package measures size, depth,
latency, throughput and memory per backbone here (`measure`), keeps one table per machine
(`machine`, `table`), and shows published ImageNet accuracy beside them (never measured here).
The headers people see live with the page's other presentation code, in `lib.plots.zoo`.
"""

from lib.progress import ProgressFn  # noqa: F401
from lib.zoo.machine import fingerprint_key, machine_fingerprint  # noqa: F401
from lib.zoo.measure import (  # noqa: F401
    ACCURACY_NOTE,
    DEFAULT_BATCHES,
    DEPTH_METHOD,
    LATENCY_METHOD,
    MAX_BATCH,
    MAX_RUNS,
    MEMORY_METHOD,
    MEMORY_SAMPLE_S,
    MIN_RUNS,
    SIZE_METHOD,
    TIME_BUDGET_S,
    WORKER_TIMEOUT_S,
    count_depth,
    describe_cut_points,
    measure_backbone,
    measure_in_subprocess,
    measure_spec,
    registry_row,
    time_batches,
    weights_size_mb,
)
from lib.zoo.table import (  # noqa: F401
    SCHEMA_VERSION,
    ZOO_COLUMNS,
    flatten_row,
    list_zoo_caches,
    load_zoo_cache,
    measure_zoo,
    merge_zoo_rows,
    pareto_front,
    save_zoo_cache,
    weights_summary,
    zoo_cache_path,
    zoo_table,
)

# Presentation names the Zoo page still reads from here (`zoo.display_table`). They live in
# lib.plots.zoo; looking them up on first use keeps plotly out of the measuring worker's imports.
_FROM_PLOTS = ("DISPLAY_COLUMNS", "display_table")


def __getattr__(name: str):
    if name in _FROM_PLOTS:
        from lib.plots import zoo as plots_zoo

        return getattr(plots_zoo, name)
    raise AttributeError(f"module 'lib.zoo' has no attribute '{name}'")
