"""Lite0 loading: cold first conversion, warm load from the converted cache, cached-resource fetch.

In one fresh process, with an empty TransferLab cache:

1. cold: `load_backbone("efficientnet_lite0")` reads the torch pickle, converts and caches it;
2. warm: the same call again reads the converted `.weights.h5` (no torch file);
3. cached fetch: `lib.ui.resources.get_backbone` (an `st.cache_resource`) called twice; the second call
   is the in-process hit every page rerun pays. Outside a Streamlit server the decorated function
   still caches (in memory), which is what is timed.

TensorFlow is warmed up first on the tiny backbone, so "cold" measures conversion, not TF start-up.
Targets: warm <= 1 s, cached fetch <= 50 ms. Writes bench/results/backbone_load.json.
`--smoke` loads once warm instead of the best of three.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

WARM_TARGET_S = 1.0
FETCH_TARGET_S = 0.050
WARM_REPEATS = 3


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    common.prepare(private_cache=True)  # "cold" converts: nothing may be cached yet
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" warnings outside a server
    from lib.backbones import load_backbone

    repeats = 1 if args.smoke else WARM_REPEATS
    load_backbone("tiny_random")  # TF and Keras warm-up
    _, cold = timed(lambda: load_backbone("efficientnet_lite0"))
    warm = min(timed(lambda: load_backbone("efficientnet_lite0"))[1] for _ in range(repeats))
    from lib.ui import resources

    _, first_fetch = timed(lambda: resources.get_backbone("efficientnet_lite0"))
    second, fetch = timed(lambda: resources.get_backbone("efficientnet_lite0"))
    same = second is resources.get_backbone("efficientnet_lite0")
    rows = [
        ("cold: convert torch pickle + cache", cold, None),
        (f"warm: from converted cache (best of {repeats})", warm, WARM_TARGET_S),
        ("cached resource: first fetch (miss)", first_fetch, None),
        ("cached resource: second fetch (hit)", fetch, FETCH_TARGET_S),
    ]
    print(f"{'step':<44} {'seconds':>9} {'target':>8}")
    for label, seconds, target in rows:
        print(f"{label:<44} {seconds:>9.4f} {'' if target is None else f'<= {target:g}':>8}")
    print(f"cold / warm = {cold / warm:.1f}x; warm / cached fetch = {warm / max(fetch, 1e-9):.0f}x; "
          f"same object: {same}")
    result = {
        "name": "backbone_load",
        "machine": common.machine(),
        "cold_s": round(cold, 3), "warm_s": round(warm, 3),
        "first_fetch_s": round(first_fetch, 3), "cached_fetch_s": round(fetch, 5),
        "summary": {"cold_s": round(cold, 3), "warm_s": round(warm, 3), "cached_fetch_ms": round(fetch * 1000, 3),
                    "cold_over_warm": round(cold / warm, 1)},
        "target": f"warm <= {WARM_TARGET_S} s, cached fetch <= {FETCH_TARGET_S * 1000:g} ms",
        "passed": warm <= WARM_TARGET_S and fetch <= FETCH_TARGET_S and same,
    }
    common.write_results("backbone_load", result, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
