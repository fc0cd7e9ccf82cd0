// Tests for large_alloc: stamping/classification, alignment, usable size
// (page-rounded), remap keeping contents and alignment, statistics.
#include "elfmalloc/large_alloc.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "elfmalloc/alloc_type.h"
#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

void Fill(void* p, std::size_t n, unsigned seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; i += 97) b[i] = static_cast<unsigned char>(i * 31 + seed);
  if (n > 0) b[n - 1] = static_cast<unsigned char>(seed ^ 0x5a);
}
bool Check(const void* p, std::size_t n, unsigned seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; i += 97) {
    if (b[i] != static_cast<unsigned char>(i * 31 + seed)) return false;
  }
  return n == 0 || b[n - 1] == static_cast<unsigned char>(seed ^ 0x5a);
}

TEST(LargeAllocTest, PointersAreClassifiedAsLarge) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, kMiB + 1, 3 * kMiB,
                        2 * kMiB - 1, 2 * kMiB, 2 * kMiB + 1}) {
    void* p = LargeAlloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(ReadAllocType(p), AllocType::kLarge) << n;
    EXPECT_EQ(LargeHeaderOf(p)->base, static_cast<void*>(
        static_cast<char*>(p) - LargeHeaderOf(p)->header_space));
    EXPECT_EQ(LargeRequestedSize(p), n);
    LargeFree(p);
  }
}

TEST(LargeAllocTest, UsableSizeIsPageRounded) {
  const std::size_t page = mmap_alloc::PageSize();
  for (std::size_t n : {kMiB + 1, kMiB + page, 5 * kMiB + 17}) {
    void* p = LargeAlloc(n);
    ASSERT_NE(p, nullptr);
    const std::size_t u = LargeUsableSize(p);
    EXPECT_GE(u, n);
    EXPECT_LT(u - n, page);
    EXPECT_EQ(u % page, 0u);
    std::memset(p, 0xab, u);  // the whole usable size is writable
    LargeFree(p);
  }
}

TEST(LargeAllocTest, HonoursAlignmentUpToAndBeyondTwoMiB) {
  for (std::size_t align = 1; align <= 8 * kMiB; align <<= 1) {
    for (std::size_t n : {std::size_t{100}, kMiB + 3, 3 * kMiB}) {
      void* p = LargeAlloc(n, align);
      ASSERT_NE(p, nullptr) << align << " " << n;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << align;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % mmap_alloc::PageSize(), 0u);
      EXPECT_EQ(ReadAllocType(p), AllocType::kLarge) << align;
      Fill(p, n, 7);
      EXPECT_TRUE(Check(p, n, 7));
      LargeFree(p);
    }
  }
}

TEST(LargeAllocTest, RejectsBadAlignmentAndHugeSizes) {
  errno = 0;
  EXPECT_EQ(LargeAlloc(kMiB * 2, 3 * 4096), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(LargeAlloc(~std::size_t{0} - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(LargeAllocTest, ReallocKeepsContentsAndAlignment) {
  for (std::size_t align : {std::size_t{0}, std::size_t{64} << 10, 4 * kMiB}) {
    std::size_t n = 2 * kMiB + 5;
    void* p = LargeAlloc(n, align);
    ASSERT_NE(p, nullptr);
    Fill(p, n, 1);
    // Grow a lot (likely moves), then shrink, then grow by less than a page.
    void* q = LargeRealloc(p, 9 * kMiB);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(Check(q, n, 1));
    if (align != 0) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % align, 0u);
    }
    EXPECT_EQ(ReadAllocType(q), AllocType::kLarge);
    EXPECT_GE(LargeUsableSize(q), 9 * kMiB);
    Fill(q, 9 * kMiB, 2);
    void* r = LargeRealloc(q, kMiB + 100);
    ASSERT_NE(r, nullptr);
    // Bytes below the new size are unchanged.
    auto* b = static_cast<unsigned char*>(r);
    for (std::size_t i = 0; i + 1 < kMiB + 100; i += 97) {
      ASSERT_EQ(b[i], static_cast<unsigned char>(i * 31 + 2)) << i;
    }
    EXPECT_LT(LargeUsableSize(r), kMiB + 2 * mmap_alloc::PageSize());
    EXPECT_EQ(LargeRequestedSize(r), kMiB + 100);
    if (align != 0) {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(r) % align, 0u);
    }
    LargeFree(r);
  }
}

TEST(LargeAllocTest, StatsTrackMappedBytes) {
  const LargeStats before = GetLargeStats();
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeStats during = GetLargeStats();
  EXPECT_EQ(during.allocations, before.allocations + 1);
  EXPECT_GE(during.mapped_bytes, before.mapped_bytes + 3 * kMiB);
  p = LargeRealloc(p, 6 * kMiB);
  ASSERT_NE(p, nullptr);
  during = GetLargeStats();
  EXPECT_GE(during.mapped_bytes, before.mapped_bytes + 6 * kMiB);
  LargeFree(p);
  const LargeStats after = GetLargeStats();
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
}

}  // namespace
}  // namespace elfmalloc
