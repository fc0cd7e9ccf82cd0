"""Repository rules that expose Debian's prebuilt C++ libraries under upstream names.

We build offline with Debian's Bazel 4.2.3, so abseil, GoogleTest and Google
Benchmark come from Debian's -dev packages instead of http_archive. These rules
generate repositories whose labels read exactly like upstream's
(`@com_google_absl//absl/base:core_headers`, `@com_google_googletest//:gtest_main`,
`@com_github_google_benchmark//:benchmark_main`), so our BUILD files would work
unchanged against the upstream source repositories.

Headers are found in /usr/include, which the auto-configured C++ toolchain already
treats as a builtin include directory, so the generated targets only carry link
inputs. abseil's target graph is read from its pkg-config files (`Requires:`),
and each target links the package's static archive (`libabsl_<name>.a`), so
nothing we build depends on abseil's shared objects at run time: that matters for
libelfc.so, which must not drag extra DSOs into every process it is preloaded in.

If a package is missing the rule fails with the command that installs it; the
README's two commands (`./run.sh`, `./test.sh`) install them on a fresh machine.
"""

_LIB_DIRS = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
]

def _find_lib_dir(rctx, probe):
    for d in _LIB_DIRS:
        if rctx.path(d + "/" + probe).exists:
            return d
    return None

def _missing(pkg, what):
    fail(("{} not found. Install it with: apt-get install -y {} " +
          "(./test.sh and ./run.sh do this for you).").format(what, pkg))

# pkg-config module name (without the absl_ prefix) -> upstream "package:target".
# Anything not listed lives in absl/<default package> below.
_ABSL_SPECIAL = {
    "algorithm_container": "absl/algorithm:container",
    "flags": "absl/flags:flag",
    "flags_internal": "absl/flags:flag_internal",
    "civil_time": "absl/time/internal/cctz:civil_time",
    "time_zone": "absl/time/internal/cctz:time_zone",
    "meta": "absl/meta:meta",
    "type_traits": "absl/meta:type_traits",
    "random_random": "absl/random:random",
    "random_distributions": "absl/random:distributions",
    "random_bit_gen_ref": "absl/random:bit_gen_ref",
    "random_seed_gen_exception": "absl/random:seed_gen_exception",
    "random_seed_sequences": "absl/random:seed_sequences",
}

# Prefix of a pkg-config module name -> upstream package, first match wins.
_ABSL_PREFIX_PACKAGES = [
    ("random_internal_", "absl/random/internal", True),
    ("flags_", "absl/flags", True),
    ("cord", "absl/strings", False),
    ("str", "absl/strings", False),
    ("hash", "absl/container", False),  # hash_policy_traits, hashtable*, hash_function_defaults
    ("raw_hash", "absl/container", False),
    ("inlined_vector", "absl/container", False),
    ("flat_hash", "absl/container", False),
    ("node_hash", "absl/container", False),
    ("container", "absl/container", False),
    ("bad_", "absl/types", False),
    ("cleanup", "absl/cleanup", False),
]

_ABSL_PACKAGE_OF = {
    "absl/algorithm": ["algorithm"],
    "absl/base": ["strerror"],
    "absl/container": ["btree", "compressed_tuple", "counting_allocator", "fixed_array", "layout", "node_slot_policy"],
    "absl/debugging": ["debugging", "debugging_internal", "demangle_internal", "examine_stack", "failure_signal_handler", "leak_check", "stacktrace", "symbolize"],
    "absl/functional": ["any_invocable", "bind_front", "function_ref"],
    "absl/hash": ["hash", "city", "low_level_hash"],
    "absl/memory": ["memory"],
    "absl/numeric": ["bits", "int128", "numeric", "numeric_representation"],
    "absl/profiling": ["exponential_biased", "periodic_sampler", "sample_recorder"],
    "absl/status": ["status", "statusor"],
    "absl/synchronization": ["synchronization", "graphcycles_internal", "kernel_timeout_internal"],
    "absl/time": ["time"],
    "absl/types": ["any", "compare", "optional", "span", "variant"],
    "absl/utility": ["utility"],
}

def _absl_label(name):
    """Returns (package, target) for an abseil pkg-config module name."""
    if name in _ABSL_SPECIAL:
        pkg, target = _ABSL_SPECIAL[name].split(":")
        return pkg, target
    for pkg, names in _ABSL_PACKAGE_OF.items():
        if name in names:
            return pkg, name
    for prefix, pkg, strip in _ABSL_PREFIX_PACKAGES:
        if name.startswith(prefix):
            return pkg, (name[len(prefix):] if strip else name)
    return "absl/base", name

def _parse_requires(text):
    for line in text.splitlines():
        if line.startswith("Requires:"):
            out = []
            for word in line[len("Requires:"):].replace(",", " ").split(" "):
                word = word.strip()
                if word.startswith("absl_"):
                    out.append(word[len("absl_"):])
            return out
    return []

def _debian_absl_impl(rctx):
    lib_dir = _find_lib_dir(rctx, "libabsl_base.a")
    if not lib_dir or not rctx.path("/usr/include/absl/base/config.h").exists:
        _missing("libabsl-dev", "abseil (libabsl-dev, static archives)")
    pc_dir = rctx.path(lib_dir + "/pkgconfig")
    packages = {}  # package -> list of BUILD snippets
    for pc in pc_dir.readdir():
        base = pc.basename
        if not base.startswith("absl_") or not base.endswith(".pc"):
            continue
        name = base[len("absl_"):-len(".pc")]
        pkg, target = _absl_label(name)
        deps = []
        for req in _parse_requires(rctx.read(pc)):
            rpkg, rtarget = _absl_label(req)
            deps.append('"//{}:{}"'.format(rpkg, rtarget))
        archive = "libabsl_{}.a".format(name)
        snippet = ""
        if rctx.path(lib_dir + "/" + archive).exists:
            rctx.symlink(lib_dir + "/" + archive, pkg + "/" + archive)
            snippet += 'cc_import(name = "{t}_archive", static_library = "{a}")\n'.format(t = target, a = archive)
            deps.insert(0, '":{}_archive"'.format(target))
        snippet += 'cc_library(name = "{t}", deps = [{d}])\n'.format(t = target, d = ", ".join(deps))
        packages.setdefault(pkg, []).append(snippet)
    header = ('# Generated by //third_party:debian_libs.bzl from Debian\'s libabsl-dev.\n' +
              'package(default_visibility = ["//visibility:public"])\n\n')
    for pkg, snippets in packages.items():
        rctx.file(pkg + "/BUILD", header + "\n".join(sorted(snippets)))
    rctx.file("BUILD", header)
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))

debian_absl = repository_rule(
    implementation = _debian_absl_impl,
    local = True,
    doc = "abseil-cpp from Debian's libabsl-dev, with upstream package and target names.",
)

def _debian_gtest_impl(rctx):
    lib_dir = _find_lib_dir(rctx, "libgtest.a")
    if not lib_dir or not rctx.path("/usr/include/gtest/gtest.h").exists:
        _missing("libgtest-dev libgmock-dev", "GoogleTest")
    for lib in ["gtest", "gtest_main", "gmock", "gmock_main"]:
        rctx.symlink("{}/lib{}.a".format(lib_dir, lib), "lib{}.a".format(lib))
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD", """# Generated by //third_party:debian_libs.bzl from Debian's libgtest-dev/libgmock-dev.
package(default_visibility = ["//visibility:public"])

cc_import(name = "gtest_archive", static_library = "libgtest.a")
cc_import(name = "gtest_main_archive", static_library = "libgtest_main.a")
cc_import(name = "gmock_archive", static_library = "libgmock.a")
cc_import(name = "gmock_main_archive", static_library = "libgmock_main.a")

cc_library(name = "gtest", deps = [":gtest_archive"], linkopts = ["-pthread"])
cc_library(name = "gtest_main", deps = [":gtest_main_archive", ":gtest"])
cc_library(name = "gmock", deps = [":gmock_archive", ":gtest"])
cc_library(name = "gmock_main", deps = [":gmock_main_archive", ":gmock"])
""")

debian_googletest = repository_rule(
    implementation = _debian_gtest_impl,
    local = True,
    doc = "GoogleTest and GoogleMock from Debian's libgtest-dev/libgmock-dev.",
)

def _debian_benchmark_impl(rctx):
    lib_dir = _find_lib_dir(rctx, "libbenchmark_main.a")
    if not lib_dir or not rctx.path("/usr/include/benchmark/benchmark.h").exists:
        _missing("libbenchmark-dev", "Google Benchmark")
    rctx.symlink(lib_dir + "/libbenchmark_main.a", "libbenchmark_main.a")
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))

    # Debian ships Google Benchmark only as a shared object; it is a test-only
    # dependency, so linking it dynamically is fine.
    rctx.file("BUILD", """# Generated by //third_party:debian_libs.bzl from Debian's libbenchmark-dev.
package(default_visibility = ["//visibility:public"])

cc_library(name = "benchmark", linkopts = ["-lbenchmark", "-pthread"])
cc_import(name = "benchmark_main_archive", static_library = "libbenchmark_main.a")
cc_library(name = "benchmark_main", deps = [":benchmark_main_archive", ":benchmark"])
""")

debian_benchmark = repository_rule(
    implementation = _debian_benchmark_impl,
    local = True,
    doc = "Google Benchmark from Debian's libbenchmark-dev.",
)

def _debian_concurrentqueue_impl(rctx):
    header = "/usr/include/concurrentqueue/moodycamel/concurrentqueue.h"
    if not rctx.path(header).exists:
        header = "/usr/include/concurrentqueue/concurrentqueue.h"
    if not rctx.path(header).exists:
        _missing("libconcurrentqueue-dev", "moodycamel::ConcurrentQueue")
    rctx.symlink(header, "concurrentqueue.h")
    rctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(rctx.name))
    rctx.file("BUILD", """# Generated by //third_party:debian_libs.bzl from Debian's libconcurrentqueue-dev.
# Benchmark-only dependency: `#include "concurrentqueue.h"`.
package(default_visibility = ["//visibility:public"])

cc_library(name = "concurrentqueue", hdrs = ["concurrentqueue.h"], includes = ["."], testonly = True)
""")

debian_concurrentqueue = repository_rule(
    implementation = _debian_concurrentqueue_impl,
    local = True,
    doc = "moodycamel::ConcurrentQueue (header-only) from Debian's libconcurrentqueue-dev.",
)
