/* A C program (no C++ runtime of its own) run with libelfc.so preloaded by
   //elfc:no_cxx_runtime_test. libelfc.so must not bring a C++ runtime into
   it: libstdc++ (about 2 MiB of code and data mapped and partly resident in
   every process, the bulk of elfc's fixed cost over glibc), libgcc_s and
   libm (which Bazel's toolchain links into everything) must not be mapped.
   And the C++ operators libelfc.so exports must still behave when no C++
   runtime exists: the nothrow forms return NULL, the throwing forms, which
   have nothing to throw with, print a message and abort instead of crashing.
   Then C++ code dlopen()ed by the program (no_cxx_runtime_plugin.cc) brings
   libstdc++ late, and its std::bad_alloc and new-handler must work.

   Written in C and linked with --as-needed, so that the program itself needs
   only libc; it checks on its own that malloc resolves into the preload
   (CheckPreload() of preload_test_util.h is C++) and prints the line the
   runner (preload_test.sh) requires. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "FAILED: %s:%d: %s: ", __FILE__, __LINE__, \
              #cond);                                           \
      fprintf(stderr, __VA_ARGS__);                             \
      fprintf(stderr, "\n");                                    \
      ++failures;                                               \
    }                                                           \
  } while (0)

/* The file the dynamic linker bound `symbol` to, or NULL. */
static const char* DefiningObject(const char* symbol) {
  Dl_info info;
  void* p = dlsym(RTLD_DEFAULT, symbol);
  if (p == NULL || dladdr(p, &info) == 0) return NULL;
  return info.dli_fname;
}

/* The runner's contract (preload_test_util.h): ELFC_PRELOAD_EXPECT names the
   preloaded file, and malloc must come from it. Unset: a hand run. */
static void CheckPreload(void) {
  const char* expect = getenv("ELFC_PRELOAD_EXPECT");
  if (expect == NULL) {
    fprintf(stderr, "no_cxx_runtime_test: hand run, malloc from %s\n",
            DefiningObject("malloc"));
    return;
  }
  char want[PATH_MAX], got[PATH_MAX];
  const char* from = DefiningObject("malloc");
  if (from == NULL || realpath(expect, want) == NULL ||
      realpath(from, got) == NULL || strcmp(want, got) != 0) {
    fprintf(stderr, "FAILED: malloc comes from %s, not the preload %s\n",
            from == NULL ? "(unknown)" : from, expect);
    exit(1);
  }
  fprintf(stderr, "elfc-preload-check: OK (malloc from %s)\n", got);
}

/* True if a mapping of this process comes from a file whose base name starts
   with `prefix` (e.g. "libstdc++.so"). */
static int Mapped(const char* prefix) {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == NULL) {
    perror("/proc/self/maps");
    exit(1);
  }
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof(line), f) != NULL) {
    const char* path = strchr(line, '/');
    if (path == NULL) continue;
    const char* base = strrchr(path, '/') + 1;
    if (strncmp(base, prefix, strlen(prefix)) == 0) found = 1;
  }
  fclose(f);
  return found;
}

typedef void* (*NewFn)(size_t);
typedef void* (*NewNothrowFn)(size_t, const void*);
typedef void* (*NewAlignedNothrowFn)(size_t, size_t, const void*);

/* Runs `fn(size)` in a child; returns its wait status. */
static int StatusOfChild(NewFn fn, size_t size) {
  fflush(NULL);
  const pid_t pid = fork();
  if (pid == 0) {
    /* The expected abort leaves its message in the log, not a core. */
    const struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    void* p = fn(size);
    fprintf(stderr, "operator new returned %p instead of aborting\n", p);
    _exit(0);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) {
    perror("fork/waitpid");
    exit(1);
  }
  return status;
}

int main(int argc, char** argv) {
  CheckPreload();

  /* What the preload must not have brought in. */
  CHECK(!Mapped("libstdc++.so"), "libstdc++ is mapped");
  CHECK(!Mapped("libgcc_s.so"), "libgcc_s is mapped");
  CHECK(!Mapped("libm.so"), "libm is mapped");
  CHECK(dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv") == NULL,
        "a C++ runtime is loaded (std::get_new_handler found)");

  /* The operators libelfc.so exports, as a C++ library loaded later by
     dlopen would call them. */
  const NewFn op_new = (NewFn)dlsym(RTLD_DEFAULT, "_Znwm");
  const NewNothrowFn op_new_nothrow =
      (NewNothrowFn)dlsym(RTLD_DEFAULT, "_ZnwmRKSt9nothrow_t");
  const NewAlignedNothrowFn op_new_aligned_nothrow = (NewAlignedNothrowFn)dlsym(
      RTLD_DEFAULT, "_ZnwmSt11align_val_tRKSt9nothrow_t");
  CHECK(op_new != NULL && op_new_nothrow != NULL &&
            op_new_aligned_nothrow != NULL,
        "operator new forms not exported");
  if (op_new != NULL && op_new_nothrow != NULL &&
      op_new_aligned_nothrow != NULL) {
    /* Success works as ever. */
    void* p = op_new(100);
    CHECK(p != NULL, "operator new(100) failed");
    memset(p, 1, 100);
    free(p); /* libelfc.so's free takes blocks of every entry point */

    /* No handler can be installed, so nothrow fails at once. */
    CHECK(op_new_nothrow(SIZE_MAX / 2, NULL) == NULL,
          "nothrow new of an absurd size did not return NULL");
    CHECK(op_new_aligned_nothrow(SIZE_MAX / 2, 64, NULL) == NULL,
          "aligned nothrow new of an absurd size did not return NULL");

    /* The throwing form has nothing to throw with: SIGABRT after a
       message (seen in the test log), not a crash on a null pointer. */
    const int status = StatusOfChild(op_new, SIZE_MAX / 2);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
          "operator new of an absurd size: wait status 0x%x, not SIGABRT",
          status);
  }

  /* C++ code dlopen()ed now (argv[1]) brings libstdc++ after libelfc.so's
     weak references were bound: operator new must find it late. */
  if (argc > 1) {
    void* plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    CHECK(plugin != NULL, "dlopen(%s): %s", argv[1], dlerror());
    if (plugin != NULL) {
      CHECK(Mapped("libstdc++.so"), "the plugin did not bring libstdc++");
      int (*check)(void) =
          (int (*)(void))dlsym(plugin, "NoCxxRuntimePluginCheck");
      CHECK(check != NULL, "no NoCxxRuntimePluginCheck in %s", argv[1]);
      if (check != NULL) {
        const int failed = check();
        CHECK(failed == 0,
              "late C++ runtime: failed checks 0x%x (1: bad_alloc, 2: "
              "new-handler, 4: nothrow, 8: plain new)",
              failed);
      }
    }
  }

  if (failures != 0) {
    fprintf(stderr, "no_cxx_runtime_test: %d check(s) FAILED\n", failures);
    return 1;
  }
  printf("no_cxx_runtime_test: PASS\n");
  return 0;
}
