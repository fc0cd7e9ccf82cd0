// The whole process on malloc_bind: this binary's malloc is
// :elfmalloc_override (elfmalloc bound with the unprefixed macros, as in
// //elfc). Runs both conformance suites against the process's real
// functions and operators, and checks that they really are elfmalloc's,
// including for allocations glibc makes internally.
#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <string>
#include <vector>

#include "elfmalloc/general_allocator.h"
#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"

// Strict: malloc_bind's own semantics, no glibc deviations allowed.
MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Override, malloc_bind::ProcessCApi());
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(Override,
                                            malloc_bind::ProcessCxxApi());

namespace {

// elfmalloc::UsableSize aborts ("not allocated by elfmalloc") on a foreign
// block, so each check below fails loudly if the block came from glibc.
TEST(OverrideTest, MallocAndNewAreElfmalloc) {
  void* p = malloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(malloc_usable_size(p), elfmalloc::UsableSize(p));
  free(p);
  auto q = std::make_unique<int[]>(1000);
  EXPECT_GE(elfmalloc::UsableSize(q.get()), 1000 * sizeof(int));
  std::string s(5000, 'x');  // libstdc++'s allocator -> operator new
  EXPECT_GE(elfmalloc::UsableSize(s.data()), 5000u);
}

// glibc calls malloc through its PLT, so a definition that was not exported
// (hidden visibility) would leave strdup on glibc's allocator.
TEST(OverrideTest, GlibcInternalAllocationsUseTheOverride) {
  char* s = strdup("malloc_bind");
  ASSERT_NE(s, nullptr);
  EXPECT_GE(elfmalloc::UsableSize(s), 12u);
  free(s);
  char* path = realpath(".", nullptr);
  ASSERT_NE(path, nullptr);
  EXPECT_GE(elfmalloc::UsableSize(path), strlen(path) + 1);
  free(path);
}

// The C23 and legacy names are exported too (found by dlsym, which is how
// ProcessCApi sees them; this binary links with -rdynamic).
TEST(OverrideTest, OptionalFunctionsAreExported) {
  EXPECT_NE(dlsym(RTLD_DEFAULT, "free_sized"), nullptr);
  EXPECT_NE(dlsym(RTLD_DEFAULT, "free_aligned_sized"), nullptr);
  EXPECT_NE(dlsym(RTLD_DEFAULT, "cfree"), nullptr);
  EXPECT_EQ(mallopt(M_ARENA_MAX, 1), 1);
}

}  // namespace
