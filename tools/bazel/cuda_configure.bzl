"""Repository rule that detects a local CUDA toolkit.

It writes `@local_cuda//:defs.bzl` with `HAS_CUDA` and, when a toolkit is
found, a `cudart_static` library so that binaries built here run on any GPU
machine with a driver. Set `--repo_env=STRATA_CUDA=0` to build without CUDA
even where a toolkit is installed; `CUDA_PATH` points at a toolkit elsewhere
than /usr/local/cuda.
"""

_CUDART_BUILD = """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "cudart_static",
    srcs = ["lib64/libcudart_static.a"],
    hdrs = glob(["include/*.h", "include/*.hpp", "include/crt/**"]),
    includes = ["include"],
    linkopts = ["-ldl", "-lrt", "-lpthread"],
)

# cuBLAS, linked dynamically (its static form is hundreds of MB): binaries
# that use it find libcublas.so.13 through the rpath here, or LD_LIBRARY_PATH
# on a GPU machine (its CUDA toolkit, or the nvidia-cublas wheel).
cc_library(
    name = "cublas",
    hdrs = glob(["include/cublas*.h"]),
    includes = ["include"],
    linkopts = ["-L%{cuda}/lib64", "-lcublas", "-Wl,-rpath,%{cuda}/lib64"],
)

filegroup(
    name = "nvcc",
    srcs = ["bin/nvcc"],
)
"""

_NO_CUDA_BUILD = """
package(default_visibility = ["//visibility:public"])
"""

def _cuda_configure_impl(ctx):
    enabled = ctx.os.environ.get("STRATA_CUDA", "1") != "0"
    cuda_path = ctx.os.environ.get("CUDA_PATH", "/usr/local/cuda")
    nvcc = ctx.path(cuda_path + "/bin/nvcc")
    cudart = ctx.path(cuda_path + "/lib64/libcudart_static.a")
    has_cuda = enabled and nvcc.exists and cudart.exists
    if has_cuda:
        ctx.symlink(cuda_path + "/include", "include")
        ctx.symlink(cuda_path + "/lib64", "lib64")
        ctx.symlink(cuda_path + "/bin", "bin")
        ctx.file("BUILD", _CUDART_BUILD.replace("%{cuda}", cuda_path))
    else:
        ctx.file("BUILD", _NO_CUDA_BUILD)
    ctx.file("defs.bzl", "HAS_CUDA = %s\nNVCC = %r\n" % (has_cuda, str(nvcc) if has_cuda else ""))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["STRATA_CUDA", "CUDA_PATH"],
    local = True,
)
