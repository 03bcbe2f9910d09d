"""A SavedModel is a program, not data: what TransferLab checks before it loads one.

Its graphs may read, write, list and delete files (ReadFile, WriteFile, MatchingFiles, DeleteFile,
MergeV2Checkpoints, …), run Python (PyFunc), talk to the network or print to a file, and
`safe_mode` for `.keras` files does not cover them. So a TF Hub handle or local SavedModel is loaded
only when both hold:

* **where it lives**: a URL (downloaded by `tensorflow_hub` into its cache), or a folder under one of
  the operator's `TRANSFERLAB_HUB_ROOTS` (default: the local TF Hub cache). Folders a visitor can
  write (uploads, unpacked datasets, runs, the data cache) are refused even when a root holds them;
* **what it runs**: every op of every graph and function that loading or calling it can run is in
  `savedmodel_ops.txt`, an allow-list of pure tensor ops (math, nn, array, image, string, control flow,
  variables, random) written out from TensorFlow's op modules; anything else is refused with a
  message naming the op. The checkpoint ops of the SavedModel's own save/restore functions are
  accepted only where nothing but the saver reaches them (TransferLab never runs those functions:
  variables are restored by TensorFlow's loader).

The check reads `saved_model.pb` as a protocol buffer; nothing of the model is executed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from lib.errors import TransferLabError
from lib.storage import cache_dir, runs_dir

HUB_ROOTS_ENV = "TRANSFERLAB_HUB_ROOTS"
OPS_FILE = Path(__file__).with_name("savedmodel_ops.txt")
SAVED_MODEL_FILE = "saved_model.pb"
# Ops that only a SavedModel's saver function may hold (it writes and reads checkpoints).
CHECKPOINT_OPS = frozenset({
    "SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec", "StringJoin",
    "StaticRegexFullMatch", "Select", "SelectV2", "Identity", "IdentityN", "NoOp", "Const", "Pack",
})
# Never allowed, whatever the allow-list file says: file system, Python, network, logging to files.
DENIED_PATTERN = re.compile(
    r"File|Save|Restore|Checkpoint|PyFunc|Summary|Writer|Reader|Dataset|Iterator|Rpc|Collective|"
    r"Send|Recv|Debug|Print|ImmutableConst|RecordInput|RemoteCall"
)
# Visitor-writable folders under the cache, never accepted as model folders.
VISITOR_FOLDERS = ("uploads", "datasets")
MAX_LISTED_OPS = 5


@cache
def allowed_ops() -> frozenset[str]:
    """The allow-list of pure tensor ops (one op name a line in `savedmodel_ops.txt`)."""
    names = {line.strip() for line in OPS_FILE.read_text().splitlines() if line.strip()}
    return frozenset(n for n in names if not DENIED_PATTERN.search(n))


def hub_roots() -> list[Path]:
    """The folders local SavedModels may come from: `TRANSFERLAB_HUB_ROOTS` (separated by
    `os.pathsep`), or by default the TF Hub cache that URL handles download into."""
    configured = os.environ.get(HUB_ROOTS_ENV, "").strip()
    if configured:
        return [Path(p).expanduser().resolve() for p in configured.split(os.pathsep) if p.strip()]
    return [hub_download_root()]


def hub_download_root() -> Path:
    """Where `tensorflow_hub` keeps downloaded models (`TFHUB_CACHE_DIR`, or its temp default)."""
    from tensorflow_hub import resolver

    return Path(resolver.tfhub_cache_dir(use_temp=True)).expanduser().resolve()


def visitor_folders() -> list[Path]:
    """Folders a visitor of the app can write: never model folders."""
    cache = cache_dir().resolve()
    return [cache / name for name in VISITOR_FOLDERS] + [runs_dir().resolve()]


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_model_folder(folder: str | os.PathLike, *, roots: Iterable[Path] | None = None) -> Path:
    """Returns the resolved folder when a SavedModel may be loaded from it.

    Args:
        folder: a local SavedModel folder.
        roots: allowed roots. Defaults to `hub_roots()`.

    Raises:
        TransferLabError: the folder is under a visitor-writable folder, or under no allowed root.
            The message never lists what the folder holds.
    """
    path = Path(folder).expanduser().resolve()
    for forbidden in visitor_folders():
        if _is_within(path, forbidden):
            raise TransferLabError(
                f"Refusing the model folder `{folder}`: it is inside {forbidden}, where visitors' "
                "uploads and datasets are kept. A SavedModel is a program; TransferLab loads one only "
                f"from a folder the operator trusts ({HUB_ROOTS_ENV})."
            )
    roots = list(hub_roots() if roots is None else roots)
    if not any(_is_within(path, root) for root in roots):
        shown = ", ".join(str(r) for r in roots) or "none"
        raise TransferLabError(
            f"Refusing the model folder `{folder}`: local SavedModels load only from {HUB_ROOTS_ENV} "
            f"(now: {shown}). A SavedModel is a program that can read and write files, so the "
            f"operator lists the folders they trust, e.g. `{HUB_ROOTS_ENV}=/srv/models`."
        )
    return path


def _called_functions(nodes, library_names: set[str]) -> set[str]:
    """Names of library functions the nodes call: as op types, or through function attributes."""
    called = set()
    for node in nodes:
        if node.op in library_names:
            called.add(node.op)
        for attr in node.attr.values():
            if attr.HasField("func"):
                called.add(attr.func.name)
            if attr.HasField("list"):
                called.update(f.name for f in attr.list.func)
    return called & library_names


def _closure(start: set[str], calls: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(calls.get(name, ()))
    return seen


def forbidden_ops(saved_model_pb: bytes) -> dict[str, str]:
    """Finds every op a SavedModel holds outside the allow-list.

    Args:
        saved_model_pb: the bytes of `saved_model.pb`.

    Returns:
        op name -> the graph or function it sits in; empty when the model is pure tensor code.

    Raises:
        TransferLabError: the bytes are not a SavedModel.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(saved_model_pb)
    except DecodeError as e:
        raise TransferLabError(f"{SAVED_MODEL_FILE} is not a readable SavedModel ({e}).") from e
    allowed, found = allowed_ops(), {}
    for meta in saved.meta_graphs:
        functions = {f.signature.name: f for f in meta.graph_def.library.function}
        names = set(functions)
        calls = {name: _called_functions(f.node_def, names) for name, f in functions.items()}
        saver_nodes = {meta.saver_def.save_tensor_name.split(":")[0], meta.saver_def.restore_op_name}
        saver_nodes.discard("")
        graph_nodes = [n for n in meta.graph_def.node if n.name not in saver_nodes]
        saver_only = _closure(_called_functions(
            [n for n in meta.graph_def.node if n.name in saver_nodes], names), calls)
        # Anything reachable from a function outside the saver's closure can run when the model runs.
        strict = _closure({n for n in names if n not in saver_only}
                          | _called_functions(graph_nodes, names), calls)
        for node in graph_nodes:
            if node.op not in allowed and node.op not in names:
                found.setdefault(node.op, "the top-level graph")
        for name, function in functions.items():
            extra = frozenset() if name in strict else CHECKPOINT_OPS
            for node in function.node_def:
                if node.op not in names and node.op not in extra and node.op not in allowed:
                    found.setdefault(node.op, f"function `{name}`")
    return found


def check_saved_model(folder: str | os.PathLike) -> None:
    """Refuses a SavedModel that holds any op outside the allow-list (nothing of it is run).

    Args:
        folder: the SavedModel folder.

    Raises:
        TransferLabError: no `saved_model.pb`, or an op that is not pure tensor code (named in the
            message, with where it sits).
    """
    pb = Path(folder) / SAVED_MODEL_FILE
    if not pb.is_file():
        raise TransferLabError(f"`{folder}` has no {SAVED_MODEL_FILE}, so it is not a SavedModel.")
    bad = forbidden_ops(pb.read_bytes())
    if bad:
        listed = "; ".join(f"`{op}` in {where}" for op, where in sorted(bad.items())[:MAX_LISTED_OPS])
        more = f" and {len(bad) - MAX_LISTED_OPS} more" if len(bad) > MAX_LISTED_OPS else ""
        raise TransferLabError(
            f"Refusing the SavedModel at `{folder}`: it contains ops that are not pure tensor "
            f"computation ({listed}{more}). Such ops can read, write or delete files, run code or use "
            "the network when the model runs, so TransferLab does not load it."
        )
