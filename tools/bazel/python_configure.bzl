"""Repository rule that finds the Python the `strata` module is built for.

Two ways:
- An interpreter on this machine: `--repo_env=STRATA_PYTHON=...` (default
  /usr/bin/python3, Debian's) is run to learn its include directory and
  extension suffix.
- A Python that does not run here (another machine's), from its headers:
  `--repo_env=STRATA_PYTHON_INCLUDE=DIR` (the directory holding Python.h) and
  `--repo_env=STRATA_PYTHON_EXT_SUFFIX=.cpython-312-x86_64-linux-gnu.so`.
  Debian and Ubuntu split pyconfig.h: DIR/pyconfig.h includes
  <MULTIARCH/pythonX.Y/pyconfig.h> from /usr/include; name that file with
  `--repo_env=STRATA_PYTHON_PYCONFIG=FILE` and it is placed on the include
  path as MULTIARCH/pythonX.Y/pyconfig.h (MULTIARCH read from the suffix,
  X.Y from DIR/patchlevel.h). Nothing is run; the module's tests, which need
  the interpreter, are left out (`RUNS` is False).

Writes `@local_python//:headers` and `@local_python//:defs.bzl` (`HAS_PYTHON`,
`EXT_SUFFIX`, `PYTHON`, `RUNS`). Without the headers, `HAS_PYTHON` is False
and the module's targets vanish; a STRATA_PYTHON_* setting that names missing
files fails the build with the reason.
"""

_BUILD = """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "headers",
    hdrs = glob(["include/**/*.h", "arch/**/*.h"]),
    includes = %s,
)
"""

def _python_version(ctx, include):
    """X.Y from the headers' patchlevel.h."""
    major = ""
    minor = ""
    for line in ctx.read(include + "/patchlevel.h").split("\n"):
        words = [w for w in line.replace("\t", " ").split(" ") if w]
        if len(words) >= 3 and words[0] == "#define":
            if words[1] == "PY_MAJOR_VERSION":
                major = words[2]
            elif words[1] == "PY_MINOR_VERSION":
                minor = words[2]
    if not major or not minor:
        fail("%s/patchlevel.h names no PY_MAJOR_VERSION / PY_MINOR_VERSION" % include)
    return major + "." + minor

def _foreign_python(ctx, include, suffix):
    """Headers of a Python that is not run here; returns the include dir."""
    if not suffix:
        fail("STRATA_PYTHON_INCLUDE needs STRATA_PYTHON_EXT_SUFFIX " +
             "(e.g. .cpython-312-x86_64-linux-gnu.so: sysconfig's EXT_SUFFIX there)")
    if not suffix.startswith(".") or not suffix.endswith(".so"):
        fail("STRATA_PYTHON_EXT_SUFFIX=%s: expected .<tag>.so, e.g. .cpython-312-x86_64-linux-gnu.so" % suffix)
    if not ctx.path(include + "/Python.h").exists:
        fail("STRATA_PYTHON_INCLUDE=%s holds no Python.h" % include)
    pyconfig = ctx.os.environ.get("STRATA_PYTHON_PYCONFIG", "")
    if pyconfig:
        if not ctx.path(pyconfig).exists:
            fail("STRATA_PYTHON_PYCONFIG=%s does not exist" % pyconfig)

        # .cpython-312-x86_64-linux-gnu.so -> x86_64-linux-gnu
        tag = suffix[1:-len(".so")]
        parts = tag.split("-", 2)
        if len(parts) != 3 or not parts[2]:
            fail("STRATA_PYTHON_EXT_SUFFIX=%s names no multiarch triplet " % suffix +
                 "(.cpython-XY-TRIPLET.so) to place STRATA_PYTHON_PYCONFIG under")
        multiarch = parts[2]
        ctx.symlink(pyconfig, "arch/%s/python%s/pyconfig.h" %
                              (multiarch, _python_version(ctx, include)))
    return include

def _python_configure_impl(ctx):
    foreign_include = ctx.os.environ.get("STRATA_PYTHON_INCLUDE", "")
    foreign_suffix = ctx.os.environ.get("STRATA_PYTHON_EXT_SUFFIX", "")
    python = ctx.os.environ.get("STRATA_PYTHON", "/usr/bin/python3")
    include = ""
    suffix = ".so"
    runs = False
    if foreign_include:
        include = _foreign_python(ctx, foreign_include, foreign_suffix)
        suffix = foreign_suffix
        python = ""
    elif foreign_suffix:
        fail("STRATA_PYTHON_EXT_SUFFIX is used with STRATA_PYTHON_INCLUDE only")
    elif ctx.path(python).exists:
        r = ctx.execute([python, "-c", "import sysconfig; " +
                         "print(sysconfig.get_paths()['include']); " +
                         "print(sysconfig.get_config_var('EXT_SUFFIX'))"])
        lines = r.stdout.strip().split("\n")
        if r.return_code == 0 and len(lines) == 2 and ctx.path(lines[0] + "/Python.h").exists:
            include = lines[0]
            suffix = lines[1]
            runs = True
    found = include != ""
    if found:
        ctx.symlink(include, "include")
        includes = ["include", "arch"] if ctx.path("arch").exists else ["include"]
        ctx.file("BUILD", _BUILD % repr(includes))
    else:
        ctx.file("BUILD", "package(default_visibility = [\"//visibility:public\"])\n")
    ctx.file("defs.bzl", "HAS_PYTHON = %s\nEXT_SUFFIX = %r\nPYTHON = %r\nRUNS = %s\n" %
                         (found, suffix, python, runs))

python_configure = repository_rule(
    implementation = _python_configure_impl,
    environ = [
        "STRATA_PYTHON",
        "STRATA_PYTHON_INCLUDE",
        "STRATA_PYTHON_EXT_SUFFIX",
        "STRATA_PYTHON_PYCONFIG",
    ],
    local = True,
)
