// Tests for large_alloc: stamping/classification, alignment, usable size
// (page-rounded), remap keeping contents and alignment, statistics, and the
// cache of freed regions (reuse, cut, growth, cap, decay, release, zeroing,
// threads).
#include "elfmalloc/large_alloc.h"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <time.h>

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
  for (std::size_t i = 0; i + 1 < n; i += 97) {  // Fill's last byte differs
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
  LargeCacheRelease();
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

void SleepMs(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
  nanosleep(&ts, nullptr);
}

// The general allocator's defaults (options.h).
constexpr std::size_t kDefaultLargeCacheBytes = std::size_t{128} << 20;
constexpr std::uint64_t kDefaultLargeCacheDecayMs = 1000;

// Each cache test starts from an empty cache with the default limits.
class LargeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLargeCacheLimits(kDefaultLargeCacheBytes, kDefaultLargeCacheDecayMs);
    LargeCacheRelease();
  }
  void TearDown() override {
    SetLargeCacheLimits(kDefaultLargeCacheBytes, kDefaultLargeCacheDecayMs);
    LargeCacheRelease();
  }
};

TEST_F(LargeCacheTest, FreedBlockIsReusedWithoutMapping) {
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  Fill(p, 3 * kMiB, 1);
  LargeFree(p);
  EXPECT_GE(GetLargeStats().cached_bytes, 3 * kMiB);
  const std::size_t reuses = GetLargeStats().reuses;
  void* q = LargeAlloc(3 * kMiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, p);  // the same region, no new mapping
  EXPECT_EQ(GetLargeStats().reuses, reuses + 1);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(ReadAllocType(q), AllocType::kLarge);
  EXPECT_EQ(LargeRequestedSize(q), 3 * kMiB);
  Fill(q, 3 * kMiB, 2);
  EXPECT_TRUE(Check(q, 3 * kMiB, 2));
  LargeFree(q);
}

TEST_F(LargeCacheTest, LargerRegionIsSplitAndTheRestStaysCached) {
  const std::size_t page = mmap_alloc::PageSize();
  void* p = LargeAlloc(8 * kMiB);
  ASSERT_NE(p, nullptr);
  Fill(p, 8 * kMiB, 3);
  LargeFree(p);
  // 2 MiB + a header page: split at the 4 MiB boundary of the region; the
  // head (4 MiB) is the block.
  void* q = LargeAlloc(2 * kMiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, p);
  EXPECT_EQ(LargeUsableSize(q), 4 * kMiB - page);
  EXPECT_EQ(GetLargeStats().cached_bytes, 4 * kMiB + page);
  Fill(q, 2 * kMiB, 4);
  EXPECT_TRUE(Check(q, 2 * kMiB, 4));
  // The remainder serves the next request, without disturbing q.
  char* const base = static_cast<char*>(LargeHeaderOf(q)->base);
  void* r = LargeAlloc(3 * kMiB);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(static_cast<char*>(r), base + 4 * kMiB + page);
  EXPECT_EQ(ReadAllocType(r), AllocType::kLarge);
  Fill(r, 3 * kMiB, 5);
  EXPECT_TRUE(Check(q, 2 * kMiB, 4));
  EXPECT_TRUE(Check(r, 3 * kMiB, 5));
  // (r took 3 MiB of the 4 MiB remainder: too little would have remained
  // for another split, so its tail went back to the OS.) Freed, the two
  // halves merge again: one region serves 6.5 MiB in place.
  LargeFree(r);
  LargeFree(q);
  EXPECT_EQ(GetLargeStats().cached_bytes, 7 * kMiB + page);
  void* whole = LargeAlloc(6 * kMiB + kMiB / 2);
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(whole, p);
  Fill(whole, 6 * kMiB + kMiB / 2, 6);
  EXPECT_TRUE(Check(whole, 6 * kMiB + kMiB / 2, 6));
  LargeFree(whole);
}

// Less than 2 MiB would remain past the split point: the tail is cut.
TEST_F(LargeCacheTest, LargerRegionIsCutWhenLittleWouldRemain) {
  void* p = LargeAlloc(5 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeFree(p);
  void* q = LargeAlloc(3 * kMiB);  // split point 4 MiB: 1 MiB would remain
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, p);
  EXPECT_LT(LargeUsableSize(q), 3 * kMiB + 2 * mmap_alloc::PageSize());
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  Fill(q, 3 * kMiB, 6);
  EXPECT_TRUE(Check(q, 3 * kMiB, 6));
  LargeFree(q);
}

TEST_F(LargeCacheTest, SmallerRegionIsGrown) {
  void* p = LargeAlloc(2 * kMiB);
  ASSERT_NE(p, nullptr);
  Fill(p, 2 * kMiB, 4);
  LargeFree(p);
  void* q = LargeAlloc(7 * kMiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_GE(LargeUsableSize(q), 7 * kMiB);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(LargeHeaderOf(q)) %
                kStampAlignment,
            0u);
  EXPECT_EQ(ReadAllocType(q), AllocType::kLarge);
  Fill(q, 7 * kMiB, 5);
  EXPECT_TRUE(Check(q, 7 * kMiB, 5));
  LargeFree(q);
}

// A block freed between two cached neighbours merges with both.
TEST_F(LargeCacheTest, FreedBlockMergesWithBothNeighbours) {
  const std::size_t page = mmap_alloc::PageSize();
  void* whole = LargeAlloc(12 * kMiB);
  ASSERT_NE(whole, nullptr);
  LargeFree(whole);
  // Three pieces split off the same region, back to back.
  void* a = LargeAlloc(2 * kMiB);  // head: 4 MiB
  void* b = LargeAlloc(2 * kMiB);  // next 4 MiB
  void* c = LargeAlloc(3 * kMiB);  // the rest
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(static_cast<char*>(b), static_cast<char*>(a) + 4 * kMiB);
  EXPECT_EQ(static_cast<char*>(c), static_cast<char*>(a) + 8 * kMiB);
  LargeFree(a);
  LargeFree(c);
  const std::size_t cached = GetLargeStats().cached_bytes;
  LargeFree(b);  // joins a's and c's regions into one
  EXPECT_EQ(GetLargeStats().cached_bytes, cached + 4 * kMiB);
  void* again = LargeAlloc(10 * kMiB);  // one region serves it in place
  EXPECT_EQ(again, a);
  Fill(again, 10 * kMiB, 7);
  EXPECT_TRUE(Check(again, 10 * kMiB, 7));
  LargeFree(again);
  (void)page;
}

// No cached region is big enough, but two are together: their pages are
// gathered into one region (moved, not copied or faulted in again).
TEST_F(LargeCacheTest, RegionsAreGatheredWhenNoneIsBigEnough) {
  const std::size_t page = mmap_alloc::PageSize();
  void* a = LargeAlloc(3 * kMiB);
  void* spacer = LargeAlloc(3 * kMiB);  // keeps a and b from merging
  void* b = LargeAlloc(4 * kMiB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(spacer, nullptr);
  ASSERT_NE(b, nullptr);
  std::memset(a, 0x11, 3 * kMiB);
  std::memset(b, 0x22, 4 * kMiB);
  LargeFree(a);
  LargeFree(b);
  ASSERT_EQ(GetLargeStats().cached_bytes, 7 * kMiB + 2 * page);
  const std::size_t reuses = GetLargeStats().reuses;
  auto* g = static_cast<unsigned char*>(LargeAlloc(6 * kMiB));
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(GetLargeStats().reuses, reuses + 1);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_GE(LargeUsableSize(g), 6 * kMiB);
  EXPECT_EQ(ReadAllocType(g), AllocType::kLarge);
  // Every page of the block is already resident: nothing faults in.
  std::vector<unsigned char> vec(6 * kMiB / page);
  ASSERT_EQ(mincore(g, 6 * kMiB, vec.data()), 0);
  std::size_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  EXPECT_EQ(resident, vec.size());
  Fill(g, 6 * kMiB, 9);
  EXPECT_TRUE(Check(g, 6 * kMiB, 9));
  LargeFree(g);
  LargeFree(spacer);
}

// Every successful allocation leaves errno alone, whatever cache path it
// took (a refused mremap inside one of them sets errno before a fresh
// mapping succeeds; the malloc fuzzer found that).
TEST_F(LargeCacheTest, SuccessLeavesErrnoAlone) {
  std::mt19937 rng(12345);
  std::vector<void*> live;
  for (int i = 0; i < 400; ++i) {
    if (live.size() < 6 && (rng() % 3 != 0)) {
      errno = 1234;
      const std::size_t n = (1 + rng() % 24) * kMiB / 2 + rng() % 8192;
      void* p = LargeAlloc(n);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(errno, 1234) << "after LargeAlloc(" << n << ")";
      live.push_back(p);
    } else if (!live.empty()) {
      const std::size_t k = rng() % live.size();
      LargeFree(live[k]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    }
  }
  for (void* p : live) LargeFree(p);
}

TEST_F(LargeCacheTest, CapBoundsCachedBytes) {
  SetLargeCacheLimits(8 * kMiB, 0);
  std::vector<void*> blocks;
  for (int i = 0; i < 6; ++i) {
    blocks.push_back(LargeAlloc(3 * kMiB));
    ASSERT_NE(blocks.back(), nullptr);
  }
  // The cap is max(8 MiB, twice the bytes of live large blocks).
  for (void* p : blocks) {
    LargeFree(p);
    const LargeStats st = GetLargeStats();
    EXPECT_LE(st.cached_bytes, st.mapped_bytes > 4 * kMiB
                                   ? 2 * st.mapped_bytes
                                   : 8 * kMiB);
  }
  EXPECT_LE(GetLargeStats().cached_bytes, 8 * kMiB);
  EXPECT_GT(GetLargeStats().cached_bytes, 0u);
  // A block above the cap is never cached.
  void* big = LargeAlloc(9 * kMiB);
  ASSERT_NE(big, nullptr);
  const std::size_t cached = GetLargeStats().cached_bytes;
  LargeFree(big);
  EXPECT_EQ(GetLargeStats().cached_bytes, cached);
  // Cap 0: no caching at all.
  SetLargeCacheLimits(0, 0);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeFree(p);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
}

TEST_F(LargeCacheTest, UnusedRegionsDecay) {
  SetLargeCacheLimits(kDefaultLargeCacheBytes, 50);
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeFree(p);
  EXPECT_GE(GetLargeStats().cached_bytes, 3 * kMiB);
  EXPECT_EQ(LargeCacheDecay(), 0u);  // not a whole period yet
  SleepMs(120);
  EXPECT_GE(LargeCacheDecay(), 3 * kMiB);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
}

// LargeCacheDecay is a no-op until the oldest region has been cached for a
// whole period, then returns exactly the expired regions.
TEST_F(LargeCacheTest, DecayWaitsForTheOldestRegion) {
  SetLargeCacheLimits(kDefaultLargeCacheBytes, 100);
  void* a = LargeAlloc(3 * kMiB);
  ASSERT_NE(a, nullptr);
  LargeFree(a);
  SleepMs(60);
  void* b = LargeAlloc(5 * kMiB);  // grows a, or maps afresh
  ASSERT_NE(b, nullptr);
  void* c = LargeAlloc(2 * kMiB);
  ASSERT_NE(c, nullptr);
  LargeFree(c);  // cached at t = 60 ms
  EXPECT_EQ(LargeCacheDecay(), 0u);
  SleepMs(150);
  EXPECT_GE(LargeCacheDecay(), 2 * kMiB);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  LargeFree(b);
  EXPECT_EQ(LargeCacheDecay(), 0u);  // b was just cached
}

TEST_F(LargeCacheTest, ReleaseUnmapsEverything) {
  void* a = LargeAlloc(3 * kMiB);
  void* b = LargeAlloc(5 * kMiB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  LargeFree(a);
  LargeFree(b);
  EXPECT_GE(LargeCacheRelease(), 8 * kMiB);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(LargeCacheRelease(), 0u);
}

TEST_F(LargeCacheTest, ZeroedAllocationClearsReusedRegion) {
  void* p = LargeAlloc(4 * kMiB);
  ASSERT_NE(p, nullptr);
  std::memset(p, 0xab, 4 * kMiB);
  LargeFree(p);
  auto* q = static_cast<unsigned char*>(LargeAllocZeroed(4 * kMiB));
  ASSERT_EQ(static_cast<void*>(q), p);  // reused, so it had to be cleared
  for (std::size_t i = 0; i < 4 * kMiB; ++i) {
    if (q[i] != 0) FAIL() << "byte " << i << " not zero";
  }
  LargeFree(q);
  // Fresh: nothing cached, the kernel's zero pages.
  LargeCacheRelease();
  q = static_cast<unsigned char*>(LargeAllocZeroed(4 * kMiB));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[4 * kMiB - 1], 0);
  LargeFree(q);
}

TEST_F(LargeCacheTest, OverAlignedBlocksAreNotCached) {
  void* p = LargeAlloc(3 * kMiB, 4 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeFree(p);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
}

// Two threads allocate, check and free random sizes through the cache
// (TSan checks the lock protocol; content checks catch a region handed to
// two owners).
TEST_F(LargeCacheTest, ThreadsShareTheCache) {
  auto work = [](unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::pair<void*, std::size_t>> live;
    for (int i = 0; i < 300; ++i) {
      if (live.size() < 4 && (rng() & 1)) {
        const std::size_t n = (1 + rng() % 12) * kMiB / 2 + rng() % 4096;
        void* p = LargeAlloc(n);
        ASSERT_NE(p, nullptr);
        Fill(p, n, seed + static_cast<unsigned>(i));
        live.push_back({p, n});
      } else if (!live.empty()) {
        const std::size_t k = rng() % live.size();
        auto [p, n] = live[k];
        (void)n;
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        LargeFree(p);
      }
    }
    for (auto [p, n] : live) LargeFree(p);
  };
  // Content check at free: refill with a per-block seed and verify it.
  auto checked = [](unsigned seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < 200; ++i) {
      const std::size_t n = (1 + rng() % 12) * kMiB / 2 + rng() % 4096;
      void* p = LargeAlloc(n);
      ASSERT_NE(p, nullptr);
      const unsigned tag = seed * 1000 + static_cast<unsigned>(i);
      Fill(p, n, tag);
      std::this_thread::yield();
      ASSERT_TRUE(Check(p, n, tag)) << "block shared between threads";
      LargeFree(p);
    }
  };
  std::thread a(work, 7u), b(checked, 9u), c(checked, 11u);
  a.join();
  b.join();
  c.join();
  EXPECT_LE(GetLargeStats().cached_bytes, kDefaultLargeCacheBytes);
}

}  // namespace
}  // namespace elfmalloc
