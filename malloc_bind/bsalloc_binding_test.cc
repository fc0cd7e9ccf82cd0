// malloc_bind over bsalloc (through the header-keeping BsallocBackend of
// test_backends.h): both conformance suites, on a minimal backend with no
// optional members, whose blocks are page-sized mappings.
#include <cstdint>

#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"
#include "malloc_bind/malloc_bind.h"
#include "malloc_bind/test_backends.h"

MALLOC_BIND_DEFINE_C_API(mb_bsalloc_, malloc_bind::backends::BsallocBackend)

MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Bsalloc,
                                          MALLOC_BIND_C_API_OF(mb_bsalloc_));
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(
    Bsalloc,
    malloc_bind::CxxApiOf<malloc_bind::backends::BsallocBackend>("bsalloc"));

namespace malloc_bind {
namespace {

// The header keeps blocks 16-aligned (glibc's guarantee; bsalloc itself
// gives pages) and malloc_usable_size exposes bsalloc's slack.
TEST(BsallocBindingTest, BlocksAre16AlignedAndExposeTheSlack) {
  for (std::size_t n : {0, 1, 100, 4080, 4081, 40000}) {
    void* p = mb_bsalloc_malloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    const std::size_t usable = mb_bsalloc_malloc_usable_size(p);
    EXPECT_GE(usable, n);
    // A small-class block is 4 KiB minus the 16-byte header.
    if (n <= 4080) {
      EXPECT_EQ(usable, 4080u);
    }
    mb_bsalloc_free(p);
  }
}

}  // namespace
}  // namespace malloc_bind
