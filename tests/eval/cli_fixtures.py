"""The command-line tests' shared pieces: random-weight DeiT-Tiny weights and a dozen synthetic images."""
import pathlib

import pytest
import timm
import torch
from PIL import Image

from qflash_eval.data import imagenet_wnids

ROOT = pathlib.Path(__file__).resolve().parents[2]
WNIDS = imagenet_wnids()


@pytest.fixture(scope="module")
def model_state():
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict()


@pytest.fixture(scope="module")
def weights(tmp_path_factory, model_state):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("w") / "deit_tiny.safetensors"
    save_file(model_state, str(path))
    return path


def make_folder(root: pathlib.Path, n: int = 12, bad: dict = None) -> pathlib.Path:
    """n images named by wnid; bad maps a position to the bytes of an unreadable file there."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = root / f"{WNIDS[i * 37 % 1000]}_{i:03d}.JPEG"
        if bad and i in bad:
            f.write_bytes(bad[i])
        else:
            Image.new("RGB", (72, 64), (20 * i % 255, 90, 200 - 10 * i)).save(f)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data") / "imgs")


def base(weights, data, out, *extra):
    return ["--model", "deit_tiny", "--weights", str(weights), "--data", str(data), "--mode", "fp32",
            "--results", str(out), "--no-progress", "-j", "0", *extra]


def errors_of(capsys) -> str:
    return capsys.readouterr().err
