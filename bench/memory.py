"""Peak RSS of one process holding Lite0, Lite1 and Lite2 plus one trained head.

Steps, in one fresh process: import TensorFlow and lib; load Lite0, Lite1, Lite2 (converted
weights, cached after the first run); build a classifier on Lite0 (body + head) and train the head
for 2 epochs on 64 random images; run it once. A psutil thread samples RSS every 5 ms, so the peak
includes transient allocations. Writes bench/results/memory.json.
`--smoke` loads Lite0 only and trains on 16 images for 1 epoch.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import _common as common  # noqa: E402

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
IMAGES = 64
EPOCHS = 2
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


def train_head(backbone, images: int = IMAGES, epochs: int = EPOCHS) -> float:
    import numpy as np

    from lib.models import HeadConfig, build_body, build_classifier, build_head

    body = build_body(backbone)
    head = build_head(tuple(body.outputs[0].shape[1:]), 2, HeadConfig())
    model = build_classifier(body, head, backbone.spec.input_size)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, 224, 224, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, images)]
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    model.predict(x[:8], verbose=0)
    return float(history.history["loss"][-1])


def main(argv: list[str] | None = None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    names, images, epochs = (BACKBONES[:1], 16, 1) if args.smoke else (BACKBONES, IMAGES, EPOCHS)
    sampler = PeakSampler()
    sampler.start()
    steps = []
    start_rss = sampler.process.memory_info().rss / MB
    common.prepare()  # the user's cache: converted weights are reused, as in the app
    import tensorflow as tf  # noqa: F401

    from lib.backbones import load_backbone

    steps.append(("python + TensorFlow + lib imported", *sampler.mark()))
    backbones = {}
    for name in names:
        backbones[name] = load_backbone(name)
        steps.append((f"+ {name}", *sampler.mark()))
    loss = train_head(backbones["efficientnet_lite0"], images, epochs)
    steps.append((f"+ Lite0 head trained ({epochs} epochs, {images} imgs)", *sampler.mark()))
    sampler.stop_event.set()
    sampler.join()
    peak = sampler.peak / MB
    print(f"{'step':<42} {'RSS MB':>8} {'peak MB':>8}")
    print(f"{'python started':<42} {start_rss:>8.0f}")
    for label, rss, step_peak in steps:
        print(f"{label:<42} {rss:>8.0f} {step_peak:>8.0f}")
    base = steps[0][1]
    backbones_mb = steps[len(names)][1] - base
    print(f"peak RSS {peak:.0f} MB; over the TF baseline: {peak - base:.0f} MB "
          f"(the three Lite backbones: {backbones_mb:.0f} MB; training the head: the rest)")
    result = {
        "name": "memory",
        "machine": common.machine(),
        "steps": [{"step": s, "rss_mb": round(r, 1), "peak_mb": round(p, 1)} for s, r, p in steps],
        "summary": {"peak_rss_mb": round(peak, 1), "tf_baseline_mb": round(base, 1),
                    "over_baseline_mb": round(peak - base, 1),
                    "three_lite_backbones_mb": round(backbones_mb, 1)},
        "final_head_loss": loss,
    }
    common.write_results("memory", result, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
