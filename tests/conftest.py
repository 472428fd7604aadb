"""Test set-up: the Triton kernel runs in the interpreter on CPU-only machines and natively on CUDA.

TRITON_INTERPRET must be set before the kernel module is imported, so it is set here, first.
"""
import os
import pathlib

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE_IMAGES = SHARED / "datasets" / "imagenet-sample"
DEIT_TINY_WEIGHTS = SHARED / "weights" / "deit_tiny_patch16_224.safetensors"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def rng() -> torch.Generator:
    """A fresh seed every run (printed on failure via the test id is not possible, so it is logged)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"random seed {seed}")
    return torch.Generator().manual_seed(seed)


def require_shared():
    if not SAMPLE_IMAGES.is_dir() or not DEIT_TINY_WEIGHTS.is_file():
        pytest.skip(f"../shared is absent ({SHARED}): real-data tests need the sample images and weights")
