"""The wheel a user gets from `pip install .` or `pip install git+...` works on its own: configs included."""
import pathlib
import subprocess
import sys
import zipfile

import pytest

from conftest import DEIT_TINY_WEIGHTS, SAMPLE_IMAGES, require_shared

ROOT = pathlib.Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_wheel_evaluates_an_alias_with_the_checkout_out_of_the_way(tmp_path):
    require_shared()
    try:
        import setuptools  # noqa: F401 - present: build without a second environment
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("qflash_eval-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "qflash_eval/configs/models.toml" in names and "qflash_eval/configs/presets.toml" in names
    for package in ("qflash_kernels/jit/", "qflash_kernels/peers/", "qflash_kernels/reference/", "qflash_eval/swap/",
                    "qflash_eval/diagnose/", "qflash_eval/data/"):
        assert any(n.startswith(package) for n in names), f"{package} missing from the wheel"
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys, qflash_eval, qflash_kernels\n"
        f"assert qflash_eval.__file__.startswith({str(site)!r}), qflash_eval.__file__\n"
        f"assert qflash_kernels.__file__.startswith({str(site)!r}), qflash_kernels.__file__\n"
        "from qflash_eval.cli import main\n"
        f"sys.exit(main(['--model', 'DeiT-T', '--weights', {str(DEIT_TINY_WEIGHTS)!r}, '--data', "
        f"{str(SAMPLE_IMAGES)!r}, '--mode', 'fp32', '--num-samples', '4', '--no-progress', '-j', '0', "
        f"'--results', {str(tmp_path / 'out' / 'r.json')!r}]))\n"
    )
    # PYTHONPATH comes before the editable install's finder; the working directory is not the checkout
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "r.json").is_file() and "deit_tiny" in done.stdout
