"""elfc_preload_test: run a test program with a malloc library LD_PRELOADed.

    elfc_preload_test(
        name = "stress_test",
        binary = ":stress",
        args = ["--producers=2"],
    )

makes an sh_test that runs `:stress` with LD_PRELOAD=<runfiles path of
:libelfc.so> through preload_test.sh, which fails the test on a non-zero
exit, a signal, a hang (cut off before Bazel's timeout), a missing
"elfc-preload-check: OK" line (the program's CheckPreload() from
preload_test_util.h proves the allocation API really resolves into the
preload), or a missing `expect` string.

Arguments:
  binary:  a testonly cc_binary linking :preload_test_util.
  args:    arguments for the program (Bazel tokenizes them like a shell;
           $(rootpath ...) of labels in `data` works).
  preload: the library to preload; None runs the program without LD_PRELOAD
           and requires malloc to be glibc's (the dlopen test).
  strict:  require every allocation entry point (memalign, pvalloc,
           reallocarray, all operator new/delete forms), not only the core
           malloc/free/calloc/realloc/posix_memalign/aligned_alloc/
           malloc_usable_size, to come from the preload.
  expect:  strings the program's output must contain.
  data, size, tags, timeout, flaky: as for any test.

Every test made here is tagged noasan and notsan: the ASan and TSan runtimes
replace malloc themselves and must own every block in the process, so they
cannot coexist with a preloaded malloc (and a sanitizer-built program would
not even reach our malloc). UBSan does not touch malloc, so --config=ubsan
still runs them.

elfc_real_programs_test(name, library = "//elfc:libelfc.so", programs = [])
makes the sh_test of real_programs_test.sh (Debian's python3, perl, git,
sort, sqlite3, g++ and java under the library, output compared with glibc's).

To run the whole battery against a peer allocator (to tell a bug in elfc from
a bug in a test): `--test_env=ELFC_TEST_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2`.
For a longer soak: `--test_env=ELFC_STRESS_SCALE=10`.
"""

def elfc_preload_test(
        name,
        binary,
        args = [],
        preload = "//elfc:libelfc.so",
        strict = True,
        expect = [],
        data = [],
        size = "small",
        tags = [],
        **kwargs):
    runner_args = ["$(rootpath %s)" % binary]
    test_data = [binary] + data
    if preload:
        runner_args.append("$(rootpath %s)" % preload)
        test_data.append(preload)
        if strict:
            runner_args.append("--strict")
    else:
        runner_args.append("none")
    for e in expect:
        if "'" in e:
            fail("elfc_preload_test: expect strings cannot contain a single quote: " + e)

        # Single quotes keep an expect string with spaces one argument.
        runner_args.append("'--expect=%s'" % e)
    runner_args.append("--")
    runner_args.extend(args)
    native.sh_test(
        name = name,
        srcs = ["//elfc:preload_test.sh"],
        args = runner_args,
        data = test_data,
        size = size,
        tags = tags + [
            # Sanitizer runtimes replace malloc; see the docstring.
            "noasan",
            "notsan",
            # --config=elfc links elfc into the program itself, which then
            # wins over the preload (the check fails, by design).
            "noelfc",
        ],
        **kwargs
    )

def elfc_real_programs_test(
        name,
        library = "//elfc:libelfc.so",
        programs = [],
        size = "medium",
        tags = [],
        **kwargs):
    """An sh_test running real_programs_test.sh: Debian's programs under `library`.

    Args:
      library: the malloc library to preload.
      programs: workload names (real_programs_test.sh); empty means all.
      size, tags: as for any test; noasan/notsan are added (an instrumented
        library cannot be preloaded into uninstrumented programs).
    """
    native.sh_test(
        name = name,
        srcs = ["//elfc:real_programs_test.sh"],
        args = ["$(rootpath %s)" % library] + programs,
        data = [library],
        size = size,
        tags = tags + [
            "noasan",
            "notsan",
            "noelfc",
        ],
        **kwargs
    )
