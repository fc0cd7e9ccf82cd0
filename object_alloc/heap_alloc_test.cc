// Tests for heap_alloc.h. The full object_alloc_test suite also runs on both
// heap allocators (see //object_alloc_test:heap_alloc_suite_test); these are
// the unit-level checks: value-initialisation, alignment including extended
// alignment, distinctness, and the defined answer for an invalid layout.
#include "object_alloc/heap_alloc.h"

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc/object_alloc.h"

namespace object_alloc {
namespace {

static_assert(ObjectAlloc<HeapObjectAlloc<int>>);
static_assert(UntypedObjectAlloc<HeapUntypedObjectAlloc>);
static_assert(IsThreadSafe<HeapObjectAlloc<int>>());
static_assert(IsThreadSafe<HeapUntypedObjectAlloc>());

struct alignas(256) OverAligned {
  unsigned char bytes[512];
};

TEST(HeapObjectAllocTest, ValueInitialisesAndAligns) {
  HeapObjectAlloc<OverAligned> alloc;
  std::vector<OverAligned*> objects;
  for (int i = 0; i < 16; ++i) {
    OverAligned* p = alloc.Allocate();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 256, 0u);
    for (unsigned char b : p->bytes) ASSERT_EQ(b, 0);
    std::memset(p->bytes, 0xff, sizeof(p->bytes));
    objects.push_back(p);
  }
  EXPECT_EQ(std::set<OverAligned*>(objects.begin(), objects.end()).size(),
            objects.size());
  for (OverAligned* p : objects) alloc.Deallocate(p);
}

TEST(HeapUntypedObjectAllocTest, AlignsToEveryPowerOfTwo) {
  for (std::size_t align = 1; align <= 8192; align *= 2) {
    HeapUntypedObjectAlloc alloc(Layout{align * 3, align});
    ASSERT_TRUE(alloc.layout().IsValid());
    std::vector<void*> blocks;
    for (int i = 0; i < 4; ++i) {
      void* p = alloc.Allocate();
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u)
          << "align " << align;
      std::memset(p, 0xab, alloc.layout().size);
      blocks.push_back(p);
    }
    for (void* p : blocks) alloc.Deallocate(p);
  }
}

TEST(HeapUntypedObjectAllocTest, InvalidLayoutReturnsNull) {
  EXPECT_EQ(HeapUntypedObjectAlloc(Layout{0, 1}).Allocate(), nullptr);
  EXPECT_EQ(HeapUntypedObjectAlloc(Layout{12, 8}).Allocate(), nullptr);
  EXPECT_EQ(HeapUntypedObjectAlloc(Layout{16, 3}).Allocate(), nullptr);
}

}  // namespace
}  // namespace object_alloc
