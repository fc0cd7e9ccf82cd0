// malloc_bind over elfmalloc's general allocator (ElfBackend in
// test_backends.h, the binding //elfc uses): both conformance suites.
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "elfmalloc/general_allocator.h"
#include "gtest/gtest.h"
#include "malloc_bind/c_api_conformance.h"
#include "malloc_bind/cxx_api_conformance.h"
#include "malloc_bind/malloc_bind.h"
#include "malloc_bind/test_backends.h"

MALLOC_BIND_DEFINE_C_API(mb_elf_, malloc_bind::backends::ElfBackend)

MALLOC_BIND_INSTANTIATE_C_API_CONFORMANCE(Elfmalloc,
                                          MALLOC_BIND_C_API_OF(mb_elf_));
MALLOC_BIND_INSTANTIATE_CXX_API_CONFORMANCE(
    Elfmalloc,
    malloc_bind::CxxApiOf<malloc_bind::backends::ElfBackend>("elfmalloc"));

namespace malloc_bind {
namespace {

// Every elfmalloc class is 16-byte aligned (kDefaultAlignment 16): a
// 16-byte alignment request of a tiny size takes the plain path and must
// still get 16.
TEST(ElfmallocBindingTest, SixteenByteAlignmentOfTinyBlocks) {
  for (int i = 0; i < 64; ++i) {
    void* p = mb_elf_memalign(16, 1);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    void* q = nullptr;
    ASSERT_EQ(mb_elf_posix_memalign(&q, 16, 8), 0);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % 16, 0u);
    mb_elf_free(p);
    mb_elf_free(q);
  }
}

// The bound functions really are elfmalloc's.
TEST(ElfmallocBindingTest, BlocksComeFromElfmalloc) {
  void* p = mb_elf_malloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(mb_elf_malloc_usable_size(p), elfmalloc::UsableSize(p));
  mb_elf_free(p);
}

// The backend promises (kDeallocatesNull, kAllocatesAnySize) that let
// malloc and free skip their own tests hold.
TEST(ElfmallocBindingTest, BackendTakesNullAndOversizedRequests) {
  using B = elfmalloc::MallocBackend;
  static_assert(DeallocatesNull<B> && AllocatesAnySize<B>);
  B::Deallocate(nullptr);
  for (std::size_t n : {kMaxSize + 1, kMaxSize / 2 + 1,
                        ~std::size_t{0} - 4096, ~std::size_t{0}}) {
    errno = 0;
    EXPECT_EQ(B::Allocate(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
}

}  // namespace
}  // namespace malloc_bind
