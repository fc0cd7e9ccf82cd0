// Tests for page_alloc.h: stamps readable for every page handed out, reuse
// of freed pages, the dirty/clean policy (with exact dirty accounting),
// residency dropping on uncommit without losing stamps, and concurrent
// alloc/free exclusivity.
#include "elfmalloc/page_alloc.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/size_classes.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

// Except for EveryPageIsStampedSmall, which checks elfmalloc's own small-page
// configuration, these tests exercise the mechanisms (stamps, thresholds,
// decay, uncommit) with 256 KiB pages in groups of 8, the geometry they were
// written for; the code is the same for every page size.
constexpr std::size_t kPage = std::size_t{256} << 10;
PageAlloc::Options TestSmallPages() {
  PageAlloc::Options o = PageAlloc::SmallPages();
  o.page_size = kPage;
  o.pages_per_refill = kStampAlignment / kPage;
  return o;
}

std::size_t OsPage() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Resident OS pages in [p, p + len) by mincore(2).
std::size_t Resident(const void* p, std::size_t len) {
  std::vector<unsigned char> v((len + OsPage() - 1) / OsPage());
  if (mincore(const_cast<void*>(p), len, v.data()) != 0) return SIZE_MAX;
  return static_cast<std::size_t>(
      std::count_if(v.begin(), v.end(), [](unsigned char c) { return c & 1; }));
}

void ExpectStamped(void* page, std::size_t page_size, AllocType type) {
  char* p = static_cast<char*>(page);
  for (std::size_t off : {std::size_t{1}, std::size_t{64}, page_size / 2,
                          page_size - 1, page_size}) {
    ASSERT_EQ(ReadAllocType(p + off), type) << "offset " << off;
  }
}

TEST(PageAllocTest, EveryPageIsStampedSmall) {
  PageAlloc pa(PageAlloc::SmallPages());
  ASSERT_TRUE(pa.valid());
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  constexpr int kGroup = static_cast<int>(kStampAlignment / kSmallPageSize);
  for (int i = 0; i < 5 * kGroup / 2; ++i) {  // 2.5 refills (groups)
    void* p = h.Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kSmallPageSize, 0u);
    ExpectStamped(p, kSmallPageSize, AllocType::kSmallSlab);
    pages.push_back(p);
  }
  EXPECT_EQ(std::set<void*>(pages.begin(), pages.end()).size(), pages.size());
  EXPECT_EQ(pa.GetStats().mapped_bytes, 3 * kStampAlignment);
  for (void* p : pages) h.Free(p);
}

TEST(PageAllocTest, EveryPageIsStampedMedium) {
  PageAlloc pa(PageAlloc::MediumPages());
  ASSERT_TRUE(pa.valid());
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 5; ++i) {
    void* p = h.Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kMediumPageSize, 0u);
    ExpectStamped(p, kMediumPageSize, AllocType::kMediumSlab);
    pages.push_back(p);
  }
  EXPECT_EQ(pa.GetStats().mapped_bytes, 6 * kMediumPageSize);  // 2 per refill
  for (void* p : pages) h.Free(p);
}

TEST(PageAllocTest, FreedPagesAreReused) {
  PageAlloc::Options o = TestSmallPages();
  o.max_dirty_bytes = 64 * kPage;  // everything stays dirty
  PageAlloc pa(o);
  auto h = pa.NewHandle();
  std::vector<void*> first;
  for (int i = 0; i < 16; ++i) first.push_back(h.Alloc());
  const std::size_t mapped = pa.GetStats().mapped_bytes;
  for (void* p : first) {
    std::memset(p, 0x77, 4096);
    h.Free(p);
  }
  EXPECT_EQ(pa.GetStats().dirty_pages, 16u);
  std::vector<void*> second;
  for (int i = 0; i < 16; ++i) second.push_back(h.Alloc());
  EXPECT_EQ(std::set<void*>(first.begin(), first.end()),
            std::set<void*>(second.begin(), second.end()));
  EXPECT_EQ(pa.GetStats().mapped_bytes, mapped);  // no new mapping
  EXPECT_EQ(pa.GetStats().dirty_pages, 0u);
  EXPECT_EQ(pa.GetStats().uncommits, 0u);
  for (void* p : second) h.Free(p);
}

// Two page allocators whose bags are built side by side in one block of the
// caller's (Options::bag_storage): the block is where the bags live (it is
// written when they are built and untouched beyond its size), and each
// allocator keeps its own pages in its own bags.
TEST(PageAllocTest, BagsLiveInGivenStorage) {
  PageAlloc::Options a = TestSmallPages();
  a.max_dirty_bytes = 64 * kPage;  // freed pages stay in the dirty bag
  PageAlloc::Options b = a;
  const std::size_t bytes_a = PageAlloc::BagStorageBytes(a);
  const std::size_t bytes_b = PageAlloc::BagStorageBytes(b);
  ASSERT_GT(bytes_a, 0u);
  ASSERT_EQ(bytes_a % 64, 0u);  // the next owner's bags stay aligned
  // Room for both and a tail that must stay untouched.
  std::vector<unsigned char> block(bytes_a + bytes_b + 4096 + 64, 0);
  unsigned char* base = reinterpret_cast<unsigned char*>(
      (reinterpret_cast<std::uintptr_t>(block.data()) + 63) & ~std::uintptr_t{63});
  a.bag_storage = base;
  b.bag_storage = base + bytes_a;
  {
    PageAlloc pa(a);
    PageAlloc pb(b);
    ASSERT_TRUE(pa.valid());
    ASSERT_TRUE(pb.valid());
    auto written = [](const unsigned char* p, std::size_t n) {
      return std::any_of(p, p + n, [](unsigned char c) { return c != 0; });
    };
    EXPECT_TRUE(written(base, bytes_a));
    EXPECT_TRUE(written(base + bytes_a, bytes_b));
    EXPECT_FALSE(written(base + bytes_a + bytes_b, 4096));
    auto ha = pa.NewHandle();
    auto hb = pb.NewHandle();
    void* p = ha.Alloc();
    void* q = hb.Alloc();
    ASSERT_NE(p, nullptr);
    ASSERT_NE(q, nullptr);
    ha.Free(p);
    hb.Free(q);
    EXPECT_EQ(pa.GetStats().dirty_pages, 1u);
    EXPECT_EQ(pb.GetStats().dirty_pages, 1u);
    EXPECT_EQ(ha.Alloc(), p);  // each page comes back from its own bags
    EXPECT_EQ(hb.Alloc(), q);
    ha.Free(p);
    hb.Free(q);
  }
  // The allocators are gone and their bags with them; the block is still
  // the caller's (nothing freed it: the vector's destructor would fail).
}

// Above the dirty threshold a freed page is uncommitted: its residency drops
// to at most the one OS page holding the stamp, and the stamp survives for
// the other pages of its 2 MiB group.
TEST(PageAllocTest, UncommitDropsResidencyAndKeepsStamps) {
  PageAlloc::Options o = TestSmallPages();
  o.max_dirty_bytes = 2 * kPage;
  o.dirty_active_shift = 0;  // a fixed threshold
  o.decay_ms = 0;  // only the threshold rule, whatever the test's speed
  PageAlloc pa(o);
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 8; ++i) pages.push_back(h.Alloc());  // one whole group
  for (void* p : pages) {
    // Like a slab, leave the first word (the stamp) alone.
    std::memset(static_cast<char*>(p) + 8, 0x42, kPage - 8);
    ASSERT_EQ(Resident(p, kPage), kPage / OsPage());
  }
  // The group's first page (the stamp holder) goes back first: uncommitted
  // only once two pages are already dirty, so free it third.
  std::swap(pages[0], pages[2]);
  void* const stamp_page = pages[2];
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(stamp_page) % kStampAlignment, 0u);
  h.Free(pages[0]);
  h.Free(pages[1]);
  EXPECT_EQ(pa.GetStats().dirty_pages, 2u);
  EXPECT_EQ(pa.GetStats().uncommits, 0u);
  EXPECT_EQ(Resident(pages[0], kPage), kPage / OsPage());
  h.Free(stamp_page);
  EXPECT_EQ(pa.GetStats().uncommits, 1u);
  EXPECT_EQ(pa.GetStats().dirty_pages, 2u);
  EXPECT_LE(Resident(stamp_page, kPage), 1u);
  // Still-live siblings classify correctly.
  for (std::size_t i = 3; i < 8; ++i) {
    ExpectStamped(pages[i], kPage, AllocType::kSmallSlab);
  }
  h.Free(pages[3]);
  EXPECT_EQ(Resident(pages[3], kPage), 0u);
  for (std::size_t i = 4; i < 8; ++i) h.Free(pages[i]);
  EXPECT_EQ(pa.GetStats().uncommits, 6u);
  // Dirty pages come back first, then clean ones.
  std::set<void*> dirty = {pages[0], pages[1]};
  EXPECT_TRUE(dirty.count(h.Alloc()));
  EXPECT_TRUE(dirty.count(h.Alloc()));
  void* c = h.Alloc();
  EXPECT_EQ(ReadAllocType(static_cast<char*>(c) + 1), AllocType::kSmallSlab);
  EXPECT_EQ(pa.GetStats().mapped_bytes, kStampAlignment);
  h.Free(c);
  h.Free(pages[0]);
  h.Free(pages[1]);
}

// Free(page, /*uncommit_hint=*/true) (added for the slab allocator's eager
// uncommit): everything but the first OS page (slab header and bit-set) is
// uncommitted at once, the stamp and header survive, and the page is cached
// clean (not counted as dirty) and handed out again.
TEST(PageAllocTest, FreeWithUncommitHintKeepsOnlyTheFirstOsPage) {
  PageAlloc::Options o = TestSmallPages();
  o.decay_ms = 0;
  PageAlloc pa(o);
  ASSERT_TRUE(pa.valid());
  auto h = pa.NewHandle();
  void* first = h.Alloc();
  void* p = h.Alloc();  // not on a 2 MiB boundary
  ASSERT_NE(reinterpret_cast<std::uintptr_t>(p) % kStampAlignment, 0u);
  std::memset(p, 0x5a, kPage);
  ASSERT_EQ(Resident(p, kPage), kPage / OsPage());
  static_cast<unsigned char*>(p)[8] = 0x77;  // "header"
  h.Free(p, /*uncommit_hint=*/true);
  EXPECT_EQ(Resident(p, kPage), 1u);
  EXPECT_EQ(static_cast<unsigned char*>(p)[8], 0x77);
  EXPECT_EQ(pa.GetStats().dirty_pages, 0u);
  EXPECT_EQ(pa.GetStats().uncommits, 1u);
  ExpectStamped(first, kPage, AllocType::kSmallSlab);
  // Without the hint it is the plain Free (dirty, resident).
  void* q = h.Alloc();
  std::memset(q, 1, kPage);
  h.Free(q, /*uncommit_hint=*/false);
  EXPECT_EQ(pa.GetStats().dirty_pages, 1u);
  EXPECT_EQ(Resident(q, kPage), kPage / OsPage());
  h.Free(first);
}

TEST(PageAllocTest, InvalidOptions) {
  PageAlloc::Options o;
  o.page_size = 3000;
  EXPECT_FALSE(PageAlloc(o).valid());
  o.page_size = 0;
  EXPECT_FALSE(PageAlloc(o).valid());
}

// The threshold grows with the pages in use (1/8 by default): a big working
// set that frees a burst keeps it dirty; as the working set shrinks, so does
// the limit.
TEST(PageAllocTest, DirtyLimitIsProportionalToPagesInUse) {
  PageAlloc::Options o = TestSmallPages();
  o.max_dirty_bytes = 2 * kPage;
  o.decay_ms = 0;
  PageAlloc pa(o);
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 128; ++i) pages.push_back(h.Alloc());
  // 128 in use: limit 16. Freeing 12 keeps them all dirty.
  for (int i = 0; i < 12; ++i) h.Free(pages[i]);
  EXPECT_EQ(pa.GetStats().dirty_pages, 12u);
  EXPECT_EQ(pa.GetStats().uncommits, 0u);
  // Freeing the rest: the limit falls with the pages in use, to the fixed
  // floor of 2 once fewer than 24 are in use.
  for (std::size_t i = 12; i < pages.size(); ++i) h.Free(pages[i]);
  EXPECT_LE(pa.GetStats().dirty_pages, 14u);
  EXPECT_GE(pa.GetStats().uncommits, 100u);
  // Without the proportional part only the fixed 2 pages stay dirty.
  o.dirty_active_shift = 0;
  PageAlloc fixed(o);
  auto f = fixed.NewHandle();
  pages.clear();
  for (int i = 0; i < 128; ++i) pages.push_back(f.Alloc());
  for (int i = 0; i < 12; ++i) f.Free(pages[i]);
  EXPECT_EQ(fixed.GetStats().dirty_pages, 2u);
  EXPECT_EQ(fixed.GetStats().uncommits, 10u);
  for (std::size_t i = 12; i < pages.size(); ++i) f.Free(pages[i]);
}

// A clock the tests move by hand.
std::atomic<std::uint64_t> g_fake_ms{0};
std::uint64_t FakeClock() { return g_fake_ms.load(); }
// A clock that moves 1 ms per read: every few page operations end a period.
std::atomic<std::uint64_t> g_ticking_ms{0};
std::uint64_t TickingClock() { return g_ticking_ms.fetch_add(1); }

PageAlloc::Options DecayOptions(std::uint64_t decay_ms) {
  PageAlloc::Options o = TestSmallPages();
  o.max_dirty_bytes = 64 * kPage;  // the threshold never bites
  o.decay_ms = decay_ms;
  o.clock_ms = &FakeClock;
  return o;
}

// After a burst of frees, the pages nobody reused during a whole period go
// back to the OS when that period ends (on the next page operation): within
// two periods of the burst.
TEST(PageAllocTest, DecayReturnsPagesUnusedForAPeriod) {
  g_fake_ms = 1000;
  PageAlloc pa(DecayOptions(100));
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 16; ++i) {
    pages.push_back(h.Alloc());
    std::memset(static_cast<char*>(pages.back()) + 8, 1, kPage - 8);
  }
  for (void* p : pages) h.Free(p);  // the burst: 16 dirty pages
  EXPECT_EQ(pa.GetStats().dirty_pages, 16u);
  g_fake_ms = 1050;  // mid-period: nothing happens
  h.Free(h.Alloc());
  EXPECT_EQ(pa.GetStats().decay_uncommits, 0u);
  // The first period ends. Its low-water mark is 0: the pages were freed
  // during it, not cached for all of it.
  g_fake_ms = 1100;
  h.Free(h.Alloc());
  EXPECT_EQ(pa.GetStats().decay_uncommits, 0u);
  // The second period ends. Its low-water mark was 15 (one page was reused).
  g_fake_ms = 1200;
  h.Free(h.Alloc());
  EXPECT_EQ(pa.GetStats().decay_uncommits, 15u);
  EXPECT_EQ(pa.GetStats().dirty_pages, 1u);
  // The group whose 8 pages are all clean now went back to the OS whole
  // (the sweep after the purge); the other keeps its dirty page.
  EXPECT_EQ(pa.GetStats().unmapped_bytes, kStampAlignment);
  EXPECT_EQ(pa.GetStats().mapped_bytes, kStampAlignment);
  void* dirty = h.Alloc();  // the dirty page comes first
  const std::uintptr_t live =
      reinterpret_cast<std::uintptr_t>(dirty) & ~(kStampAlignment - 1);
  std::size_t resident = 0;
  for (void* p : pages) {
    if ((reinterpret_cast<std::uintptr_t>(p) & ~(kStampAlignment - 1)) !=
        live) {
      continue;  // unmapped with its group
    }
    resident += Resident(p, kPage);
    // Pages stay usable and stamped after the decay.
    EXPECT_EQ(ReadAllocType(static_cast<char*>(p) + 1), AllocType::kSmallSlab);
  }
  // One dirty page plus the kept stamp OS page of the group.
  EXPECT_LE(resident, kPage / OsPage() + 2);
  h.Free(dirty);
}

// A group whose pages are all free and uncommitted is unmapped by a sweep;
// groups with a page in use or dirty are not, and their pages stay
// usable. The address space comes back (a new refill maps afresh).
TEST(PageAllocTest, SweepUnmapsWhollyFreeGroupsOnly) {
  PageAlloc::Options o = TestSmallPages();
  o.max_dirty_bytes = 0;  // every freed page is uncommitted at once
  o.dirty_active_shift = 0;
  o.decay_ms = 0;
  PageAlloc pa(o);
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 24; ++i) pages.push_back(h.Alloc());  // 3 groups
  ASSERT_EQ(pa.GetStats().mapped_bytes, 3 * kStampAlignment);
  // Free all of the first two groups' pages but one page of the second.
  std::sort(pages.begin(), pages.end());
  void* kept = pages[9];  // not a group leader (those carry the stamp)
  for (int i = 0; i < 16; ++i) {
    if (pages[i] != kept) h.Free(pages[i]);
  }
  EXPECT_EQ(h.UnmapFreeRegions(), kStampAlignment);
  EXPECT_EQ(pa.GetStats().mapped_bytes, 2 * kStampAlignment);
  EXPECT_EQ(pa.GetStats().unmapped_bytes, kStampAlignment);
  EXPECT_EQ(pa.GetStats().clean_pages, 7u);  // the second group's free pages
  EXPECT_EQ(h.UnmapFreeRegions(), 0u);       // nothing new
  // The kept page and the third group are intact.
  std::memset(kept, 0x3c, kPage);
  EXPECT_EQ(ReadAllocType(static_cast<char*>(kept) + 1), AllocType::kSmallSlab);
  for (int i = 16; i < 24; ++i) {
    EXPECT_EQ(ReadAllocType(static_cast<char*>(pages[i]) + 1),
              AllocType::kSmallSlab);
  }
  // Freeing the kept page completes the second group.
  h.Free(kept);
  EXPECT_EQ(h.UnmapFreeRegions(), kStampAlignment);
  EXPECT_EQ(pa.GetStats().clean_pages, 0u);
  // Allocation still works: a fresh group is mapped.
  void* again = h.Alloc();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(ReadAllocType(static_cast<char*>(again) + 1),
            AllocType::kSmallSlab);
  h.Free(again);
  for (int i = 16; i < 24; ++i) h.Free(pages[i]);
}

// A steady churn keeps its working set: each period reuses every dirty page,
// so the low-water mark is 0 and nothing is uncommitted.
TEST(PageAllocTest, DecayKeepsTheWorkingSetOfASteadyChurn) {
  g_fake_ms = 5000;
  PageAlloc pa(DecayOptions(100));
  auto h = pa.NewHandle();
  for (int period = 0; period < 10; ++period) {
    std::vector<void*> pages;
    for (int i = 0; i < 8; ++i) pages.push_back(h.Alloc());
    for (void* p : pages) h.Free(p);
    g_fake_ms += 100;
  }
  EXPECT_EQ(pa.GetStats().decay_uncommits, 0u);
  EXPECT_EQ(pa.GetStats().dirty_pages, 8u);
  EXPECT_EQ(pa.GetStats().mapped_bytes, kStampAlignment);
}

TEST(PageAllocTest, DecayZeroDisablesTheRule) {
  g_fake_ms = 0;
  PageAlloc pa(DecayOptions(0));
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 8; ++i) pages.push_back(h.Alloc());
  for (void* p : pages) h.Free(p);
  for (int i = 0; i < 5; ++i) {
    g_fake_ms += 1000000;
    h.Free(h.Alloc());
  }
  EXPECT_EQ(pa.GetStats().decay_uncommits, 0u);
  EXPECT_EQ(pa.GetStats().dirty_pages, 8u);
}

// ReleaseDirty (malloc_trim) empties the dirty cache at once; the pages move
// to the clean bag and are reused from there.
TEST(PageAllocTest, ReleaseDirtyEmptiesTheDirtyCache) {
  PageAlloc::Options o = DecayOptions(0);
  PageAlloc pa(o);
  auto h = pa.NewHandle();
  std::vector<void*> pages;
  for (int i = 0; i < 8; ++i) {
    pages.push_back(h.Alloc());
    std::memset(static_cast<char*>(pages.back()) + 8, 1, kPage - 8);
  }
  EXPECT_EQ(pa.GetStats().clean_pages, 0u);
  for (void* p : pages) h.Free(p);
  EXPECT_EQ(h.ReleaseDirty(3), 3u);
  EXPECT_EQ(pa.GetStats().dirty_pages, 5u);
  EXPECT_EQ(h.ReleaseDirty(SIZE_MAX), 5u);
  EXPECT_EQ(pa.GetStats().dirty_pages, 0u);
  EXPECT_EQ(pa.GetStats().clean_pages, 8u);
  EXPECT_EQ(pa.GetStats().uncommits, 8u);
  std::size_t resident = 0;
  for (void* p : pages) resident += Resident(p, kPage);
  EXPECT_LE(resident, 1u);  // the group's stamp OS page
  std::set<void*> all(pages.begin(), pages.end());
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(all.count(h.Alloc()));
  EXPECT_EQ(pa.GetStats().clean_pages, 0u);
  EXPECT_EQ(pa.GetStats().mapped_bytes, kStampAlignment);
}

// Dirty pages freed through one thread's handle are found by every other
// handle (fresh ones included) before any new memory is carved: the bag's
// emptiness report must not strand pages in queues a handle did not probe.
TEST(PageAllocTest, DirtyPagesAreReusedAcrossHandles) {
  PageAlloc::Options o = DecayOptions(0);
  o.max_dirty_bytes = 1024 * kPage;
  PageAlloc pa(o);
  constexpr int kPages = 64;
  std::vector<void*> pages;
  std::thread([&] {
    auto h = pa.NewHandle();
    for (int i = 0; i < kPages; ++i) pages.push_back(h.Alloc());
    for (void* p : pages) h.Free(p);
  }).join();
  const std::size_t mapped = pa.GetStats().mapped_bytes;
  for (int round = 0; round < 20; ++round) {
    std::thread([&] {
      auto h = pa.NewHandle();
      std::vector<void*> mine;
      for (int i = 0; i < kPages; ++i) mine.push_back(h.Alloc());
      for (void* p : mine) h.Free(p);
    }).join();
  }
  EXPECT_EQ(pa.GetStats().mapped_bytes, mapped);
  EXPECT_EQ(pa.GetStats().dirty_pages, std::size_t{kPages});
}

// Threads allocate and free pages concurrently; each page carries its
// holder's tag while held, so a page handed to two holders at once is caught.
// The clock ticks on every read, so decay purges run concurrently with
// everything else.
TEST(PageAllocTest, ConcurrentAllocFreeExclusive) {
  PageAlloc::Options o = TestSmallPages();
  o.max_dirty_bytes = 4 * kPage;  // exercise both bags
  o.decay_ms = 5;
  o.clock_ms = &TickingClock;
  PageAlloc pa(o);
  constexpr int kThreads = 4;
  constexpr int kIters = 300;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto h = pa.NewHandle();
      std::vector<void*> held;
      for (int i = 0; i < kIters; ++i) {
        if (held.size() < 4 && (i % 3 != 2 || held.empty())) {
          void* p = h.Alloc();
          if (p == nullptr) {
            errors.fetch_add(1);
            continue;
          }
          if (ReadAllocType(static_cast<char*>(p) + 1) != AllocType::kSmallSlab)
            errors.fetch_add(1);
          // Word 1 (not the stamp word) holds the tag.
          std::atomic_ref<std::uint64_t> tag(static_cast<std::uint64_t*>(p)[1]);
          tag.store(static_cast<std::uint64_t>(t + 1));
          held.push_back(p);
        } else {
          void* p = held.back();
          held.pop_back();
          std::atomic_ref<std::uint64_t> tag(static_cast<std::uint64_t*>(p)[1]);
          if (tag.exchange(0) != static_cast<std::uint64_t>(t + 1))
            errors.fetch_add(1);
          h.Free(p);
        }
      }
      for (void* p : held) h.Free(p);
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_LE(pa.GetStats().dirty_pages, 4u);
  EXPECT_GT(pa.GetStats().decay_uncommits, 0u);
}

}  // namespace
}  // namespace elfmalloc
