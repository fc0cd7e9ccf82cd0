// Tests for leaky_alloc.h: freed memory stays allocated and readable until
// the LeakyAlloc goes (and then it is all released: LeakSanitizer checks
// that under --config=asan), and the leaky object allocators meet the
// concepts and construct/destroy as documented.
#include "object_alloc_test/leaky_alloc.h"

#include <cstdint>
#include <cstring>
#include <set>

#include "gtest/gtest.h"
#include "object_alloc/object_alloc.h"

namespace object_alloc_test {
namespace {

static_assert(object_alloc::UntypedObjectAlloc<LeakyUntypedObjectAlloc>);
static_assert(object_alloc::ObjectAlloc<LeakyObjectAlloc<int>>);
static_assert(object_alloc::IsThreadSafe<LeakyUntypedObjectAlloc>());
static_assert(object_alloc::IsThreadSafe<LeakyObjectAlloc<int>>());

TEST(LeakyAllocTest, DeallocateKeepsMemoryReadable) {
  LeakyAlloc leaky;
  auto* p = static_cast<unsigned char*>(leaky.Allocate(256, 64));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  std::memset(p, 0x3c, 256);
  leaky.Deallocate(p, 256, 64);
  EXPECT_EQ(leaky.deallocations(), 1u);
  EXPECT_EQ(leaky.blocks(), 1u) << "still held";
  for (int i = 0; i < 256; ++i) ASSERT_EQ(p[i], 0x3c) << "contents kept";
  // A new allocation never reuses the freed block.
  void* q = leaky.Allocate(256, 64);
  EXPECT_NE(q, p);
  EXPECT_EQ(leaky.blocks(), 2u);
}

TEST(LeakyAllocTest, BadArgumentsReturnNull) {
  LeakyAlloc leaky;
  EXPECT_EQ(leaky.Allocate(0, 8), nullptr);
  EXPECT_EQ(leaky.Allocate(8, 0), nullptr);
  EXPECT_EQ(leaky.Allocate(8, 3), nullptr);
  EXPECT_EQ(leaky.blocks(), 0u);
}

TEST(LeakyObjectAllocTest, UntypedHandsOutDistinctAlignedBlocks) {
  LeakyAlloc leaky;
  LeakyUntypedObjectAlloc alloc(leaky, object_alloc::Layout{48, 16});
  EXPECT_EQ(alloc.layout(), (object_alloc::Layout{48, 16}));
  std::set<void*> seen;
  for (int i = 0; i < 100; ++i) {
    void* p = alloc.Allocate();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    EXPECT_TRUE(seen.insert(p).second);
    if (i % 2 == 0) alloc.Deallocate(p);
  }
  EXPECT_EQ(leaky.blocks(), 100u);
  EXPECT_EQ(leaky.deallocations(), 50u);
}

int g_live = 0;
struct Counted {
  Counted() noexcept { ++g_live; }
  ~Counted() { --g_live; }
  std::uint64_t payload = 7;
};

TEST(LeakyObjectAllocTest, TypedConstructsAndDestroys) {
  LeakyAlloc leaky;
  LeakyObjectAlloc<Counted> alloc(leaky);
  Counted* a = alloc.Allocate();
  Counted* b = alloc.Allocate();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(g_live, 2);
  EXPECT_EQ(a->payload, 7u);
  alloc.Deallocate(a);
  EXPECT_EQ(g_live, 1);
  alloc.Deallocate(b);
  EXPECT_EQ(g_live, 0);
}

}  // namespace
}  // namespace object_alloc_test
