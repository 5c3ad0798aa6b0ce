"""Reading torch files from disk without running their code: the one loader every command uses.

A ``.ckpt`` or weights file is a pickle inside a zip. Unpickled in full (``weights_only=False``), it may name
any Python callable (``os.system``...) and have it called while loading: a checkpoint shared by a colleague
or downloaded with a paper would run whatever it holds. ``load_torch_file`` therefore unpickles with torch's
restricted unpickler (``weights_only=True``), which builds only tensors, numbers, strings, ``None`` and the
containers ``dict``, ``OrderedDict``, ``list``, ``tuple`` and ``set``. That is everything fastpose and
Lightning write: the model and optimizer state, the loops' progress, the callbacks' state and the run's
config, stored as a plain dict. No type is registered beyond torch's default list.

| what the file holds                      | result                                                       |
| ---------------------------------------- | ------------------------------------------------------------ |
| plain tensors, numbers, strings, containers | the object                                                 |
| any other global (a class, a function)   | ``CheckpointRefused``: one line naming the file and the global |
| not a torch file, truncated, empty       | ``FastposeError``: "cannot read <what> <path>: ..."           |
| a directory, FIFO, device, missing path  | ``FastposeError`` before the file is opened                   |

Both errors exit with code 2 (``fastpose.errors``); callers load before they write anything.
"""

from __future__ import annotations

import pickle
import re
import stat
from pathlib import Path
from typing import Any

import torch

from fastpose.errors import FastposeError


class CheckpointRefused(FastposeError):
    """The file needs more than plain data to load (a class or function it would call): never loaded."""


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """The object saved in ``path`` (tensors on the CPU, memory-mapped when the file is a zip archive),
    loaded with ``weights_only=True``; ``what`` names the file in errors ("checkpoint", "weights file")."""
    path = Path(path)
    shown = repr(str(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FastposeError(f"{what} {shown} does not exist") from None
    except OSError as exc:
        raise FastposeError(f"{what} {shown}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise FastposeError(f"{what} {shown} is not a regular file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        name = _refused_global(str(exc))
        if name is not None:
            raise CheckpointRefused(
                f"refused {what} {shown}: loading it would call {name}; fastpose loads only tensors, numbers, "
                "strings and containers from files") from None
        reason = _REASON.search(str(exc))
        detail = reason.group(1).strip() if reason else _first_line(exc)
        raise FastposeError(f"cannot read {what} {shown}: not a file torch wrote ({detail})") from None
    except Exception as exc:  # noqa: BLE001 - a truncated, empty or foreign file is the user's to know about
        raise FastposeError(f"cannot read {what} {shown}: {_first_line(exc)}") from None


def _is_zip(path: Path) -> bool:
    """torch's own format since 1.6 (mmap works only on it); older files are a bare pickle stream."""
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_REASON = re.compile(r"WeightsUnpickler error:\s*(.+)")


def _refused_global(message: str) -> str | None:
    """The callable or class torch's restricted unpickler refused (``posix.system``...), or None when the file
    named none (it is broken rather than hostile: a bad opcode, a truncated stream)."""
    match = _GLOBAL.search(message)
    return match.group(1) if match else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def state_mismatch(model: torch.nn.Module, state: dict[str, Any], ignore: tuple[str, ...] = (),
                   may_miss: tuple[str, ...] = ()) -> list[str]:
    """What keeps ``state`` from loading strictly into ``model``: a list of phrases such as
    ``"2 missing: a.weight, b.bias"`` (empty when it fits). Keys of ``state`` starting with a prefix in
    ``ignore`` are dropped first; keys of ``model`` starting with one in ``may_miss`` may be absent."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(ignore)} if ignore else state
    missing = [k for k in own if k not in state and not (may_miss and k.startswith(may_miss))]
    unexpected = [k for k in state if k not in own]
    kinds = [f"{k} ({type(v).__name__})" for k, v in state.items() if k in own and not isinstance(v, torch.Tensor)]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if isinstance(state.get(k), torch.Tensor) and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("not a tensor", kinds),
                        ("shape mismatch", shapes)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    return parts
