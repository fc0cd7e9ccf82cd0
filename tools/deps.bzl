"""Everything a workspace needs to build this repository's targets, in one macro.

Our own WORKSPACE and any other workspace that uses us call the same macro:

    local_repository(name = "allocators", path = "/path/to/allocators")

    load("@allocators//tools:deps.bzl", "allocators_deps")

    allocators_deps()

It defines, unless the workspace already has a repository of that name:
- rules_cc, rules_java, remote_coverage_tools: what Bazel 4.2.3's @bazel_tools would
  download; here small stand-ins under third_party/ that forward to the native rules,
  so the build stays offline.
- com_google_absl, com_google_googletest, com_github_google_benchmark,
  com_github_cameron314_concurrentqueue: Debian's -dev packages under their upstream
  repository names (third_party/debian_libs.bzl).

The targets carry their own language level (`-std=c++20` in //tools:copts.bzl), so a
consumer's .bazelrc needs nothing from ours.
"""

load(
    "//third_party:debian_libs.bzl",
    "debian_absl",
    "debian_benchmark",
    "debian_concurrentqueue",
    "debian_googletest",
)

def _stand_in_impl(rctx):
    # The stand-in's directory, found through a file of this repository, so the macro
    # works whatever this repository is called and wherever it lives on disk.
    src = rctx.path(rctx.attr.anchor).dirname.get_child(rctx.attr.directory)
    if not src.exists:
        fail("{} not found (expected beside {})".format(src, rctx.attr.anchor))
    for child in src.readdir():
        rctx.symlink(child, child.basename)

_stand_in = repository_rule(
    implementation = _stand_in_impl,
    attrs = {
        "anchor": attr.label(allow_single_file = True, mandatory = True),
        "directory": attr.string(mandatory = True),
    },
    local = True,
    doc = "A repository made of one directory under third_party/ (with its own WORKSPACE).",
)

def _maybe(rule, name, **kwargs):
    if not native.existing_rule(name):
        rule(name = name, **kwargs)

def allocators_deps():
    """Defines every external repository this repository's targets use."""
    anchor = Label("//third_party:debian_libs.bzl")
    for name in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        _maybe(_stand_in, name, anchor = anchor, directory = name)
    _maybe(debian_absl, "com_google_absl")
    _maybe(debian_googletest, "com_google_googletest")
    _maybe(debian_benchmark, "com_github_google_benchmark")

    # Benchmark-only peer for bagpipe's comparison table.
    _maybe(debian_concurrentqueue, "com_github_cameron314_concurrentqueue")
