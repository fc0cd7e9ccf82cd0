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

ALLOCATORS_COPTS = [
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

ALLOCATORS_TEST_COPTS = ALLOCATORS_COPTS + [
    # TEST()/BENCHMARK() define functions without prior declarations.
    "-Wno-missing-declarations",
]

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
