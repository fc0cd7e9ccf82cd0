// The control: both conformance suites over the process's own allocator,
// i.e. glibc 2.36's malloc and libstdc++'s operators. Every check that
// passes for malloc_bind must pass here too, except the deliberate
// deviations named by the CApi / CxxApi flags cleared below; a check that
// fails here is a wrong check, not a glibc bug.
#include <gnu/libc-version.h>

#include <cstdio>

#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"

namespace {

// True if the running glibc is at least major.minor.
bool GlibcAtLeast(int major, int minor) {
  int have_major = 0, have_minor = 0;
  if (std::sscanf(gnu_get_libc_version(), "%d.%d", &have_major,
                  &have_minor) != 2) {
    return false;
  }
  return have_major > major || (have_major == major && have_minor >= minor);
}

malloc_bind::CApi Glibc() {
  malloc_bind::CApi api = malloc_bind::ProcessCApi();
  api.name = "glibc";
  // glibc 2.36's pvalloc rounds with -(pagesize - 1): pvalloc(0) is a 1-byte
  // (24 usable) block. malloc_bind returns a page.
  api.pvalloc_zero_is_page = false;
  // glibc up to 2.37 rounds aligned_alloc's non-power-of-two alignments up
  // (like memalign); 2.38 fails them with EINVAL, as malloc_bind does.
  api.aligned_alloc_rejects_non_power_of_two = GlibcAtLeast(2, 38);
  return api;
}

malloc_bind::CxxApi Libstdcxx() {
  malloc_bind::CxxApi api = malloc_bind::ProcessCxxApi();
  api.name = "libstdc++";
  // libstdc++ 12's aligned new rounds the size up without an overflow check:
  // new(SIZE_MAX, align_val_t(64)) succeeds with a tiny block. malloc_bind
  // throws bad_alloc.
  api.aligned_new_checks_overflow = false;
  return api;
}

}  // namespace

MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Glibc, Glibc());
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(Libstdcxx, Libstdcxx());
