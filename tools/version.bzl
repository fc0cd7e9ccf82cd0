"""Exposes a package's VERSION file as a C++ constant.

    package_version(namespace = "mmap_alloc")

in mmap_alloc/BUILD creates the target `:version` with the header
"mmap_alloc/version.h", which declares

    namespace mmap_alloc { inline constexpr char kVersion[] = "0.1.0"; }

The VERSION file stays the single source of truth: //tools:package_files_test
checks that the package's CHANGELOG.md has a heading for it and that its
README.md exists.
"""

def package_version(namespace, name = "version", visibility = None):
    pkg = native.package_name()

    # //tools:package_files_test checks that these agree with each other.
    native.exports_files(
        ["VERSION", "CHANGELOG.md", "README.md"],
        visibility = ["//tools:__pkg__"],
    )
    guard = (pkg.upper().replace("/", "_")) + "_VERSION_H_"
    native.genrule(
        name = name + "_h",
        srcs = ["VERSION"],
        outs = ["version.h"],
        cmd = ("v=$$(tr -d ' \\n' < $<); " +
               "printf '%s\\n' " +
               "'// Generated from {pkg}/VERSION by //tools:version.bzl. Do not edit.' " +
               "'#ifndef {guard}' '#define {guard}' '' " +
               "'namespace {ns} {{' '' " +
               "'// The version of //{pkg}, as in {pkg}/VERSION and {pkg}/CHANGELOG.md.' " +
               "\"inline constexpr char kVersion[] = \\\"$$v\\\";\" '' " +
               "'}}  // namespace {ns}' '' '#endif  // {guard}' > $@").format(
            pkg = pkg,
            guard = guard,
            ns = namespace,
        ),
    )
    native.cc_library(
        name = name,
        hdrs = [":version.h"],
        visibility = visibility if visibility else ["//visibility:public"],
    )
