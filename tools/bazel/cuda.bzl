"""`cuda_library`: nvcc-compiled CUDA code as a C++ library.

Each `.cu` source is compiled by nvcc for sm_90a with a compute_90 PTX
fallback, position-independent, into an object that a `cc_library` links
together with the static CUDA runtime. Without a toolkit (see
cuda_configure.bzl) the macro defines nothing; BUILD files guard GPU targets
with `HAS_CUDA`.

`.cu` files hold device code and launchers that return `cudaError_t`; they
include only CUDA headers and our `.cuh` files, listed in `cu_hdrs`.
"""

load("@local_cuda//:defs.bzl", "HAS_CUDA", "NVCC")

CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90,code=compute_90",
]

def cuda_library(name, srcs, hdrs = [], cu_hdrs = [], deps = [], nvcc_flags = [], **kwargs):
    if not HAS_CUDA:
        return
    objs = []
    for src in srcs:
        base = src.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        obj = "_nvcc/%s/%s.pic.o" % (name, base)
        native.genrule(
            name = "%s_%s_nvcc" % (name, base),
            srcs = [src] + cu_hdrs,
            outs = [obj],
            # nvcc names its temporary files after its process id, which is
            # the same (2) in every sandboxed action: concurrent compiles
            # would share them. Each action gets a temporary folder of its own.
            cmd = " ".join([
                "tmp=$$(mktemp -d) && trap 'rm -rf \"$$tmp\"' EXIT && TMPDIR=$$tmp",
                NVCC,
                "-std=c++20",
                "-O3",
                "--expt-relaxed-constexpr",
                "-lineinfo",
                "-Xcompiler=-fPIC",
                "-I.",
                "-I$(GENDIR)",
            ] + CUDA_ARCH_FLAGS + nvcc_flags + [
                "-c",
                "$(location %s)" % src,
                "-o",
                "$@",
            ]),
            message = "nvcc %s" % src,
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        deps = deps + ["@local_cuda//:cudart_static"],
        linkstatic = 1,
        **kwargs
    )
