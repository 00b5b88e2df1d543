"""Repository rule that finds the Python the `strata` module is built for.

It runs the interpreter named by `--repo_env=STRATA_PYTHON=...` (default
/usr/bin/python3, Debian's) to learn its include directory and extension
suffix, and writes `@local_python//:headers` and `@local_python//:defs.bzl`
(`EXT_SUFFIX`). Without that interpreter or its headers, `HAS_PYTHON` is
False and the module's targets vanish.
"""

_BUILD = """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "headers",
    hdrs = glob(["include/**/*.h"]),
    includes = ["include"],
)
"""

def _python_configure_impl(ctx):
    python = ctx.os.environ.get("STRATA_PYTHON", "/usr/bin/python3")
    found = ctx.path(python).exists
    include = ""
    suffix = ".so"
    if found:
        r = ctx.execute([python, "-c", "import sysconfig; " +
                         "print(sysconfig.get_paths()['include']); " +
                         "print(sysconfig.get_config_var('EXT_SUFFIX'))"])
        lines = r.stdout.strip().split("\n")
        if r.return_code == 0 and len(lines) == 2 and ctx.path(lines[0] + "/Python.h").exists:
            include = lines[0]
            suffix = lines[1]
        else:
            found = False
    if found:
        ctx.symlink(include, "include")
        ctx.file("BUILD", _BUILD)
    else:
        ctx.file("BUILD", "package(default_visibility = [\"//visibility:public\"])\n")
    ctx.file("defs.bzl", "HAS_PYTHON = %s\nEXT_SUFFIX = %r\nPYTHON = %r\n" % (found, suffix, python))

python_configure = repository_rule(
    implementation = _python_configure_impl,
    environ = ["STRATA_PYTHON"],
    local = True,
)
