"""The run recorder: the one writer of a run folder while it trains.

`RunRecorder` is a context manager that starts a run (config, labels, a running status and a
heartbeat thread), and finishes or fails it; `RunCallback` is the Keras callback that keeps a
phase's history and best checkpoint on disk while it trains. Training code hands them what to keep
and never writes run files itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import pandas as pd

from lib.runs import (
    CHECKPOINT_DIR,
    DONE,
    FAILED,
    HEAD_CHECKPOINT,
    HEARTBEAT_SECONDS,
    INTERRUPTED,
    MODEL_CHECKPOINT,
    MODEL_FILE,
    RUNNING,
    STOPPED,
    TB_DIR,
    WRITE_INTERVAL_S,
    save_model_atomic,
    utc_now,
    write_config,
    write_history,
    write_labels,
    write_metrics,
    write_status,
)
from lib.storage import atomic_save_weights


class RunRecorder:
    """Writes one run folder while it trains, so that training code never writes run files.

        with RunRecorder(run_dir, config, phase="frozen", class_names=names) as recorder:
            model.fit(..., callbacks=[..., recorder.callback(...)])
            recorder.finish(stopped=False, model=model, history=history, metrics=metrics)

    Entering writes `config.json` (and `labels.txt` for a new run), marks the run running and starts
    a daemon thread that renews the heartbeat every `heartbeat_s`, so a live run is never listed
    "interrupted", even inside a long epoch or feature extraction. An exception inside the block
    marks the run failed ("interrupted" for Ctrl-C) and propagates. `finish` and `fail` write the
    final status and stop the heartbeat; leaving the block stops it too.

    Args:
        run_dir: the run folder: a new one (see `make_run_dir`) or the run being continued.
        config: what `config.json` holds, written whole.
        phase: the phase starting now, shown in the status.
        class_names: the labels of a new run; None when continuing a run. Defaults to None.
        heartbeat_s: seconds between heartbeats. Defaults to None: `HEARTBEAT_SECONDS`.
    """

    def __init__(self, run_dir: Path | str, config: dict, *, phase: str,
                 class_names: Sequence[str] | None = None,
                 heartbeat_s: float | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.closed = False
        self._config, self._class_names = dict(config), class_names
        self._heartbeat_s = HEARTBEAT_SECONDS if heartbeat_s is None else heartbeat_s
        self._fields: dict = {"phase": phase}
        self._lock = threading.Lock()  # one status writer at a time: heartbeat or training thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunRecorder:
        write_config(self.run_dir, self._config)
        started = {}
        if self._class_names is not None:
            write_labels(self.run_dir, self._class_names)
            started = {"started": utc_now()}
        write_status(self.run_dir, RUNNING, **self._fields, **started)
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.run_dir.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and not self.closed:
            self.fail(exc)
        self._stop_heartbeat()
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            with self._lock:
                if not self._stop.is_set():
                    write_status(self.run_dir, RUNNING, **self._fields)

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def heartbeat_alive(self) -> bool:
        """Whether the heartbeat thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def update_config(self, fields: dict) -> None:
        """Adds settings to `config.json` (fine-tuning records its own on top of the run's)."""
        self._config.update(fields)
        write_config(self.run_dir, self._config)

    def note(self, **fields) -> None:
        """Facts for the status file (`phase`, `epoch`, `extracted`, ...), written with the next heartbeat."""
        with self._lock:
            self._fields.update(fields)

    def tensorboard_dir(self, phase: str) -> Path:
        """Where a phase's TensorBoard event files go: `<run>/tb/<phase>`."""
        return self.run_dir / TB_DIR / phase

    def save_head_checkpoint(self, head: keras.Model) -> None:
        """The frozen phase's checkpoint: the head's weights (the body is the backbone's)."""
        atomic_save_weights(head, self.run_dir / CHECKPOINT_DIR / HEAD_CHECKPOINT)

    def save_model_checkpoint(self, model: keras.Model) -> None:
        """A whole-classifier checkpoint (fine-tuning and scratch change the body too)."""
        save_model_atomic(model, self.run_dir / CHECKPOINT_DIR / MODEL_CHECKPOINT)

    def write_history(self, history: pd.DataFrame) -> None:
        write_history(self.run_dir, history)

    def save(self, model: keras.Model, history: pd.DataFrame, metrics: dict) -> None:
        """Writes history, model (once it has trained an epoch) and metrics; the run goes on."""
        write_history(self.run_dir, history)
        if not history.empty:
            save_model_atomic(model, self.run_dir / MODEL_FILE)
        write_metrics(self.run_dir, metrics)

    def finish(self, *, stopped: bool, model: keras.Model | None = None,
               history: pd.DataFrame | None = None, metrics: dict | None = None) -> None:
        """Saves what the run made (when given) and marks it done, or stopped by the person."""
        if model is not None and history is not None and metrics is not None:
            self.save(model, history, metrics)
        self._close(STOPPED if stopped else DONE, phase=None)

    def fail(self, error: BaseException) -> None:
        """Marks the run failed ("interrupted" for Ctrl-C, which is no fault of its settings)."""
        if self.run_dir.is_dir():
            status = INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED
            self._close(status, error=f"{type(error).__name__}: {error}")
        else:
            self._stop_heartbeat()

    def _close(self, status: str, **extra) -> None:
        self._stop.set()  # under the lock below, no heartbeat can follow the final status
        with self._lock:
            write_status(self.run_dir, status, **extra)
            self.closed = True
        self._stop_heartbeat()

    def callback(self, *, history: Callable[[], pd.DataFrame],
                 best_weights: Callable[[], list | None], save_checkpoint: Callable[[], None],
                 interval_s: float = WRITE_INTERVAL_S) -> RunCallback:
        """A Keras callback that keeps one phase's history and best checkpoint on disk (see `RunCallback`)."""
        return RunCallback(self, history=history, best_weights=best_weights,
                           save_checkpoint=save_checkpoint, interval_s=interval_s)


class RunCallback(keras.callbacks.Callback):
    """Keeps a phase's history and best-epoch checkpoint on disk while it trains.

    Writes at most every `interval_s` and once more when training ends. Place it after the callback
    that keeps the best weights, so it sees this epoch's best and, at the end, the restored model.

    Args:
        recorder: the run's recorder.
        history: returns the run's history so far (every phase).
        best_weights: returns the best epoch's weights so far, or None; a new list each time the
            best improves (the weights at the start of training need no checkpoint).
        save_checkpoint: writes the checkpoint from the model's current weights.
        interval_s: seconds between writes. Defaults to `WRITE_INTERVAL_S`.
    """

    def __init__(self, recorder: RunRecorder, *, history: Callable[[], pd.DataFrame],
                 best_weights: Callable[[], list | None], save_checkpoint: Callable[[], None],
                 interval_s: float = WRITE_INTERVAL_S) -> None:
        super().__init__()
        self.recorder, self.history, self.best_weights = recorder, history, best_weights
        self.save_checkpoint, self.interval_s = save_checkpoint, interval_s
        self._saved: list | None = None
        self._history_dirty = False
        self._last_checkpoint = self._last_history = -float("inf")

    def on_train_begin(self, logs=None):
        self._saved = self.best_weights()

    def on_epoch_end(self, epoch, logs=None):
        self._history_dirty = True
        self._write(force=False)

    def on_train_end(self, logs=None):
        self._write(force=True)

    def _write(self, *, force: bool) -> None:
        now = time.monotonic()
        best = self.best_weights()
        if best is not None and best is not self._saved and (
                force or now - self._last_checkpoint >= self.interval_s):
            # The checkpoint is the best epoch so far: swap its weights in just to save them.
            current = self.model.get_weights()
            self.model.set_weights(best)
            self.save_checkpoint()
            self.model.set_weights(current)
            self._saved, self._last_checkpoint = best, now
        if self._history_dirty and (force or now - self._last_history >= self.interval_s):
            history = self.history()
            self.recorder.write_history(history)
            if len(history):
                self.recorder.note(epoch=int(history["epoch"].iloc[-1]))
            self._history_dirty, self._last_history = False, now
