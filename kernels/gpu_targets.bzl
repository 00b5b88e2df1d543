"""GPU targets of //kernels, defined only where a CUDA toolkit is present."""

load("@local_cuda//:defs.bzl", "HAS_CUDA")
load("//tools/bazel:cuda.bzl", "cuda_library")

def attention_gpu_targets():
    """CUDA kernels, their host API and the GPU tests (tag "gpu")."""
    if not HAS_CUDA:
        return
    cuda_library(
        name = "attention_cuda",
        srcs = ["attention.cu"],
        hdrs = ["attention_launch.h"],
        cu_hdrs = [
            "attention_launch.h",
            "attention_partial.cuh",
            "dependent_launch.cuh",
            "fast_div.h",
            "merge_state.cuh",
            "mma_ops.cuh",
            "prefill.cuh",
            "prefill_item.h",
            "prefill_launch.h",
            "prefill_wgmma.cuh",
            "wgmma_ops.cuh",
            "work_item.h",
        ],
        deps = [":attention_cpu"],
    )
    native.cc_library(
        name = "cuda_status",
        srcs = ["cuda_status.cc"],
        hdrs = ["cuda_status.h"],
        visibility = ["//visibility:public"],
        deps = [
            "@local_cuda//:cudart_static",
            "@system//:absl",
        ],
    )
    native.cc_library(
        name = "attention",
        srcs = ["attention.cc"],
        hdrs = ["attention.h"],
        deps = [
            ":attention_cpu",
            ":attention_cuda",
            ":prefill_cuda",
            ":cuda_status",
            ":workspace_upload",
            "@system//:absl",
        ],
    )
    cuda_library(
        name = "prefill_cuda",
        srcs = ["prefill.cu"],
        hdrs = ["prefill_launch.h"],
        cu_hdrs = [
            "dependent_launch.cuh",
            "fast_div.h",
            "mma_ops.cuh",
            "merge_state.cuh",
            "prefill.cuh",
            "prefill_item.h",
            "prefill_launch.h",
            "prefill_wgmma.cuh",
            "prefill_wide.cuh",
            "wgmma_ops.cuh",
        ],
        deps = [":attention_cpu"],
    )
    native.cc_library(
        name = "prefill",
        srcs = ["prefill.cc"],
        hdrs = ["prefill.h"],
        deps = [
            ":attention_cpu",
            ":cuda_status",
            ":prefill_cuda",
            ":workspace_upload",
            "@system//:absl",
        ],
    )
    native.cc_test(
        name = "prefill_gpu_test",
        size = "large",
        srcs = ["prefill_gpu_test.cc"],
        tags = ["gpu"],
        linkstatic = 1,
        deps = [
            ":attention_cpu",
            ":gpu_testing",
            ":prefill",
            ":prefill_testing",
            "@system//:gtest_main",
        ],
    )
    native.cc_library(
        name = "gpu_testing",
        testonly = 1,
        srcs = ["gpu_testing.cc"],
        hdrs = ["gpu_testing.h"],
        deps = [
            ":attention_cpu",
            "@local_cuda//:cudart_static",
            "@system//:gtest",
        ],
    )
    native.cc_test(
        name = "attention_api_test",
        srcs = ["attention_api_test.cc"],
        linkstatic = 1,
        deps = [
            ":attention",
            "@system//:gtest_main",
        ],
    )
    native.cc_test(
        name = "attention_gpu_test",
        size = "large",
        srcs = ["attention_gpu_test.cc"],
        tags = ["gpu"],
        linkstatic = 1,
        deps = [
            ":attention",
            ":attention_cpu",
            ":attention_testing",
            ":gpu_testing",
            "@system//:gtest_main",
        ],
    )
