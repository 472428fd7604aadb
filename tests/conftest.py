"""Test set-up: the Triton kernel runs in the interpreter on CPU-only machines and natively on CUDA.

TRITON_INTERPRET must be set before the kernel modules are imported, so it is set here, first.
Random inputs come from a fixed default seed (QFLASH_TEST_SEED changes it); each test derives its own
seed from it and its name, and a failing test's report says both.
"""
import os
import pathlib
import zlib

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLE_IMAGES = SHARED / "datasets" / "imagenet-sample"
DEIT_TINY_WEIGHTS = SHARED / "weights" / "deit_tiny_patch16_224.safetensors"
OFFICIAL_QFLASH = SHARED / "peers" / "qflash_official"
DEFAULT_SEED = 20261201
BASE_SEED = int(os.environ.get("QFLASH_TEST_SEED", DEFAULT_SEED))


def pytest_report_header(config):
    return f"random inputs: QFLASH_TEST_SEED={BASE_SEED} (set it to run other inputs)"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def rng(request) -> torch.Generator:
    """A generator seeded from QFLASH_TEST_SEED and the test's id: reproducible, different per test."""
    seed = (BASE_SEED * 1_000_003 + zlib.crc32(request.node.nodeid.encode())) % 2**63
    request.node.qflash_seed = seed
    return torch.Generator().manual_seed(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and hasattr(item, "qflash_seed"):
        report.sections.append(("random inputs", f"QFLASH_TEST_SEED={BASE_SEED}; this test's generator seed "
                                                 f"{item.qflash_seed}"))


def require_shared():
    if not SAMPLE_IMAGES.is_dir() or not DEIT_TINY_WEIGHTS.is_file():
        pytest.skip(f"../shared is absent ({SHARED}): real-data tests need the sample images and weights")


@pytest.fixture
def clean_modes():
    """Modes that a test registers (variants, knobs, float layers) are gone after it."""
    from qflash_eval import modes

    before = dict(modes.MODES)
    yield
    modes.MODES.clear()
    modes.MODES.update(before)

