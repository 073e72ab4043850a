"""Reading torch.distributed.checkpoint (DCP) folders without running code from them.

DCP stores its index (`.metadata`) as a pickle and every non-tensor value (the trainer's
JSON state, optimizer hyper-parameters) as a `torch.save` blob that its default planner
reads with `weights_only=False`: a crafted checkpoint folder would run code on load. Every
DCP read in bltx goes through this module instead:

- `.metadata` is unpickled by `_MetadataUnpickler`, which resolves only DCP's own metadata
  classes, `torch.Size`, dtypes and layouts; anything else is refused with one line;
- non-tensor values are read with `torch.load(weights_only=True)` (plain containers,
  numbers, strings);
- DCP's tensor reads already use `weights_only=True`.

    meta = read_metadata(path)             # DCP Metadata, safely
    load_state(state, path)                # dcp.load, safely; CheckpointError on failure
"""

from __future__ import annotations

import errno
import io
import pickle
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint import default_planner
from torch.distributed.checkpoint.metadata import StorageMeta

from bltx.errors import CheckpointError

METADATA_FILE = ".metadata"

# Exact (module, name) pairs a DCP index may reference besides its metadata classes.
_ALLOWED = {
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # layout from its name: a dict lookup
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
    ("collections", "OrderedDict"),
}
_TORCH_VALUE_TYPES = (torch.dtype, torch.layout, torch.memory_format)


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles a DCP index, resolving only an allow-list of harmless names."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == dcp_metadata.__name__:
            # DCP's metadata dataclasses and enums: data holders, nothing runs on creation.
            obj = getattr(dcp_metadata, name, None)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        if module == "torch" and isinstance(getattr(torch, name, None), _TORCH_VALUE_TYPES):
            return getattr(torch, name)  # torch.float32 and friends
        raise pickle.UnpicklingError(f"it references {module}.{name}, which a checkpoint index never holds")


def _unpickle_metadata(data: bytes, where: Path) -> dcp_metadata.Metadata:
    try:
        meta = _MetadataUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # truncated, garbage, or a forbidden reference
        raise CheckpointError(
            f"refusing checkpoint index {where}: {_first_line(exc)}; it is corrupt or not a bltx "
            f"checkpoint (bltx never unpickles other objects); use another checkpoint"
        ) from None
    if not isinstance(meta, dcp_metadata.Metadata):
        raise CheckpointError(f"refusing checkpoint index {where}: it holds a {type(meta).__name__}, not DCP metadata")
    return meta


class SafeReader(dcp.FileSystemReader):
    """FileSystemReader whose index is read with the allow-list unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        path = Path(self._get_metadata_path(kwargs.get("rank")))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint index {path}: {exc.strerror or exc}") from None
        meta = _unpickle_metadata(data, path)
        # What FileSystemReader.read_metadata does after unpickling.
        if getattr(meta, "storage_meta", None) is None:
            meta.storage_meta = StorageMeta()
        meta.storage_meta.load_id = self.load_id
        return meta


class SafePlanner(default_planner.DefaultLoadPlanner):
    """DefaultLoadPlanner reading non-tensor values with `weights_only=True`."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            default_planner.set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


@contextmanager
def quiet_dcp():
    # DCP warns on every call that it assumes a single process when no process group exists;
    # that is exactly our single-process case, so the warning is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def read_metadata(path: str | Path) -> dcp_metadata.Metadata:
    """The DCP index of checkpoint folder `path`, read safely (CheckpointError otherwise)."""
    return SafeReader(str(path)).read_metadata()


def load_state(state: dict, path: str | Path) -> None:
    """`dcp.load(state, path)` with the safe reader and planner. Any failure, DCP's
    CheckpointException (a BaseException) included, becomes a one-line CheckpointError."""
    try:
        with quiet_dcp():
            dcp.load(state, storage_reader=SafeReader(str(path)), planner=SafePlanner())
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as exc:
        reason = describe(exc)
        if "Weights only load failed" in reason:  # torch's advice (weights_only=False) is unsafe
            reason = "a stored value is not plain data (bltx reads only tensors, numbers, strings and containers)"
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}; use another checkpoint") from None


def save_failure(exc: BaseException, path: str | Path) -> BaseException:
    """What a failed `dcp.save` should raise: KeyboardInterrupt when a rank was interrupted
    (DCP wraps even that into its CheckpointException), else a one-line CheckpointError."""
    failures = exc.failures if isinstance(exc, CheckpointException) else {}
    if isinstance(exc, KeyboardInterrupt) or any(isinstance(f[0], KeyboardInterrupt) for f in failures.values()):
        return KeyboardInterrupt()
    return CheckpointError(
        f"cannot write checkpoint {path}: {write_failure_reason(exc, Path(path).parent)}; free space "
        f"or fix the folder and run again (its partial files were removed; the previous "
        f"checkpoints are intact)"
    )


# What a short write looks like from torch.save: the zip writer checks its position, not
# errno ("[enforce fail at inline_container.cc] . unexpected pos 4416 vs 4310").
_SHORT_WRITE = ("unexpected pos", "No space left", "Disk quota exceeded", "File too large")


def write_failure_reason(exc: BaseException, folder: Path) -> str:
    """The reason of a failed write, named as the system's: a full disk says "no space left
    on device" (with what is free), whether it surfaced as errno 28 or as torch's
    position check; anything else is the error's informative line."""
    errnos = {e.errno for e in _chain(exc) if isinstance(e, OSError)}
    text = describe(exc)
    if errnos & {errno.ENOSPC, errno.EDQUOT, errno.EFBIG} or any(s in str(exc) for s in _SHORT_WRITE):
        free = _free_bytes(folder)
        if errno.EDQUOT in errnos or "quota" in str(exc):
            return "disk quota exceeded"
        if errno.EFBIG in errnos or "File too large" in str(exc):
            return "file too large for the filesystem or the process's file size limit"
        where = f" ({free / 2**20:.1f} MiB free on its filesystem)" if free is not None else ""
        return f"no space left on device{where}"
    return text


def _chain(exc: BaseException):
    """exc, its causes and contexts, and the per-rank failures DCP wraps."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]
        if isinstance(e, CheckpointException):
            todo += [f[0] if isinstance(f, tuple) else f for f in e.failures.values()]


def _free_bytes(folder: Path) -> int | None:
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def describe(exc: BaseException) -> str:
    """The informative line of a (possibly multi-rank, traceback-carrying) DCP error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error: " in ln]
    return errors[-1] if errors else (lines[0] if lines else type(exc).__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
