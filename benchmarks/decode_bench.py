"""How fast the data path alone delivers batches: decode + transform in the DataLoader workers, no model.

python -m benchmarks.decode_bench --data DIR --model deit_tiny --workers 8 --batch-size 256 [--num-samples N]
Compare its images/s with eval.py's per-mode images/s to see whether a run is bound by decoding or by
the models (eval.py's report also gives the time its loop spent waiting for data).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from qflash_eval.config import resolve_model_name
from qflash_eval.data import make_loader, open_source
from qflash_eval.transforms import eval_data_config, eval_transform


def model_transform(name: str):
    """The eval transform of model `name`, from a model built on the meta device (no weights)."""
    import timm

    timm_name, _ = resolve_model_name(name)
    with torch.device("meta"):
        model = timm.create_model(timm_name.split(".")[0], pretrained=False)
    return eval_transform(eval_data_config(model))


def measure(data: str, model: str, workers: int, batch_size: int, num_samples=None, pin=False) -> dict:
    source = open_source(data, limit=num_samples)
    loader = make_loader(source, model_transform(model), batch_size, workers, pin=pin)
    start = time.perf_counter()
    arrivals, sizes = [], []
    for batch, _, _ in loader:
        arrivals.append(time.perf_counter() - start)
        sizes.append(batch.shape[0])
    images = sum(sizes)
    # steady rate: after every worker has delivered its first batch (start-up and prefetch behind us),
    # up to the last batch before the workers run dry
    k0, k1 = max(workers, 1), len(arrivals) - max(workers, 1)
    steady = sum(sizes[k0 + 1:k1 + 1]) / (arrivals[k1] - arrivals[k0]) if k1 > k0 + 1 else None
    return {
        "data": source.describe(), "images": images, "workers": workers, "batch_size": batch_size,
        "wall_s": round(arrivals[-1], 3) if arrivals else 0.0, "first_batch_s": round(arrivals[0], 3) if arrivals else None,
        "images_per_s": round(images / arrivals[-1], 1) if arrivals else None,
        "images_per_s_steady": round(steady, 1) if steady else None,
        "cpu_count": torch.multiprocessing.cpu_count(),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="deit_tiny", help="whose input transform to apply")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-samples", type=int)
    p.add_argument("--pin", action="store_true", help="pin batches (as eval.py does on CUDA)")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.data, args.model, args.workers, args.batch_size, args.num_samples, args.pin)))


if __name__ == "__main__":
    main()
