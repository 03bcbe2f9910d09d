"""Look inside results on disk: what a job on any worker leaves in its folder for the page to draw.

    <job>/inside_result.npz   the arrays (images, perturbation, heatmap, frames), numeric only
    <job>/inside_result.json  everything else, plus which arrays belong where

Nothing is pickled: arrays are saved with `np.savez` from numeric arrays and read back with
`allow_pickle=False`, the rest is JSON. Both files are written atomically, the JSON last, so a
reader that finds the JSON finds whole arrays beside it. `load_result` rebuilds the same objects
the functions returned (`AttackResult`, `SweepResult`, `GradCamResult`, `{"result": IdealResult,
"label"}`, the TV comparison's dict), so a page draws a job's result the same whichever process
ran it.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import TransferLabError
from lib.runs import read_json, write_json
from lib.storage import atomic_write

RESULT_JSON = "inside_result.json"
RESULT_NPZ = "inside_result.npz"
FORMAT = 1
ATTACK, SWEEP, GRADCAM, IDEAL, COMPARE = "attack", "sweep", "gradcam", "ideal", "compare"
NUMERIC_KINDS = "biuf"  # bool, int, unsigned, float: what `np.savez` stores without pickling


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and small arrays inside plain fields (top-k probabilities)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _numeric(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"Result array `{name}` has dtype {array.dtype}; only numbers are saved.")
    return array


# ----- one object <-> (plain fields, arrays) -------------------------------------------------------

def split_fields(obj, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """A result dataclass's plain fields; its arrays go into `arrays` under `prefix + name`.

    An `IdealResult`'s frames become one `(N, S, S, 3)` uint8 array and their steps a list, and
    its settings a dict.
    """
    plain = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[prefix + f.name] = _numeric(prefix + f.name, value)
        elif f.name == "frames":
            plain["frame_steps"] = [int(step) for step, _ in value]
            if value:
                arrays[prefix + "frames"] = np.stack([np.asarray(img, np.uint8) for _, img in value])
        elif is_dataclass(value):
            plain[f.name] = asdict(value)
        else:
            plain[f.name] = value
    return plain


def join_fields(cls, plain: dict, arrays, prefix: str):
    """The dataclass `cls` back from `split_fields`' output."""
    from lib.inside.ideal import IdealSettings

    values = dict(plain)
    for f in fields(cls):
        key = prefix + f.name
        if key in arrays.files:
            values[f.name] = arrays[key]
    if "frame_steps" in values:
        steps = values.pop("frame_steps")
        stack = arrays[prefix + "frames"] if steps else []
        values["frames"] = [(int(s), np.asarray(img)) for s, img in zip(steps, stack, strict=True)]
    if isinstance(values.get("settings"), dict):
        values["settings"] = IdealSettings(**values["settings"])
    return cls(**values)


def encode(kind: str, result) -> tuple[dict, dict[str, np.ndarray]]:
    """`(plain, arrays)` for a result of `kind` (one of ATTACK, SWEEP, GRADCAM, IDEAL, COMPARE)."""
    arrays: dict[str, np.ndarray] = {}
    if result is None:
        return {"empty": True}, arrays
    if kind in (ATTACK, SWEEP, GRADCAM):
        return {"fields": split_fields(result, "", arrays)}, arrays
    if kind == IDEAL:
        return {"label": result["label"], "fields": split_fields(result["result"], "", arrays)}, arrays
    if kind == COMPARE:
        items = {}
        for key, item in result.items():
            items[key] = {**{k: v for k, v in item.items() if k != "result"},
                          "fields": split_fields(item["result"], f"{key}.", arrays)}
        return {"items": items}, arrays
    raise TransferLabError(f"Received `kind={kind!r}`; Look inside results are "
                           f"{', '.join((ATTACK, SWEEP, GRADCAM, IDEAL, COMPARE))}.")


def decode(kind: str, plain: dict, arrays):
    """The result object back from `encode`'s output (`arrays` is an open `np.load` file)."""
    from lib.inside.attacks import AttackResult, SweepResult
    from lib.inside.gradcam import GradCamResult
    from lib.inside.ideal import IdealResult

    if plain.get("empty"):
        return None
    if kind in (ATTACK, SWEEP, GRADCAM):
        cls = {ATTACK: AttackResult, SWEEP: SweepResult, GRADCAM: GradCamResult}[kind]
        return join_fields(cls, plain["fields"], arrays, "")
    if kind == IDEAL:
        return {"result": join_fields(IdealResult, plain["fields"], arrays, ""),
                "label": plain["label"]}
    if kind == COMPARE:
        out = {}
        for key, item in plain["items"].items():
            rest = {k: v for k, v in item.items() if k != "fields"}
            out[key] = {"result": join_fields(IdealResult, item["fields"], arrays, f"{key}."), **rest}
        return out
    raise TransferLabError(f"Received a Look inside result of kind {kind!r}, which this version "
                           "cannot read.")


# ----- the folder --------------------------------------------------------------------------------

def save_result(run_dir: Path | str, kind: str, result) -> None:
    """Writes a Look inside result into a job folder: arrays first, the JSON that names them last.

    Args:
        run_dir: the job's folder.
        kind: ATTACK, SWEEP, GRADCAM, IDEAL or COMPARE.
        result: what the function returned (None: a job stopped before it had anything).
    """
    run_dir = Path(run_dir)
    plain, arrays = encode(kind, result)

    def write(f) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        f.write(buffer.getvalue())

    atomic_write(run_dir / RESULT_NPZ, write)
    # numpy scalars become plain numbers here (`write_json` would turn them into strings)
    write_json(run_dir / RESULT_JSON, json.loads(json.dumps(
        {"format": FORMAT, "kind": kind, **plain}, default=_plain)))


def has_result(run_dir: Path | str) -> bool:
    """True once a job folder holds a whole result."""
    return (Path(run_dir) / RESULT_JSON).is_file()


def load_result(run_dir: Path | str):
    """The Look inside result a job left in its folder, as the function returned it.

    Raises:
        TransferLabError: the folder holds no (readable) result.
    """
    run_dir = Path(run_dir)
    plain = read_json(run_dir / RESULT_JSON)
    if plain is None:
        raise TransferLabError(f"The job in {run_dir.name} left no result to show.")
    try:
        with np.load(run_dir / RESULT_NPZ, allow_pickle=False) as arrays:
            return decode(str(plain.get("kind")), plain, arrays)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TransferLabError(f"The result of job {run_dir.name} cannot be read ({e}).") from e
