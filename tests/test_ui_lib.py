"""The lib functions the UI redesign added: the batched forward loop, uploads, job slots, and the
confusion-cell filter. No Streamlit here: these are plain lib calls."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from lib.errors import TransferLabError


def tiny_model(classes: int = 3) -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(inputs))


def test_predict_batches_matches_one_call_for_arrays_and_datasets():
    from lib.predict import predict_batches

    model = tiny_model()
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    whole = np.asarray(model(x, training=False))
    np.testing.assert_allclose(predict_batches(model, x, batch_size=3), whole, rtol=1e-5, atol=1e-6)
    pairs = [(x[:4], np.zeros(4)), (x[4:], np.zeros(3))]  # (images, labels) as a tf.data pipeline
    np.testing.assert_allclose(predict_batches(model, pairs), whole, rtol=1e-5, atol=1e-6)
    assert predict_batches(model, x[:0]).shape == (0, 3)


def test_predict_batches_rejects_a_bad_batch_size():
    from lib.predict import predict_batches

    with pytest.raises(ValueError, match="batch_size=0"):
        predict_batches(tiny_model(), np.zeros((2, 4), np.float32), batch_size=0)


def test_save_upload_is_named_by_content_and_stays_in_the_cache(cache_root):
    from lib.uploads import save_upload

    first = Path(save_upload("../../escape.zip", b"abc"))
    assert first.name == "escape.zip" and first.read_bytes() == b"abc"
    assert (cache_root / "uploads") in first.parents
    assert save_upload("escape.zip", b"abc") == str(first)
    assert save_upload("escape.zip", b"abd") != str(first)
    with pytest.raises(TransferLabError, match="needs a file name"):
        save_upload("", b"abc")


def test_job_slots_limit_and_no_limit():
    from lib.job_slots import DEFAULT_MAX_JOBS, make_job_slots, max_jobs

    assert make_job_slots(0) is None
    slots = make_job_slots(2)
    assert slots.acquire(blocking=False) and slots.acquire(blocking=False)
    assert not slots.acquire(blocking=False)
    assert max_jobs("3") == 3 and max_jobs("many") == DEFAULT_MAX_JOBS
    assert max_jobs("-1") == DEFAULT_MAX_JOBS


def test_cell_records_keeps_one_true_and_predicted_pair():
    from lib.data.sources import ImageRecord
    from lib.evaluate import cell_records

    records = [ImageRecord(path=f"{i}.jpg", label=label, source=f"{i}.jpg", sha1=str(i))
               for i, label in enumerate([0, 0, 1, 1])]
    picked = cell_records(records, [0, 1, 1, 0], true_index=0, pred_index=1)
    assert [r.path for r in picked] == ["1.jpg"]
    with pytest.raises(ValueError):
        cell_records(records, [0], 0, 0)
