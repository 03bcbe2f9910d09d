"""Peak RSS of one process holding Lite0, Lite1 and Lite2 plus one trained head.

Steps, in one fresh process: import TensorFlow and lib; load Lite0, Lite1, Lite2 (converted
weights, cached after the first run); build a classifier on Lite0 (body + head) and train the head
for 2 epochs on 64 random images; run it once. A psutil thread samples RSS every 5 ms, so the peak
includes transient allocations. Writes bench/results/memory.json.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "memory.json"
SAMPLE_S = 0.005
MB = 1e6


class PeakSampler(threading.Thread):
    """Records the largest RSS seen since start (and since the last `mark`)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = self.window_peak = self.process.memory_info().rss
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            rss = self.process.memory_info().rss
            self.peak = max(self.peak, rss)
            self.window_peak = max(self.window_peak, rss)
            time.sleep(SAMPLE_S)

    def mark(self) -> tuple[float, float]:
        """(current RSS, peak since the previous mark), in MB."""
        rss = self.process.memory_info().rss
        peak = max(self.window_peak, rss)
        self.window_peak = rss
        return rss / MB, peak / MB


def train_head(backbone) -> float:
    import numpy as np

    from lib.models import HeadConfig, build_body, build_classifier, build_head

    body = build_body(backbone)
    head = build_head(tuple(body.outputs[0].shape[1:]), 2, HeadConfig())
    model = build_classifier(body, head, backbone.spec.input_size)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 224, 224, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, 64)]
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.predict(x[:8], verbose=0)
    return float(history.history["loss"][-1])


def main() -> int:
    sampler = PeakSampler()
    sampler.start()
    steps = []
    start_rss = sampler.process.memory_info().rss / MB
    import tensorflow as tf  # noqa: F401

    from lib.backbones import load_backbone
    from lib.zoo import machine_fingerprint

    steps.append(("python + TensorFlow + lib imported", *sampler.mark()))
    backbones = {}
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        backbones[name] = load_backbone(name)
        steps.append((f"+ {name}", *sampler.mark()))
    loss = train_head(backbones["efficientnet_lite0"])
    steps.append(("+ Lite0 head trained (2 epochs, 64 imgs)", *sampler.mark()))
    sampler.stop_event.set()
    sampler.join()
    peak = sampler.peak / MB
    print(f"{'step':<42} {'RSS MB':>8} {'peak MB':>8}")
    print(f"{'python started':<42} {start_rss:>8.0f}")
    for label, rss, step_peak in steps:
        print(f"{label:<42} {rss:>8.0f} {step_peak:>8.0f}")
    base = steps[0][1]
    backbones_mb = steps[3][1] - base
    print(f"peak RSS {peak:.0f} MB; over the TF baseline: {peak - base:.0f} MB "
          f"(the three Lite backbones: {backbones_mb:.0f} MB; training the head: the rest)")
    result = {
        "name": "memory",
        "machine": {"device": machine_fingerprint()["device"],
                    "total_ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "steps": [{"step": s, "rss_mb": round(r, 1), "peak_mb": round(p, 1)} for s, r, p in steps],
        "summary": {"peak_rss_mb": round(peak, 1), "tf_baseline_mb": round(base, 1),
                    "over_baseline_mb": round(peak - base, 1),
                    "three_lite_backbones_mb": round(steps[3][1] - base, 1)},
        "final_head_loss": loss,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
