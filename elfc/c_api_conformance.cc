// elfc/c_api_conformance.cc: malloc_bind's conformance suites (the C API and
// the C++ operators) against the real, unprefixed symbols of this process,
// run with LD_PRELOAD=libelfc.so by //elfc:c_api_conformance_test.
//
// malloc_bind tests the suites against its backends through prefixed entry
// points inside an ordinary glibc process. This closes the gap to what
// users get: the same checks through the dynamic linker's resolution of
// malloc, free, ..., operator new/delete, in a process where libelfc.so is
// the allocator of everything (gtest, libstdc++, libc internals included).
// CheckPreload() (strict) first proves every entry point comes from the
// preload. The deviation flags keep malloc_bind's strict values when the
// allocator is not glibc; when the program runs on glibc (a hand run
// without LD_PRELOAD) they are cleared as in malloc_bind's
// glibc_control_test, so the program doubles as that control.
#include <dlfcn.h>
#include <string.h>

#include "elfc/preload_test_util.h"
#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"

namespace {

// True if this process's malloc is glibc's own.
bool MallocIsGlibc() {
  Dl_info info;
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) {
    return false;
  }
  const char* base = strrchr(info.dli_fname, '/');
  base = base == nullptr ? info.dli_fname : base + 1;
  return strncmp(base, "libc.so", 7) == 0;
}

malloc_bind::CApi Process() {
  malloc_bind::CApi api = malloc_bind::ProcessCApi();
  if (MallocIsGlibc()) {
    api.name = "glibc";
    api.pvalloc_zero_is_page = false;  // see glibc_control_test.cc
    // glibc rejects aligned_alloc(65, 64) from 2.38 on; this machine's may
    // be older (glibc_control_test.cc checks the version).
    api.aligned_alloc_rejects_non_power_of_two = false;
  } else {
    api.name = "preloaded";
  }
  return api;
}

malloc_bind::CxxApi ProcessCxx() {
  malloc_bind::CxxApi api = malloc_bind::ProcessCxxApi();
  if (MallocIsGlibc()) {
    api.name = "libstdc++";
    api.aligned_new_checks_overflow = false;  // see glibc_control_test.cc
  } else {
    api.name = "preloaded";
  }
  return api;
}

}  // namespace

MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Process, Process());
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(Process, ProcessCxx());

int main(int argc, char** argv) {
  elfc::test::CheckPreload("c_api_conformance");
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
