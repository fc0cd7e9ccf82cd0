// The control: both conformance suites over the process's own allocator,
// i.e. glibc 2.36's malloc and libstdc++'s operators. Every check that
// passes for malloc_bind must pass here too, except the two deliberate
// deviations named by the CApi / CxxApi flags cleared below; a check that
// fails here is a wrong check, not a glibc bug.
#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"

namespace {

malloc_bind::CApi Glibc() {
  malloc_bind::CApi api = malloc_bind::ProcessCApi();
  api.name = "glibc";
  // glibc 2.36's pvalloc rounds with -(pagesize - 1): pvalloc(0) is a 1-byte
  // (24 usable) block. malloc_bind returns a page.
  api.pvalloc_zero_is_page = false;
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
