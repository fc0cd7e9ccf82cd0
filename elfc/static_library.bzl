"""A self-contained static archive of a cc_library and everything it links.

Bazel 4 has no rule that packs a library's transitive closure into one `.a`
for use outside Bazel, so this one does: every archive in the dependency's
link inputs (our own libraries and the prebuilt abseil archives they use) is
merged by `ar -M` into one archive, position-independent objects preferred,
so that `cc prog.c libfoo.a -lpthread` links. Symbols that a shared library
of the same code wraps with `-Wl,--wrap=` (libelfc.so's C++ personality
routine) are wrapped in the archive's objects too, since the linker that
uses the archive is not told to. The link flags those
libraries ask for (`-pthread`, `-ldl`, ...) are written beside it, one per
line, for pkg-config's and CMake's static variants.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

def _static_library_impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    archives = []
    flags = []
    for dep in ctx.attr.deps:
        for linker_input in dep[CcInfo].linking_context.linker_inputs.to_list():
            for flag in linker_input.user_link_flags:
                if flag not in flags:
                    flags.append(flag)
            for lib in linker_input.libraries:
                archive = lib.pic_static_library or lib.static_library
                if archive and archive not in archives:
                    archives.append(archive)
    out = ctx.outputs.out
    script = ctx.actions.declare_file(ctx.label.name + ".mri")
    ctx.actions.write(
        script,
        "\n".join(["CREATE " + out.path] + ["ADDLIB " + a.path for a in archives] + ["SAVE", "END", ""]),
    )
    # What `-Wl,--wrap=X` does at link time, done to the archive's objects:
    # references to X go to __wrap_X, and __wrap_X reaches X as __real_X.
    renames = []
    for sym in ctx.attr.wrap:
        renames += ["--redefine-sym", "{0}=__wrap_{0}".format(sym)]
        renames += ["--redefine-sym", "__real_{0}={0}".format(sym)]
    ctx.actions.run_shell(
        inputs = archives + [script],
        outputs = [out],
        tools = cc_toolchain.all_files,
        command = ('ar=$1 objcopy=$2 mri=$3 out=$4; shift 4; ' +
                   '"$ar" -M < "$mri" && ' +
                   '{ [ $# -eq 0 ] || "$objcopy" "$@" "$out"; } && ' +
                   '"$ar" -s "$out"'),
        arguments = [cc_toolchain.ar_executable, cc_toolchain.objcopy_executable, script.path, out.path] + renames,
        mnemonic = "StaticLibrary",
        progress_message = "Packing %s from %d archives" % (out.short_path, len(archives)),
    )
    ctx.actions.write(ctx.outputs.link_flags, "".join([f + "\n" for f in flags]))
    return [DefaultInfo(files = depset([out, ctx.outputs.link_flags]))]

static_library = rule(
    implementation = _static_library_impl,
    attrs = {
        "deps": attr.label_list(providers = [CcInfo], mandatory = True),
        "out": attr.output(mandatory = True, doc = "The archive, e.g. libfoo.a."),
        "link_flags": attr.output(mandatory = True, doc = "The libraries' link flags, one a line."),
        "wrap": attr.string_list(doc = "Symbols to wrap as the linker's --wrap would (see above)."),
        "_cc_toolchain": attr.label(default = "@bazel_tools//tools/cpp:current_cc_toolchain"),
    },
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    fragments = ["cpp"],
    incompatible_use_toolchain_transition = True,
    doc = "Packs deps and their transitive static libraries into one archive.",
)
