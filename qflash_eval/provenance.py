"""What produced a result: package versions, device, commit, and a fingerprint of the source."""
from __future__ import annotations

import hashlib
import pathlib
import platform
import subprocess
from importlib import metadata
from typing import Optional

PACKAGES = ("torch", "triton", "timm", "datasets", "accelerate", "safetensors", "numpy", "pillow")
ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE_GLOBS = ("kernels/**/*.py", "qflash_eval/**/*.py", "eval.py", "configs/*.toml")


def package_versions() -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = platform.python_version()
    return versions


def provenance(device_name: str, world_size: int) -> dict:
    return {"device": device_name, "processes": world_size, "versions": package_versions(), "commit": git_commit(),
            "source_sha256": source_fingerprint(ROOT)}


def source_fingerprint(root: pathlib.Path) -> str:
    """SHA-256 (16 hex digits) over the code that produces results: identifies it where git cannot (a copy
    of a working tree, an uncommitted change, an installed wheel)."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in SOURCE_GLOBS for p in root.glob(pattern)}):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def git_commit() -> Optional[str]:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode:
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
