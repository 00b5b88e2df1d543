"""Benchmark targets of //tools/bench/kernels, only where CUDA is present."""

load("@local_cuda//:defs.bzl", "HAS_CUDA")
load("//tools/bazel:cuda.bzl", "cuda_library")

def attention_bench_targets():
    """The attention benchmark binary and its device-side random fill."""
    if not HAS_CUDA:
        return
    cuda_library(
        name = "fill",
        srcs = ["fill.cu"],
        hdrs = ["fill.h"],
        cu_hdrs = ["fill.h"],
    )
    native.cc_library(
        name = "bench_util",
        hdrs = ["bench_util.h"],
        deps = [
            "@local_cuda//:cudart_static",
            "@system//:absl",
        ],
    )
    native.cc_binary(
        name = "attention_bench",
        srcs = ["attention_bench.cc"],
        linkstatic = 1,
        deps = [
            ":bench_util",
            ":decode_shapes",
            ":fill",
            "//kernels:attention",
            "//kernels:attention_cpu",
        ],
    )
    native.cc_binary(
        name = "prefill_bench",
        srcs = ["prefill_bench.cc"],
        linkstatic = 1,
        deps = [
            ":bench_util",
            ":fill",
            "//kernels:attention_cpu",
            "//kernels:prefill",
        ],
    )
