"""Find a variant's function and what the report records about it: the import path, the file and its
SHA-256, the version of the package it comes from."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pathlib
import sys
from importlib import metadata

from .check import checked_attend

ENTRY_POINT_GROUP = "qflash_eval.modes"


def is_variant_spec(name: str) -> bool:
    """'package.module:function' or 'path/to/file.py:function'."""
    module, sep, function = name.rpartition(":")
    return bool(sep and module and function.isidentifier())


def entry_point_modes() -> dict[str, str]:
    """{mode name: 'module:function'} that installed packages register under ENTRY_POINT_GROUP."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def variant_fields(name: str) -> dict:
    """The fields of modes.Mode for a variant named by its spec or by an entry point's name. Raises
    ValueError naming what could not be found."""
    spec = entry_point_modes().get(name, name)
    if not is_variant_spec(spec):
        raise ValueError(f"{name!r} is neither a mode nor a variant ('package.module:function' or "
                         "'file.py:function')")
    fn, origin = load_function(spec)
    origin["entry_point"] = name if spec != name else None
    return {"name": name, "description": f"user variant {spec}", "attend": checked_attend(name, fn),
            "report_fields": lambda config, device: dict(origin)}


def load_function(spec: str):
    """(the callable, what the report records) of 'module:function' or 'file.py:function'."""
    target, _, function = spec.rpartition(":")
    if target.endswith(".py"):
        path = pathlib.Path(target).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"variant {spec}: no file {path}")
        module_name = "qflash_variant_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
        origin = {"variant": spec, "file": str(path), "file_sha256": _sha256(path), "package_version": None}
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"variant {spec}: cannot import {target} ({err})") from err
        file = getattr(module, "__file__", None)
        origin = {"variant": spec, "file": file, "file_sha256": _sha256(pathlib.Path(file)) if file else None,
                  "package_version": _package_version(target)}
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ValueError(f"variant {spec}: {target} has no function {function!r}")
    return fn, origin


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_version(module: str):
    top = module.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None
