// Proves that a slab allocator on MmapBacking never calls malloc: not for its
// slabs, not for its pointer hash map (table and overflow buckets), not on
// reclamation or destruction. The test binary interposes the C allocation
// functions with counting wrappers around glibc's __libc_* entry points; a
// control test shows the counter does see HeapBacking's posix_memalign, so
// the zero counts are meaningful.
//
// Sanitizers replace malloc themselves, so under ASan/TSan (which the
// repository's configs announce with -DADDRESS_SANITIZER/-DTHREAD_SANITIZER)
// the interposers are compiled out and the tests skip; the target is also
// tagged noasan/notsan.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc/object_alloc.h"
#include "slab_alloc/backing.h"
#include "slab_alloc/slab_alloc.h"

#if defined(ADDRESS_SANITIZER) || defined(THREAD_SANITIZER) || \
    defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLAB_ALLOC_NO_INTERPOSE 1
#endif

namespace {
// Plain globals: touched by the interposers, which may run before main.
bool g_counting = false;
std::size_t g_calls = 0;
}  // namespace

#ifndef SLAB_ALLOC_NO_INTERPOSE
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t n, std::size_t size);
void* __libc_realloc(void* p, std::size_t size);
void* __libc_memalign(std::size_t align, std::size_t size);

void* malloc(std::size_t size) {
  if (g_counting) ++g_calls;
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  if (g_counting) ++g_calls;
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  if (g_counting) ++g_calls;
  return __libc_realloc(p, size);
}
void* memalign(std::size_t align, std::size_t size) {
  if (g_counting) ++g_calls;
  return __libc_memalign(align, size);
}
void* aligned_alloc(std::size_t align, std::size_t size) {
  if (g_counting) ++g_calls;
  return __libc_memalign(align, size);
}
int posix_memalign(void** out, std::size_t align, std::size_t size) {
  if (g_counting) ++g_calls;
  void* p = __libc_memalign(align, size);
  if (p == nullptr) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}  // extern "C"
#endif

namespace slab_alloc {
namespace {

// Exercises an allocator: many slabs (so a large-slab map grows, chains and
// shrinks), frees, reclamation, destruction. Returns malloc calls made.
template <class Builder>
std::size_t MallocCallsDuring(const Builder& builder, bool mmap) {
  g_calls = 0;
  g_counting = true;
  {
    auto run = [](auto alloc) {
      void* ptrs[3000];
      for (int round = 0; round < 2; ++round) {
        for (void*& p : ptrs) p = alloc.Allocate();
        for (void* p : ptrs) {
          alloc.Deallocate(static_cast<decltype(alloc.Allocate())>(p));
        }
        alloc.ReleaseEmptySlabs();
      }
      for (int i = 0; i < 100; ++i) ptrs[i] = alloc.Allocate();
      for (int i = 0; i < 100; ++i) {
        alloc.Deallocate(static_cast<decltype(alloc.Allocate())>(ptrs[i]));
      }
    };
    if (mmap) {
      run(builder.BuildMmap());
    } else {
      run(builder.Build());
    }
  }
  g_counting = false;
  return g_calls;
}

struct Obj {
  std::uint64_t words[12];
};

#ifdef SLAB_ALLOC_NO_INTERPOSE
#define SKIP_UNDER_SANITIZERS() GTEST_SKIP() << "sanitizers own malloc"
#else
#define SKIP_UNDER_SANITIZERS() (void)0
#endif

TEST(MmapBackingTest, ControlHeapBackingIsSeen) {
  SKIP_UNDER_SANITIZERS();
  EXPECT_GT(MallocCallsDuring(SlabAllocBuilder<Obj>::Default(), false), 0u);
  EXPECT_GT(MallocCallsDuring(SlabAllocBuilder<Obj>::Default().Kind(
                                  SlabKind::kLarge),
                              false),
            0u);
}

TEST(MmapBackingTest, SmallSlabsNeverCallMalloc) {
  SKIP_UNDER_SANITIZERS();
  auto typed = SlabAllocBuilder<Obj>::Default().Kind(SlabKind::kSmall);
  ASSERT_EQ(typed.BuildMmap().kind(), SlabKind::kSmall);
  EXPECT_EQ(MallocCallsDuring(typed, true), 0u);
  // Small slabs larger than a page (aligned mmap by over-map and trim).
  UntypedSlabAllocBuilder<> big(object_alloc::Layout{3000, 8});
  ASSERT_GT(big.BuildMmap().stats().slab_size, mmap_alloc::PageSize());
  EXPECT_EQ(MallocCallsDuring(big, true), 0u);
}

TEST(MmapBackingTest, LargeSlabsAndTheirHashMapNeverCallMalloc) {
  SKIP_UNDER_SANITIZERS();
  auto typed = SlabAllocBuilder<Obj>::Default().Kind(SlabKind::kLarge);
  ASSERT_EQ(typed.BuildMmap().kind(), SlabKind::kLarge);
  EXPECT_EQ(MallocCallsDuring(typed, true), 0u);
  UntypedSlabAllocBuilder<> big(object_alloc::Layout{5000, 8});
  ASSERT_EQ(big.BuildMmap().kind(), SlabKind::kLarge);
  EXPECT_EQ(MallocCallsDuring(big, true), 0u);
}

}  // namespace
}  // namespace slab_alloc
