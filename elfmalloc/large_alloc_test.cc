// Tests for large_alloc: stamping/classification, alignment, usable size
// (page-rounded), realloc keeping contents and alignment, statistics, and the
// heap of units (reuse, placement, coalescing, in-place realloc, residency,
// cap, decay, release, zeroing, threads, bounds).
#include "elfmalloc/large_alloc.h"

#include <atomic>
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

std::size_t ResidentPages(const void* p, std::size_t n) {
  const std::size_t page = mmap_alloc::PageSize();
  std::vector<unsigned char> vec((n + page - 1) / page);
  if (mincore(const_cast<void*>(p), n, vec.data()) != 0) return SIZE_MAX;
  std::size_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  return resident;
}

char* UnitOf(const void* p) {
  return static_cast<char*>(LargeHeaderOf(p)->base);
}

TEST_F(LargeCacheTest, FreedBlockIsReusedWithoutMapping) {
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  Fill(p, 3 * kMiB, 1);
  const LargeStats before = GetLargeStats();
  LargeFree(p);
  EXPECT_GE(GetLargeStats().cached_bytes, 3 * kMiB);
  void* q = LargeAlloc(3 * kMiB);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q, p);  // the same units, no new mapping
  EXPECT_EQ(GetLargeStats().reuses, before.reuses + 1);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(GetLargeStats().arenas, before.arenas);
  EXPECT_EQ(ReadAllocType(q), AllocType::kLarge);
  EXPECT_EQ(LargeRequestedSize(q), 3 * kMiB);
  // Its pages are still resident: nothing faults in.
  EXPECT_EQ(ResidentPages(q, 3 * kMiB), 3 * kMiB / mmap_alloc::PageSize());
  Fill(q, 3 * kMiB, 2);
  EXPECT_TRUE(Check(q, 3 * kMiB, 2));
  LargeFree(q);
}

TEST_F(LargeCacheTest, BlocksSitOnUnitBoundaries) {
  const std::size_t page = mmap_alloc::PageSize();
  void* a = LargeAlloc(300 * 1024);
  void* b = LargeAlloc(3 * kMiB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (void* p : {a, b}) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(UnitOf(p)) % kStampAlignment,
              0u);
    EXPECT_EQ(static_cast<char*>(p), UnitOf(p) + page);
  }
  // A fresh arena: the blocks are placed one after the other.
  EXPECT_EQ(UnitOf(b), UnitOf(a) + kStampAlignment);
  LargeFree(a);
  LargeFree(b);
}

// Free neighbours coalesce: two freed blocks serve one that needs both.
TEST_F(LargeCacheTest, FreeNeighboursCoalesce) {
  void* a = LargeAlloc(3 * kMiB);  // units 0-1
  void* b = LargeAlloc(3 * kMiB);  // units 2-3
  void* c = LargeAlloc(3 * kMiB);  // units 4-5, keeps the run closed
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(UnitOf(b), UnitOf(a) + 2 * kStampAlignment);
  LargeFree(b);
  LargeFree(a);
  void* whole = LargeAlloc(7 * kMiB);  // four units: exactly the hole
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(whole, a);
  Fill(whole, 7 * kMiB, 3);
  EXPECT_TRUE(Check(whole, 7 * kMiB, 3));
  LargeFree(whole);
  LargeFree(c);
}

// Among runs whose units are all resident, the shortest that fits is
// taken, not the first.
TEST_F(LargeCacheTest, BestFittingRunIsTaken) {
  const std::size_t page = mmap_alloc::PageSize();
  void* big_hole = LargeAlloc(3 * kStampAlignment - page);  // 3 whole units
  void* wall1 = LargeAlloc(kMiB);
  void* small_hole = LargeAlloc(kStampAlignment - page);  // 1 whole unit
  void* wall2 = LargeAlloc(kMiB);
  ASSERT_NE(big_hole, nullptr);
  ASSERT_NE(wall1, nullptr);
  ASSERT_NE(small_hole, nullptr);
  ASSERT_NE(wall2, nullptr);
  void* const small_at = small_hole;
  LargeFree(big_hole);
  LargeFree(small_hole);
  void* p = LargeAlloc(kMiB + 12345);
  EXPECT_EQ(p, small_at);
  void* q = LargeAlloc(4 * kMiB);
  EXPECT_EQ(q, big_hole);
  LargeFree(p);
  LargeFree(q);
  LargeFree(wall1);
  LargeFree(wall2);
}

// Resident free units are reused before fresh ones, even when a fresh run
// fits better: the pages a program touches stay a compact set.
TEST_F(LargeCacheTest, ResidentUnitsAreReusedFirst) {
  const std::size_t page = mmap_alloc::PageSize();
  void* a = LargeAlloc(5 * kMiB);  // units 0-2
  void* wall = LargeAlloc(kMiB);   // unit 3
  // Units 4-29 of the 32 of a fresh 64 MiB arena; 30-31 stay fresh.
  void* filler = LargeAlloc(26 * kStampAlignment - page);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(wall, nullptr);
  ASSERT_NE(filler, nullptr);
  ASSERT_EQ(GetLargeStats().arenas, 1u);
  std::memset(a, 1, 5 * kMiB);
  LargeFree(a);
  // The fresh run (2 units) fits better than a's (3), but a's units have
  // their pages.
  void* b = LargeAlloc(kMiB);
  EXPECT_EQ(b, a);
  LargeFree(b);
  LargeFree(filler);
  LargeFree(wall);
}

TEST_F(LargeCacheTest, ReallocGrowsIntoFreeUnitsInPlace) {
  void* a = LargeAlloc(3 * kMiB);
  void* b = LargeAlloc(3 * kMiB);
  void* wall = LargeAlloc(kMiB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(wall, nullptr);
  Fill(a, 3 * kMiB, 4);
  LargeFree(b);
  void* g = LargeRealloc(a, 7 * kMiB);
  ASSERT_EQ(g, a);  // took b's units
  EXPECT_TRUE(Check(g, 3 * kMiB, 4));
  EXPECT_GE(LargeUsableSize(g), 7 * kMiB);
  Fill(g, 7 * kMiB, 5);
  // No room after it any more: its pages move (no copy, nothing faults) to
  // a mapping of its own, and its units go back to the heap empty.
  const std::size_t arenas = GetLargeStats().arenas;
  const std::size_t cached = GetLargeStats().cached_bytes;
  void* m = LargeRealloc(g, 9 * kMiB);
  ASSERT_NE(m, nullptr);
  EXPECT_NE(m, g);
  EXPECT_EQ(LargeHeaderOf(m)->arena, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(LargeHeaderOf(m)) %
                kStampAlignment,
            0u);
  EXPECT_EQ(ReadAllocType(m), AllocType::kLarge);
  EXPECT_EQ(ResidentPages(m, 7 * kMiB), 7 * kMiB / mmap_alloc::PageSize());
  EXPECT_TRUE(Check(m, 7 * kMiB, 5));
  EXPECT_EQ(GetLargeStats().arenas, arenas);
  EXPECT_LE(GetLargeStats().cached_bytes, cached + kStampAlignment);
  EXPECT_EQ(ResidentPages(g, 7 * kMiB), 0u);  // the old units: empty
  // Direct from now on: grown by mremap.
  void* m2 = LargeRealloc(m, 20 * kMiB);
  ASSERT_NE(m2, nullptr);
  EXPECT_TRUE(Check(m2, 7 * kMiB, 5));
  LargeFree(m2);
  LargeFree(wall);
}

// Blocks that realloc is growing are placed with room after them: several
// grown side by side each grow in place (placed one after the other, each
// would have to move at its first unit boundary).
TEST_F(LargeCacheTest, GrowingBlocksHaveRoomToGrowInPlace) {
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(LargeAllocForGrowth(300 * 1024));
    ASSERT_NE(blocks.back(), nullptr);
    Fill(blocks.back(), 300 * 1024, static_cast<unsigned>(i));
  }
  for (std::size_t step = 1; step <= 8; ++step) {
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      void* q = LargeRealloc(blocks[i], step * kMiB / 2 + 300 * 1024);
      ASSERT_EQ(q, blocks[i]) << "block " << i << " moved at step " << step;
    }
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_TRUE(Check(blocks[i], 300 * 1024, static_cast<unsigned>(i)));
    LargeFree(blocks[i]);
  }
}

TEST_F(LargeCacheTest, ReallocShrinkFreesTrailingUnits) {
  void* a = LargeAlloc(9 * kMiB);  // 5 units
  ASSERT_NE(a, nullptr);
  Fill(a, kMiB, 6);
  const std::size_t mapped = GetLargeStats().mapped_bytes;
  void* s = LargeRealloc(a, kMiB);
  ASSERT_EQ(s, a);
  EXPECT_TRUE(Check(s, kMiB, 6));
  EXPECT_LT(LargeUsableSize(s), kMiB + 2 * mmap_alloc::PageSize());
  EXPECT_LE(GetLargeStats().mapped_bytes + 7 * kMiB, mapped);
  void* next = LargeAlloc(6 * kMiB);  // the four units the shrink freed
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(UnitOf(next), UnitOf(s) + kStampAlignment);
  LargeFree(next);
  LargeFree(s);
}

// A unit whose pages are resident far past a small block's end gives the
// tail back when the block is placed (the block would hold it for nothing).
// With 4 KiB pages such a block goes to a packed unit (the next test), and
// every block that takes units of its own leaves less than 1 MiB past it.
TEST_F(LargeCacheTest, ResidentTailPastASmallBlockIsPurged) {
  const std::size_t page = mmap_alloc::PageSize();
  if (page == 4096) GTEST_SKIP() << "blocks this small are packed";
  void* p = LargeAlloc(kStampAlignment - page);  // exactly one unit
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kStampAlignment - page);
  char* unit = UnitOf(p);
  LargeFree(p);
  void* q = LargeAlloc(300 * 1024);
  ASSERT_EQ(UnitOf(q), unit);
  const std::size_t end = page + ((300 * 1024 + page - 1) & ~(page - 1));
  EXPECT_EQ(ResidentPages(unit + end, kStampAlignment - end), 0u);
  LargeFree(q);
}

// A packed unit made on a resident unit keeps its pages for the blocks it
// will hold (they count as freed pages: the cap and the decay period apply),
// and places blocks on them first.
TEST_F(LargeCacheTest, PackedUnitReusesAResidentUnitUntilDecay) {
  const std::size_t page = mmap_alloc::PageSize();
  if (page != 4096) GTEST_SKIP() << "packing needs 4 KiB pages";
  SetLargeCacheLimits(kDefaultLargeCacheBytes, 50);
  void* p = LargeAlloc(kStampAlignment - page);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kStampAlignment - page);
  char* unit = UnitOf(p);
  LargeFree(p);
  void* q = LargeAlloc(300 * 1024);
  ASSERT_EQ(LargeHeaderOf(q)->base, unit);
  ASSERT_NE(LargeHeaderOf(q)->packed, nullptr);
  void* r = LargeAlloc(600 * 1024);
  ASSERT_EQ(UnitOf(r), unit);
  std::memset(r, 2, 600 * 1024);
  // Nothing faulted in: every page of the unit was resident already.
  EXPECT_EQ(ResidentPages(unit, kStampAlignment) * page, kStampAlignment);
  SleepMs(120);
  EXPECT_GT(LargeCacheDecay(), 0u);
  EXPECT_EQ(ResidentPages(unit, kStampAlignment) * page,
            page + 300 * 1024 + 600 * 1024);
  LargeFree(q);
  LargeFree(r);
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
  // The units freed longest ago were purged: the last block's are resident.
  EXPECT_EQ(ResidentPages(blocks[0], 3 * kMiB), 0u);
  // Cap 0: nothing kept, and wholly free arenas go at once.
  SetLargeCacheLimits(0, 0);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(GetLargeStats().arenas, 0u);
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeFree(p);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(GetLargeStats().arenas, 0u);
}

TEST_F(LargeCacheTest, UnusedUnitsAndArenasDecay) {
  SetLargeCacheLimits(kDefaultLargeCacheBytes, 50);
  void* p = LargeAlloc(3 * kMiB);
  ASSERT_NE(p, nullptr);
  LargeFree(p);
  EXPECT_GE(GetLargeStats().cached_bytes, 3 * kMiB);
  EXPECT_EQ(GetLargeStats().arenas, 1u);
  EXPECT_EQ(LargeCacheDecay(), 0u);  // not a whole period yet
  SleepMs(120);
  EXPECT_GE(LargeCacheDecay(), 3 * kMiB);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(GetLargeStats().arenas, 0u);  // wholly free: unmapped
  EXPECT_EQ(GetLargeStats().reserved_bytes, 0u);
}

// LargeCacheDecay is a no-op until the oldest free unit has been free for
// a whole period, then purges exactly the expired ones; an arena with a
// live block stays.
TEST_F(LargeCacheTest, DecayWaitsForTheOldestUnit) {
  SetLargeCacheLimits(kDefaultLargeCacheBytes, 100);
  void* a = LargeAlloc(3 * kMiB);
  ASSERT_NE(a, nullptr);
  LargeFree(a);
  SleepMs(60);
  void* b = LargeAlloc(5 * kMiB);  // a's units and one more
  ASSERT_NE(b, nullptr);
  void* c = LargeAlloc(2 * kMiB);
  ASSERT_NE(c, nullptr);
  LargeFree(c);  // free at t = 60 ms
  EXPECT_EQ(LargeCacheDecay(), 0u);
  SleepMs(150);
  EXPECT_GE(LargeCacheDecay(), 2 * kMiB);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(GetLargeStats().arenas, 1u);
  LargeFree(b);
  EXPECT_EQ(LargeCacheDecay(), 0u);  // b was just freed
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
  EXPECT_EQ(GetLargeStats().arenas, 0u);
  EXPECT_EQ(LargeCacheRelease(), 0u);
}

// With a block live, release purges the free units' pages and keeps the
// arena.
TEST_F(LargeCacheTest, ReleasePurgesFreeUnitsOfALiveArena) {
  void* a = LargeAlloc(3 * kMiB);
  void* b = LargeAlloc(5 * kMiB);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::memset(b, 7, 5 * kMiB);
  LargeFree(b);
  EXPECT_GE(LargeCacheRelease(), 5 * kMiB);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  EXPECT_EQ(GetLargeStats().arenas, 1u);
  EXPECT_EQ(ResidentPages(b, 5 * kMiB), 0u);
  LargeFree(a);
}

TEST_F(LargeCacheTest, ZeroedAllocationClearsReusedUnits) {
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
}

// calloc of large blocks in fresh units writes nothing: sparse arrays stay
// sparse (eight 200 MiB arrays cost 1600 MiB of resident memory when every
// byte was cleared).
TEST_F(LargeCacheTest, ZeroedAllocationOfFreshUnitsTouchesNothing) {
  constexpr std::size_t kBig = 200 * kMiB;
  auto* q = static_cast<unsigned char*>(LargeAllocZeroed(kBig));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(ResidentPages(q, kBig), 0u);
  q[kBig / 2] = 1;
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[kBig - 1], 0);
  LargeFree(q);
  // Reused: only the pages that were touched are cleared (and so resident).
  q = static_cast<unsigned char*>(LargeAllocZeroed(kBig));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q[kBig / 2], 0);
  EXPECT_LE(ResidentPages(q, kBig), 2 * kStampAlignment / mmap_alloc::PageSize());
  LargeFree(q);
}

TEST_F(LargeCacheTest, OverAlignedBlocksAreDirect) {
  const std::size_t arenas = GetLargeStats().arenas;
  void* p = LargeAlloc(3 * kMiB, 4 * kMiB);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(LargeHeaderOf(p)->arena, nullptr);
  EXPECT_EQ(GetLargeStats().arenas, arenas);
  LargeFree(p);
  EXPECT_EQ(GetLargeStats().cached_bytes, 0u);
  // Up to 2 MiB alignment stays in an arena.
  void* q = LargeAlloc(3 * kMiB, 2 * kMiB);
  ASSERT_NE(q, nullptr);
  EXPECT_NE(LargeHeaderOf(q)->arena, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % (2 * kMiB), 0u);
  LargeFree(q);
}

// Churn through random sizes keeps memory and address space bounded: free
// resident bytes within the cap, arenas within a small multiple of the
// live working set.
TEST_F(LargeCacheTest, ChurnStaysBounded) {
  std::mt19937 rng(4141);
  std::vector<std::pair<void*, std::size_t>> live(4, {nullptr, 0});
  std::size_t max_reserved = 0;
  for (int i = 0; i < 2000; ++i) {
    auto& slot = live[rng() % live.size()];
    if (slot.first != nullptr) {
      ASSERT_TRUE(Check(slot.first, slot.second, slot.second & 0xff));
      LargeFree(slot.first);
    }
    const std::size_t n = kMiB + rng() % (15 * kMiB);
    slot = {LargeAlloc(n), n};
    ASSERT_NE(slot.first, nullptr);
    Fill(slot.first, n, n & 0xff);
    const LargeStats st = GetLargeStats();
    EXPECT_LE(st.cached_bytes, kDefaultLargeCacheBytes);
    if (st.reserved_bytes > max_reserved) max_reserved = st.reserved_bytes;
  }
  // Four live blocks of at most 16 MiB: one 64 MiB arena and a second.
  EXPECT_LE(max_reserved, 192 * kMiB);
  for (auto& [p, n] : live) LargeFree(p);
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

// ---- Packed units (large_alloc.h): blocks that fit a unit share units.

class PackedUnitTest : public LargeCacheTest {
 protected:
  void SetUp() override {
    LargeCacheTest::SetUp();
    if (mmap_alloc::PageSize() != 4096) GTEST_SKIP() << "needs 4 KiB pages";
  }
};

// Sixty 300 KiB blocks take ten units, not sixty (with a unit each, a
// program under RLIMIT_AS ran out of address space holding a seventh of
// what it reserved).
TEST_F(PackedUnitTest, SubMiBBlocksShareUnits) {
  std::vector<void*> blocks;
  std::vector<char*> units;
  for (int i = 0; i < 60; ++i) {
    void* p = LargeAlloc(300 * 1024);
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(ReadAllocType(p), AllocType::kLarge);
    ASSERT_NE(LargeHeaderOf(p)->packed, nullptr);
    EXPECT_EQ(LargeUsableSize(p), 300u * 1024);
    EXPECT_EQ(LargeRequestedSize(p), 300u * 1024);
    EXPECT_EQ(LargeStateOf(p), LargeBlockState::kLive);
    Fill(p, 300 * 1024, static_cast<unsigned>(i));
    blocks.push_back(p);
    char* u = UnitOf(p);
    bool seen = false;
    for (char* v : units) seen |= v == u;
    if (!seen) units.push_back(u);
  }
  EXPECT_LE(units.size(), 10u);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_TRUE(Check(blocks[i], 300 * 1024, static_cast<unsigned>(i)))
        << "blocks overlap";
  }
  for (void* p : blocks) LargeFree(p);
  // Every unit went back to the heap with its last block.
  for (char* u : units) EXPECT_EQ(ReadAllocType(u + 4096), AllocType::kFreedLarge);
}

TEST_F(PackedUnitTest, AlignmentIsHonoured) {
  std::vector<void*> blocks;
  for (std::size_t align : {8192, 65536, 262144, 524288}) {
    for (std::size_t n : {4096, 100000, 700000}) {
      void* p = LargeAlloc(n, align);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
      EXPECT_NE(LargeHeaderOf(p)->packed, nullptr);
      std::memset(p, 0x33, n);
      blocks.push_back(p);
    }
  }
  for (void* p : blocks) LargeFree(p);
}

// Interior pointers and second frees are named (LargeFree and LargeRealloc
// check them in every build, under the lock they take anyway).
TEST_F(PackedUnitTest, StateOfPointers) {
  char* a = static_cast<char*>(LargeAlloc(300 * 1024));
  char* b = static_cast<char*>(LargeAlloc(300 * 1024));
  ASSERT_EQ(UnitOf(a), UnitOf(b));
  EXPECT_EQ(LargeStateOf(a + 4096), LargeBlockState::kInterior);
  EXPECT_EQ(LargeStateOf(a + 8), LargeBlockState::kInterior);
  LargeFree(a);
  EXPECT_EQ(LargeStateOf(a), LargeBlockState::kFreed);
  EXPECT_EQ(LargeStateOf(b), LargeBlockState::kLive);
  EXPECT_DEATH(LargeFree(a), "double free of 0x[0-9a-f]+ \\(a large block");
  EXPECT_DEATH(LargeFree(b + 4096), "not the start of a large block");
  EXPECT_DEATH((void)LargeRealloc(b + 4096, 500000),
               "realloc\\(0x[0-9a-f]+\\): not the start of a large block");
  LargeFree(b);
}

// Blocks with units or a mapping of their own: LargeFree and LargeRealloc
// report an interior pointer themselves, before anything changes (the
// general allocator's free leaves the check to them).
TEST(LargeAllocTest, FreeAndReallocReportInteriorPointersOfUnitBlocks) {
  char* unit_block = static_cast<char*>(LargeAlloc(3 << 20));
  char* direct = static_cast<char*>(LargeAlloc(100000, 4 << 20));
  ASSERT_NE(unit_block, nullptr);
  ASSERT_NE(direct, nullptr);
  ASSERT_EQ(LargeHeaderOf(unit_block)->packed, nullptr);
  ASSERT_EQ(LargeHeaderOf(direct)->arena, nullptr);
  // (Offsets inside the block's first 2 MiB: the header is found there.)
  for (char* p : {unit_block, direct}) {
    EXPECT_DEATH(LargeFree(p + 64),
                 "free\\(0x[0-9a-f]+\\): not the start of a large block");
    EXPECT_DEATH((void)LargeRealloc(p + 64, 5 << 20),
                 "realloc\\(0x[0-9a-f]+\\): not the start of a large block");
  }
  LargeFree(unit_block);
  LargeFree(direct);
}

// Random packed blocks (unaligned and aligned, allocated, zeroed, grown,
// shrunk and freed) under a small cap, so that purges interleave: after
// every operation the page maps, counters and the table's longest runs
// agree page by page (the placement trusts them: a free dirty run it finds
// is taken without counting its pages), and no block loses its contents.
TEST_F(PackedUnitTest, PageMapsStayConsistentUnderChurn) {
  SetLargeCacheLimits(std::size_t{4} << 20, 0);
  std::mt19937 rng(2024);
  struct Live {
    char* p;
    std::size_t n;
    unsigned tag;
  };
  std::vector<Live> live;
  for (int op = 0; op < 3000; ++op) {
    const unsigned r = rng() % 10;
    if (live.size() < 40 && (r < 5 || live.empty())) {
      const std::size_t n = 4096 + rng() % (1800 * 1024);
      const std::size_t align = (rng() % 8 == 0) ? (8192u << (rng() % 6)) : 0;
      char* p = static_cast<char*>(
          r == 0 ? LargeAllocZeroed(n) : LargeAlloc(n, align));
      ASSERT_NE(p, nullptr);
      if (r == 0) {
        for (std::size_t i = 0; i < n; i += 4093) ASSERT_EQ(p[i], 0) << i;
      }
      const unsigned tag = static_cast<unsigned>(op);
      Fill(p, n, tag);
      live.push_back({p, n, tag});
    } else if (r < 7) {
      Live& b = live[rng() % live.size()];
      ASSERT_TRUE(Check(b.p, b.n, b.tag));
      const std::size_t n = 4096 + rng() % (1800 * 1024);
      char* q = static_cast<char*>(LargeRealloc(b.p, n));
      ASSERT_NE(q, nullptr);
      if (n >= b.n) {
        ASSERT_TRUE(Check(q, b.n, b.tag));
      } else {  // a shrink keeps the pattern of the first n bytes
        for (std::size_t i = 0; i < n; i += 97) {
          ASSERT_EQ(static_cast<unsigned char>(q[i]),
                    static_cast<unsigned char>(i * 31 + b.tag));
        }
      }
      b = {q, n, b.tag};
      Fill(q, n, b.tag);
    } else {
      const std::size_t i = rng() % live.size();
      ASSERT_TRUE(Check(live[i].p, live[i].n, live[i].tag));
      LargeFree(live[i].p);
      live[i] = live.back();
      live.pop_back();
    }
    const char* bad = LargeHeapInconsistency();
    ASSERT_EQ(bad, nullptr) << bad << " after operation " << op;
  }
  for (const Live& b : live) LargeFree(b.p);
  EXPECT_EQ(LargeHeapInconsistency(), nullptr);
}

TEST_F(PackedUnitTest, ReallocInPlaceAndOut) {
  char* a = static_cast<char*>(LargeAlloc(300 * 1024));
  ASSERT_NE(a, nullptr);
  Fill(a, 300 * 1024, 5);
  // The pages after it are free: it grows in place.
  char* g = static_cast<char*>(LargeRealloc(a, 600 * 1024));
  EXPECT_EQ(g, a);
  EXPECT_EQ(LargeUsableSize(g), 600u * 1024);
  EXPECT_TRUE(Check(g, 300 * 1024, 5));
  // A block after it: the next growth must move, keeping the contents.
  char* b = static_cast<char*>(LargeAlloc(300 * 1024));
  ASSERT_NE(b, nullptr);
  Fill(g, 600 * 1024, 6);
  Fill(b, 300 * 1024, 7);
  if (UnitOf(b) == UnitOf(g) && b == g + 600 * 1024) {
    char* m = static_cast<char*>(LargeRealloc(g, 900 * 1024));
    ASSERT_NE(m, nullptr);
    EXPECT_NE(m, g);
    EXPECT_TRUE(Check(m, 600 * 1024, 6));
    g = m;
  }
  // A shrink stays in place and frees the pages past the new size.
  std::vector<char> head(b, b + 100 * 1024);
  char* sh = static_cast<char*>(LargeRealloc(b, 100 * 1024));
  EXPECT_EQ(sh, b);
  EXPECT_EQ(LargeUsableSize(sh), 100u * 1024);
  EXPECT_EQ(LargeStateOf(b + 200 * 1024), LargeBlockState::kFreed);
  EXPECT_EQ(std::memcmp(sh, head.data(), head.size()), 0);
  LargeFree(g);
  LargeFree(sh);
}

// The pages a shrink frees are freed pages like a block's: the decay
// period purges them.
TEST_F(PackedUnitTest, PagesFreedByAShrinkDecay) {
  SetLargeCacheLimits(kDefaultLargeCacheBytes, 50);
  char* a = static_cast<char*>(LargeAlloc(600 * 1024));
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, 600 * 1024);
  SleepMs(60);
  LargeCacheDecay();  // nothing else pending
  ASSERT_EQ(LargeRealloc(a, 100 * 1024), a);
  EXPECT_EQ(ResidentPages(a + 100 * 1024, 500 * 1024), 500u * 1024 / 4096);
  SleepMs(120);
  EXPECT_GE(LargeCacheDecay(), 500u * 1024);
  EXPECT_EQ(ResidentPages(a + 100 * 1024, 500 * 1024), 0u);
  LargeFree(a);
}

// calloc's path clears the pages a freed block left resident, and only
// those.
TEST_F(PackedUnitTest, ZeroedBlocksAreZero) {
  std::vector<void*> keep;
  keep.push_back(LargeAlloc(64 * 1024));  // keeps the unit packed
  void* a = LargeAlloc(500 * 1024);
  ASSERT_NE(a, nullptr);
  std::memset(a, 0xee, 500 * 1024);
  LargeFree(a);
  for (int i = 0; i < 3; ++i) {
    auto* z = static_cast<unsigned char*>(LargeAllocZeroed(400 * 1024));
    ASSERT_NE(z, nullptr);
    for (std::size_t j = 0; j < 400 * 1024; ++j) ASSERT_EQ(z[j], 0) << j;
    std::memset(z, 0xdd, 400 * 1024);
    keep.push_back(z);
  }
  for (void* p : keep) LargeFree(p);
}

// Freed pages stay resident for reuse within the cache cap; past it a
// freed block is purged at once.
TEST_F(PackedUnitTest, FreedResidentPagesAreBounded) {
  SetLargeCacheLimits(kMiB, 0);
  void* anchor = LargeAlloc(8 * 1024);
  ASSERT_NE(anchor, nullptr);
  char* unit = UnitOf(anchor);
  std::vector<void*> blocks;
  for (int i = 0; i < 6; ++i) {
    void* p = LargeAlloc(300 * 1024);
    ASSERT_NE(p, nullptr);
    if (UnitOf(p) != unit) {
      LargeFree(p);
      break;
    }
    std::memset(p, 1, 300 * 1024);
    blocks.push_back(p);
  }
  ASSERT_GE(blocks.size(), 5u);
  for (void* p : blocks) LargeFree(p);
  const std::size_t resident = ResidentPages(unit, kStampAlignment) * 4096;
  // Header, anchor, and at most the cap of freed pages.
  EXPECT_LE(resident, 4096 + 8 * 1024 + kMiB);
  EXPECT_GT(GetLargeStats().cached_bytes, 0u);
  EXPECT_LE(GetLargeStats().cached_bytes, kMiB);
  // malloc_trim's release purges them.
  LargeCacheRelease();
  EXPECT_LE(ResidentPages(unit, kStampAlignment) * 4096, 4096 + 8 * 1024);
  LargeFree(anchor);
}

// A block goes where its pages are resident: a freed block's place is
// taken again by a block of its size (no page faults in steady state).
TEST_F(PackedUnitTest, ResidentPagesAreReusedFirst) {
  void* anchor = LargeAlloc(8 * 1024);
  char* unit = UnitOf(anchor);
  char* a = static_cast<char*>(LargeAlloc(500 * 1024));
  char* b = static_cast<char*>(LargeAlloc(500 * 1024));
  ASSERT_EQ(UnitOf(a), unit);
  ASSERT_EQ(UnitOf(b), unit);
  std::memset(b, 1, 500 * 1024);
  LargeFree(b);
  // a is untouched: its pages are not resident, b's are.
  char* c = static_cast<char*>(LargeAlloc(500 * 1024));
  EXPECT_EQ(c, b);
  LargeFree(a);
  LargeFree(c);
  LargeFree(anchor);
}

// Past 4096 packed units (8 GiB of them) a block takes units of its own.
TEST_F(PackedUnitTest, BlocksBeyondTheUnitTableTakeUnitsOfTheirOwn) {
#if defined(ADDRESS_SANITIZER) || defined(THREAD_SANITIZER)
  GTEST_SKIP() << "reserves 8 GiB of address space";
#endif
  // Each fills a unit: 2 MiB less the header page and one more page.
  const std::size_t n = kStampAlignment - 2 * 4096;
  std::vector<void*> blocks;
  for (int i = 0; i < 4096; ++i) {
    void* p = LargeAlloc(n);
    ASSERT_NE(p, nullptr) << i;
    ASSERT_NE(LargeHeaderOf(p)->packed, nullptr) << i;
    blocks.push_back(p);
  }
  void* extra = LargeAlloc(n);
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(LargeHeaderOf(extra)->packed, nullptr);
  std::memset(extra, 1, n);
  LargeFree(extra);
  // Freeing one makes room again.
  LargeFree(blocks.back());
  blocks.pop_back();
  void* again = LargeAlloc(n);
  EXPECT_NE(LargeHeaderOf(again)->packed, nullptr);
  blocks.push_back(again);
  for (void* p : blocks) LargeFree(p);
}

// The guard-page report finds blocks in packed units (a fault in a page of
// a block names the block; in a free page, nothing).
TEST_F(PackedUnitTest, BlockContainingFindsPackedBlocks) {
  char* a = static_cast<char*>(LargeAlloc(300 * 1024));
  char* b = static_cast<char*>(LargeAlloc(300 * 1024));
  ASSERT_EQ(UnitOf(a), UnitOf(b));
  EXPECT_EQ(LargeBlockContaining(a + 5), a);
  EXPECT_EQ(LargeBlockContaining(a + 300 * 1024 - 1), a);
  EXPECT_EQ(LargeBlockContaining(b + 200 * 1024), b);
  LargeFree(a);
  EXPECT_EQ(LargeBlockContaining(a + 5), nullptr);
  LargeFree(b);
}

// Threads churn through packed sizes side by side (TSan checks the lock
// protocol; the content checks catch pages handed to two owners).
// A thread's block goes to a unit in which that thread last placed one,
// before an earlier unit with room that another thread uses: the pages it
// reuses were written by the same core (bigblock-mid, 2 threads: 0.90M ->
// 0.97M replacements/s).
TEST_F(PackedUnitTest, BlocksGoToTheThreadsOwnUnitsFirst) {
  constexpr std::size_t kBlock = 600 * 1024;  // 150 pages: 3 fit a unit
  std::atomic<int> step{0};
  auto wait_for = [&step](int s) {
    while (step.load(std::memory_order_acquire) != s) std::this_thread::yield();
  };
  char* mine[3];
  char* theirs[3];
  char* their_again = nullptr;
  std::thread worker([&] {
    wait_for(1);
    for (char*& p : theirs) {
      p = static_cast<char*>(LargeAlloc(kBlock));
      std::memset(p, 2, kBlock);
    }
    LargeFree(theirs[1]);
    step.store(2, std::memory_order_release);
    wait_for(3);
    their_again = static_cast<char*>(LargeAlloc(kBlock));
    step.store(4, std::memory_order_release);
  });
  for (char*& p : mine) {
    p = static_cast<char*>(LargeAlloc(kBlock));
    std::memset(p, 1, kBlock);
  }
  step.store(1, std::memory_order_release);
  wait_for(2);
  LargeFree(mine[1]);
  // Both units have a resident hole of the block's size; ours comes first
  // in the table.
  ASSERT_EQ(UnitOf(mine[0]), UnitOf(mine[2]));
  ASSERT_EQ(UnitOf(theirs[0]), UnitOf(theirs[2]));
  ASSERT_NE(UnitOf(mine[0]), UnitOf(theirs[0]));
  step.store(3, std::memory_order_release);
  wait_for(4);
  worker.join();
  EXPECT_EQ(their_again, theirs[1]);
  char* my_again = static_cast<char*>(LargeAlloc(kBlock));
  EXPECT_EQ(my_again, mine[1]);
  for (char* p : {mine[0], my_again, mine[2], theirs[0], their_again,
                  theirs[2]}) {
    LargeFree(p);
  }
}

TEST_F(PackedUnitTest, ThreadsShareUnits) {
  auto work = [](unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::pair<void*, std::size_t>> live;
    for (int i = 0; i < 2000; ++i) {
      if (live.size() < 12 && (rng() % 3 != 0)) {
        const std::size_t n = 4096 + rng() % (kMiB - 4096);
        void* p = (rng() & 1) ? LargeAlloc(n) : LargeAllocZeroed(n);
        ASSERT_NE(p, nullptr);
        const unsigned tag = seed * 10000 + static_cast<unsigned>(i);
        Fill(p, n, tag);
        live.push_back({p, n});
      } else if (!live.empty()) {
        const std::size_t k = rng() % live.size();
        auto [p, n] = live[k];
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        if (rng() % 4 == 0) {
          const std::size_t m = 4096 + rng() % (kMiB - 4096);
          void* q = LargeRealloc(p, m);
          ASSERT_NE(q, nullptr);
          live.push_back({q, m});
          Fill(q, m, seed);
          continue;
        }
        LargeFree(p);
      }
    }
    for (auto [p, n] : live) LargeFree(p);
  };
  std::thread a(work, 3u), b(work, 4u);
  a.join();
  b.join();
}

}  // namespace
}  // namespace elfmalloc
