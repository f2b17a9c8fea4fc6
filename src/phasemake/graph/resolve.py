"""Resolving callback references (``"models/my.py:coalescent"`` or ``"pkg.mod:name"``)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import linecache
import os
import sys
from pathlib import Path

from phasemake.core.errors import ModelError
from phasemake.graph.model import Model, as_model

__all__ = ["load_model"]


def _import_file(path: Path) -> object:
    name = f"phasemake_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the model file can import its sibling helpers
    linecache.checkcache(str(path))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import model file {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ModelError(
            f"importing model file {path} failed: {type(err).__name__}: {err}"
        ) from err
    return module


def load_model(ref: str, *, base_dir: str | os.PathLike[str] | None = None) -> Model:
    """Load the model a callback reference points at.

    Parameters
    ----------
    ref
        ``"path/to/file.py:name"`` (relative to ``base_dir``) or ``"package.module:name"``;
        ``name`` may be dotted (``"module:registry.coalescent"``). A file is executed anew
        on every call, so edits are picked up.
    base_dir
        Directory that relative file paths are resolved against (default: the current
        working directory).

    Returns
    -------
    Model

    Raises
    ------
    ModelError
        If the file or module cannot be imported, the name does not exist, or it is not a
        :func:`phasemake.model`.

    Examples
    --------
    >>> load_model("phasemake.models:kingman").parameters
    ('coal',)
    """
    if not isinstance(ref, str) or ":" not in ref:
        raise ModelError(
            f"callback reference {ref!r} must look like 'path/to/file.py:name' or "
            "'package.module:name'"
        )
    where, _, attr = ref.rpartition(":")
    if not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ModelError(f"callback reference {ref!r} has no valid name after ':'")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = (Path(base_dir or os.getcwd()) / where).resolve()
        if not path.is_file():
            raise ModelError(
                f"model file {path} (from callback reference {ref!r}) does not exist; paths "
                "are relative to the working directory"
            )
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise ModelError(f"cannot import module {where!r} from {ref!r}: {err}") from err
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(k for k, v in vars(module).items() if isinstance(v, Model))
            raise ModelError(
                f"{where} has no attribute {attr!r} (from {ref!r}); models defined there: "
                f"{found or 'none'}"
            )
        obj = getattr(obj, part)
    return as_model(obj, what=f"callback reference {ref!r} names")
