"""Two CPU processes give the same per-mode counts and per-image outcomes as one process.

The processes are started by torchrun (torch.distributed.run), whose environment accelerate reads
(multi-CPU, gloo); on GPUs `accelerate launch --num_processes N` sets up the same process group.
"""
import json
import os
import subprocess
import sys

import pytest
import timm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("w") / "deit_tiny_random.safetensors"
    save_file(timm.create_model("deit_tiny_patch16_224", pretrained=False).state_dict(), str(path))
    return path


def run_eval(data, weights, out, processes):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = launch + [os.path.join(repo, "eval.py"), "--model", "deit_tiny", "--weights", str(weights), "--data",
                    str(data), "--device", "cpu", "--mode", "fp32,qflash", "--no-fp16-reference", "--dtype", "float32",
                    "--qflash-backend", "reference", "--batch-size", "1", "--workers", "1", "--results",
                    str(out), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    # the failing rank's own message comes before torchrun's summary: show both ends
    assert done.returncode == 0, done.stderr[:3000] + "\n...\n" + done.stderr[-1500:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("kind", ["parquet", "folder"])
def test_two_processes_evaluate_every_image_once(tmp_path, weights, kind):
    from tools.synthetic_parquet import write

    data = tmp_path / "data"
    write(data, images=11, shards=3, width=120, height=100)  # 11 images: an uneven tail on purpose
    if kind == "folder":
        from qflash_eval.data import imagenet_wnids, open_source

        folder = tmp_path / "folder"
        folder.mkdir()
        wnids = imagenet_wnids()
        for record in open_source(str(data)).records():
            (folder / f"{wnids[record.label]}_{record.index}.JPEG").write_bytes(record.payload)
        data = folder
    one = run_eval(data, weights, tmp_path / "one.json", 1)
    two = run_eval(data, weights, tmp_path / "two.json", 2)
    assert two["provenance"]["processes"] == 2
    for mode in ("fp32", "qflash"):
        assert one["results"][mode]["count"] == two["results"][mode]["count"] == 11
        assert one["results"][mode]["correct_top1"] == two["results"][mode]["correct_top1"]
    # batch size 1: each image is computed alone, so the per-image outcomes must match exactly
    one_rows = (tmp_path / "one.predictions.csv").read_text()
    two_rows = (tmp_path / "two.predictions.csv").read_text()
    assert one_rows == two_rows
