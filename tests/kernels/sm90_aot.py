"""Compile the Gluon Hopper kernel for sm90 without a GPU; prints counts of PTX instructions as JSON.

python tests/kernels/sm90_aot.py BLOCK_M EARLY_SCORE   (run without TRITON_INTERPRET)
"""
import json
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.runtime.jit import mangle_type

from qflash_kernels.gluon.qflash_sm90 import qflash_sm90_kernel as kernel


def compile_for_sm90(block_m: int, early_score: bool):
    z, h, n, d, n_pad = 2, 3, 197, 64, 208
    q8 = torch.zeros(z * h * n, d, dtype=torch.int8)
    vt8 = torch.zeros(z * h * d, n_pad, dtype=torch.int8)
    layout = gl.NVMMASharedLayout.get_default_for([64, 64], gl.int8)
    out = torch.zeros(z, n, h, d, dtype=torch.float16).transpose(1, 2)
    args = [TensorDescriptor(q8, [z * h * n, d], [d, 1], [block_m, d], layout),
            TensorDescriptor(q8, [z * h * n, d], [d, 1], [64, d], layout),
            TensorDescriptor(vt8, [z * h * d, n_pad], [n_pad, 1], [d, 64], layout),
            out, torch.zeros(16, z, dtype=torch.int32), z, h, n, *out.stride()]
    names = list(kernel.arg_names)
    signature = {name: mangle_type(arg) for name, arg in zip(names, args)}
    constants = {"HEAD_DIM": d, "BLOCK_M": block_m, "BLOCK_N": 64, "EARLY_SCORE": early_score,
                 "num_warps": block_m // 16}
    signature.update({name: "constexpr" for name in constants})
    source = GluonASTSource(kernel, signature, {(names.index(k),): v for k, v in constants.items()})
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": block_m // 16})


if __name__ == "__main__":
    ptx = compile_for_sm90(int(sys.argv[1]), bool(int(sys.argv[2]))).asm["ptx"]
    print(json.dumps({"int8_wgmma": ptx.count("wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8"),
                      "tma_loads": ptx.count("cp.async.bulk.tensor"), "shuffles": ptx.count("shfl.sync")}))
