"""The one warning list every target in this repository compiles with.

Every cc_* target sets `copts = ALLOCATORS_COPTS` (tests and benchmarks use
ALLOCATORS_TEST_COPTS, which relaxes only what gtest/benchmark macros trip).
Warnings are errors: a new warning fails the build rather than scrolling past.
The list also sets the language level (C++20), so the targets carry it into any
workspace that depends on them.
External repositories (Debian's prebuilt abseil/gtest/benchmark) are not
compiled by us, so their headers are the only foreign code these flags see;
they live in /usr/include and are therefore system headers for the compiler.
"""

# The options as a plain list (a select cannot be iterated; the C subset
# below filters it).
ALLOCATORS_COPTS_LIST = [
    # The language level lives with the targets, not in .bazelrc, so another
    # workspace that depends on them builds them as we do.
    "-std=c++20",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wcast-qual",
    "-Wconversion-null",
    "-Wformat=2",
    "-Wmissing-declarations",
    "-Wnon-virtual-dtor",
    "-Woverloaded-virtual",
    "-Wpointer-arith",
    "-Wshadow",
    "-Wundef",
    "-Wunused-result",
    "-Wvla",
    "-Wno-sign-compare",  # size_t vs int comparisons in loops are pervasive and benign.
]

_JUMP_PADDING = select({
    # Intel's JCC erratum (Skylake to Cascade Lake, with the microcode that
    # fixes it): a jump, or a compare fused with one, that crosses or ends
    # at a 32-byte boundary is not cached as decoded micro-ops, and a loop
    # through it is decoded again every time. Where a build happened to lay
    # malloc's empty test across a boundary, glibc_thread ran at half the
    # speed of the build before it, with fewer instructions. The assembler
    # pads such jumps off the boundaries (a few bytes of prefixes or nops).
    # GCC passes the option to the assembler, clang takes it itself.
    "//tools:x86_64_clang": ["-mbranches-within-32B-boundaries"],
    "//tools:x86_64": ["-Wa,-mbranches-within-32B-boundaries"],
    "//conditions:default": [],
})

# clang, tests only: the C library's functions as ordinary functions.
# clang removes calls whose result it can predict (a malloc whose block is
# only compared with null and freed, a strdup freed at once), which the
# tests of failing requests and of call counts make on purpose.
_CLANG_TEST_NO_BUILTIN = select({
    "//tools:clang": ["-fno-builtin"],
    "//conditions:default": [],
})

# clang and C++: C++14's sized deallocation functions (operator
# delete(void*, size_t)), which the allocators define and the tests call:
# GCC declares them in every C++14 and later mode, clang before version 19
# only with this option.
_CLANG_CXX = select({
    "//tools:clang": ["-fsized-deallocation"],
    "//conditions:default": [],
})

ALLOCATORS_COPTS = ALLOCATORS_COPTS_LIST + _JUMP_PADDING + _CLANG_CXX

ALLOCATORS_TEST_COPTS = ALLOCATORS_COPTS + [
    # TEST()/BENCHMARK() define functions without prior declarations.
    "-Wno-missing-declarations",
] + _CLANG_TEST_NO_BUILTIN

# The malloc/free fast paths (elfmalloc's general allocator and elfc's entry
# points): no frame pointer. Bazel's toolchain compiles with
# -fno-omit-frame-pointer, which costs a push, a move and a pop in every
# function: 6 of the ~85 instructions of a malloc/free pair (callgrind).
# Profilers unwind through these leaf-like functions with DWARF CFI.
ALLOCATORS_FAST_PATH_COPTS = ALLOCATORS_COPTS + ["-fomit-frame-pointer"]

# The unchecked builds (//elfmalloc:general_allocator_unchecked and
# //elfc:elfc_malloc_unchecked) stay unchecked under --config=checked, which
# defines ELFMALLOC_CHECKED for every target: they exist to measure the
# checks, and ELFMALLOC_UNCHECKED excludes ELFMALLOC_CHECKED. A target's own
# copts come after the configuration's, so this undefines it.
ALLOCATORS_UNCHECKED_COPTS = select({
    "//elfmalloc:checked_config": ["-UELFMALLOC_CHECKED"],
    "//conditions:default": [],
})

# The test options for C sources (test programs, the README's C examples):
# the shared list minus its C++-only options, which GCC rejects for C under
# -Werror.
ALLOCATORS_C_TEST_COPTS = [
    c
    for c in ALLOCATORS_COPTS_LIST + ["-Wno-missing-declarations"]
    if not c.startswith("-std=c++") and c not in [
        "-Wconversion-null",
        "-Wnon-virtual-dtor",
        "-Woverloaded-virtual",
    ]
] + _JUMP_PADDING + _CLANG_TEST_NO_BUILTIN
