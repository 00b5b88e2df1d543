"""`strata_proto_library`: C++ code for protobuf messages and gRPC services.

protoc and grpc_cpp_plugin come from Debian's packages (tools/setup.sh). For
`foo.proto` the macro generates foo.pb.{h,cc} and foo.grpc.pb.{h,cc} and wraps
them in a cc_library named `name`. Imports are resolved from the workspace
root, so `import "proto/strata/v1/common.proto";` works across packages.
"""

def strata_proto_library(name, srcs, deps = [], grpc = True, **kwargs):
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    proto_deps = [d + "_srcs" for d in deps]
    native.filegroup(
        name = name + "_srcs",
        srcs = srcs + proto_deps,
    )
    plugin = ""
    if grpc:
        plugin = "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin --grpc_out=$(GENDIR) "
    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = outs,
        cmd = "/usr/bin/protoc -I. --cpp_out=$(GENDIR) " + plugin +
              " ".join(["$(location %s)" % s for s in srcs]),
        message = "protoc %s" % name,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpc", "@system//:protobuf"],
        **kwargs
    )
