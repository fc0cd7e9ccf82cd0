// Tests for magazine_cache.h: the capacity table (the reference's
// operator-precedence QUIRK fixed), LIFO reuse, the half flush when full
// (coalesced by bit-set word, with collisions freed at once and nothing lost),
// teardown returning every object and page, and a multi-threaded stress of
// remote frees through magazine caches (run under TSan).
#include "elfmalloc/magazine_cache.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_allocator.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

constexpr std::size_t K = 1024;

int Scale() {
  const char* s = std::getenv("ELFMALLOC_STRESS_SCALE");
  return s != nullptr && std::atoi(s) > 0 ? std::atoi(s) : 1;
}

struct Env {
  explicit Env(std::size_t size, std::size_t page = 32 * K) : pa(Pages(page)),
      cls(&pa, Class(size)) {}
  static PageAlloc::Options Pages(std::size_t page) {
    PageAlloc::Options o;
    o.page_size = page;
    o.type = AllocType::kSmallSlab;
    return o;
  }
  static SlabClass::Options Class(std::size_t size) {
    SlabClass::Options o;
    o.object_size = size;
    return o;
  }
  PageAlloc pa;
  SlabClass cls;
};

TEST(MagazineCacheTest, CapacitiesAreTheIntendedOnes) {
  // <= 64 B: the fixed cap.
  EXPECT_EQ(MagazineCapacity(1), 1024u);
  EXPECT_EQ(MagazineCapacity(8), 1024u);
  EXPECT_EQ(MagazineCapacity(64), 1024u);
  // 65 B .. 8 KiB: 64 KiB / size, at least 16 (the reference meant
  // 512 KiB / size but computed 512 << (10 / size) = 512 for all of these).
  EXPECT_EQ(MagazineCapacity(65), (64 * K) / 65);
  EXPECT_EQ(MagazineCapacity(512), 128u);
  EXPECT_EQ(MagazineCapacity(1024), 64u);
  EXPECT_EQ(MagazineCapacity(4 * K), 16u);
  EXPECT_EQ(MagazineCapacity(8 * K), 16u);
  // > 8 KiB: max(1, 256 KiB / size) (the reference meant 1 MiB / size above
  // 32 KiB and computed 1 << (20 / size) = 1).
  EXPECT_EQ(MagazineCapacity(10 * K), 25u);
  EXPECT_EQ(MagazineCapacity(32 * K), 8u);
  EXPECT_EQ(MagazineCapacity(32 * K + 1), 7u);
  EXPECT_EQ(MagazineCapacity(64 * K), 4u);
  EXPECT_EQ(MagazineCapacity(256 * K), 1u);
  EXPECT_EQ(MagazineCapacity(512 * K), 1u);
  EXPECT_EQ(MagazineCapacity(4096 * K), 1u);
  // The cache uses it.
  Env e(1 * K, 256 * K);
  MagazineCache c(&e.cls);
  EXPECT_EQ(c.capacity(), 64u);
}

// A cache that only frees (a consumer) halves its capacity at each overflow
// down to the minimum; a refill restores the maximum.
TEST(MagazineCacheTest, FreeOnlyCacheShrinksAndRefillsRegrow) {
  Env e(64);
  SlabAllocator producer(&e.cls);
  MagazineCache consumer(&e.cls);
  const std::size_t max = consumer.max_capacity();
  ASSERT_EQ(max, 1024u);
  std::vector<void*> objs;
  for (int i = 0; i < 8000; ++i) {
    objs.push_back(producer.Alloc());
    ASSERT_NE(objs.back(), nullptr);
  }
  for (void* p : objs) {
    consumer.Free(p);
    EXPECT_LE(consumer.cached(), consumer.capacity());
  }
  // 8 KiB / 64 B: the consumer now holds at most 128 objects.
  EXPECT_EQ(consumer.capacity(), 128u);
  EXPECT_LE(consumer.cached(), 128u);
  // Allocating again: the first refill restores the full magazine.
  std::vector<void*> again;
  for (int i = 0; i < 4000; ++i) {
    again.push_back(consumer.Alloc());
    ASSERT_NE(again.back(), nullptr);
  }
  EXPECT_EQ(consumer.capacity(), max);
  for (void* p : again) consumer.Free(p);
  consumer.FlushAll();
  producer.Release();
}

// A thread that allocates many objects and then frees them all (a burst)
// grows its magazine, so that later rounds run out of it without touching
// the slabs; the growth is bounded by kBurstMagazineBytes.
TEST(MagazineCacheTest, BurstsGrowTheMagazine) {
  Env e(64);
  MagazineCache c(&e.cls);
  ASSERT_EQ(c.capacity(), 1024u);
  std::vector<void*> objs(10000);
  for (int round = 0; round < 3; ++round) {
    for (void*& p : objs) {
      p = c.Alloc();
      ASSERT_NE(p, nullptr);
    }
    for (void* p : objs) c.Free(p);
  }
  EXPECT_GT(c.capacity(), 1024u);
  EXPECT_LE(c.capacity(), kBurstMagazineBytes / 64);
  EXPECT_GE(c.cached(), objs.size());  // the whole round stayed cached
  c.FlushAll();
  // Classes above kAdaptiveMaxSize keep their capacity.
  Env big(1024);
  MagazineCache d(&big.cls);
  const std::size_t fixed = d.capacity();
  std::vector<void*> more(4 * fixed);
  for (int round = 0; round < 3; ++round) {
    for (void*& p : more) p = d.Alloc();
    for (void* p : more) d.Free(p);
  }
  EXPECT_EQ(d.capacity(), fixed);
  d.FlushAll();
}

// Magazines sharing a burst budget (a thread's) grow by at most its bytes
// together, and give their share back when they shrink or are destroyed.
TEST(MagazineCacheTest, BurstsShareTheBudget) {
  Env e64(64), e128(128);
  std::size_t budget = 512 * K;
  // Rounds of n allocations then n frees; returns the largest capacity seen.
  auto burst = [](MagazineCache& c, std::size_t n) {
    std::vector<void*> objs(n);
    std::size_t most = c.capacity();
    for (int round = 0; round < 4; ++round) {
      for (void*& p : objs) {
        p = c.Alloc();
        EXPECT_NE(p, nullptr);
      }
      for (void* p : objs) {
        c.Free(p);
        most = c.capacity() > most ? c.capacity() : most;
      }
    }
    return most;
  };
  auto grown = [](const MagazineCache& c, std::size_t size) {
    return c.capacity() > c.max_capacity()
               ? (c.capacity() - c.max_capacity()) * size
               : 0;
  };
  {
    MagazineCache a(&e64.cls, 0, nullptr, nullptr, &budget);
    MagazineCache b(&e128.cls, 0, nullptr, nullptr, &budget);
    burst(a, 6000);  // 384 KiB of 64-byte objects
    EXPECT_GT(a.capacity(), a.max_capacity());
    EXPECT_EQ(budget + grown(a, 64), 512 * K);
    const std::size_t left = budget;
    ASSERT_LT(left, 256 * K);
    // 512 KiB of 128-byte objects: more than is left. Without the budget
    // the magazine would grow to hold the whole round (4000 objects).
    const std::size_t most = burst(b, 4000);
    EXPECT_GT(most, b.max_capacity());
    EXPECT_LE((most - b.max_capacity()) * 128, left);
    EXPECT_EQ(budget + grown(a, 64) + grown(b, 128), 512 * K);
    a.FlushAll();
    b.FlushAll();
    // Moving a cache moves its share.
    MagazineCache moved(std::move(a));
    EXPECT_EQ(budget + grown(moved, 64) + grown(b, 128), 512 * K);
  }
  EXPECT_EQ(budget, 512 * K);  // destroyed: every share came back
}

// A cache of e's class whose fast-path state is `hot`, as a thread heap's
// are, with one object cached (the one returned).
void* BindAndCacheOne(Env& e, MagazineHot& hot, MagazineCache& c) {
  c.BindHot(&hot);
  c = MagazineCache(&e.cls);
  void* a = c.Alloc();
  if (a != nullptr) c.Free(a);
  return a;
}

// A ShadowScope blocks the fast paths while the slow paths work on a copy
// (MagazineHot, "Signal handlers"), and publishes the copy when it ends.
TEST(MagazineCacheTest, ShadowScopeBlocksTheFastPathsUntilItEnds) {
  Env e(64);
  MagazineHot hot{};
  MagazineCache c;
  ASSERT_NE(BindAndCacheOne(e, hot, c), nullptr);
  void* b = c.Alloc();
  ASSERT_NE(b, nullptr);
  const std::size_t cached = c.cached();
  ASSERT_GE(cached, 1u);
  {
    const MagazineCache::ShadowScope shadow(c);
    void* p;
    // What a signal handler's fast paths see: an empty and full magazine.
    EXPECT_FALSE(hot.TryAlloc(&p));
    EXPECT_FALSE(hot.TryFree(b));
    EXPECT_EQ(hot.CachedApprox(), 0u);
    // The owner's slow path works on the copy.
    EXPECT_EQ(c.cached(), cached);
    c.Free(b);
    EXPECT_EQ(c.cached(), cached + 1);
  }
  EXPECT_EQ(hot.top(), cached + 1);
  void* p;
  ASSERT_TRUE(hot.TryAlloc(&p));
  EXPECT_EQ(p, b);
  c.Free(p);
}

// A fork child of a handler that interrupted a ShadowScope unblocks the
// magazine, empty, on the same stack.
TEST(MagazineCacheTest, LeaveShadowInForkChildUnblocksAnEmptyMagazine) {
  Env e(64);
  MagazineHot hot{};
  MagazineCache c;
  void* a = BindAndCacheOne(e, hot, c);
  ASSERT_NE(a, nullptr);
  void** const stack = hot.stack();
  const std::uint32_t capacity = hot.capacity();
  const MagazineCache::ShadowScope shadow(c);
  void* p;
  ASSERT_FALSE(hot.TryAlloc(&p));
  c.LeaveShadowInForkChild();  // what the child does; the scope never ends
  EXPECT_EQ(hot.stack(), stack);
  EXPECT_EQ(hot.capacity(), capacity);
  EXPECT_EQ(hot.top(), 0u);
  EXPECT_FALSE(hot.TryAlloc(&p));
  EXPECT_TRUE(hot.TryFree(a));
  EXPECT_TRUE(hot.TryAlloc(&p));
  EXPECT_EQ(p, a);
}

TEST(MagazineCacheTest, FreeThenAllocIsLifo) {
  Env e(64);
  MagazineCache c(&e.cls);
  void* a = c.Alloc();
  void* b = c.Alloc();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  // The first allocation refilled a quarter of the stack; pops hand the
  // batch out in ascending address order, from the slab's first object
  // (which shares the OS page of the slab's header).
  EXPECT_EQ(c.cached(), c.capacity() / 4 - 2);
  EXPECT_LT(a, b);
  Slab* s = Slab::Find(a, e.pa.page_size());
  EXPECT_EQ(static_cast<char*>(a) - reinterpret_cast<char*>(s),
            static_cast<std::ptrdiff_t>(e.cls.metadata().objects_offset));
  const std::size_t base = c.cached();
  c.Free(a);
  c.Free(b);
  EXPECT_EQ(c.cached(), base + 2);
  EXPECT_EQ(c.Alloc(), b);
  EXPECT_EQ(c.Alloc(), a);
  EXPECT_EQ(c.cached(), base);
}

TEST(MagazineCacheTest, FullMagazineFlushesItsUpperHalf) {
  Env e(256);
  MagazineCache c(&e.cls, 8);
  std::vector<void*> objs;
  for (int i = 0; i < 9; ++i) objs.push_back(c.Alloc());
  c.FlushAll();  // what the refills took beyond the 9
  EXPECT_EQ(c.cached(), 0u);
  Slab* s = Slab::Find(objs[0], 32 * K);
  const std::int64_t before = s->AvailableCount();
  for (int i = 0; i < 8; ++i) c.Free(objs[i]);
  EXPECT_EQ(c.cached(), 8u);
  EXPECT_EQ(s->AvailableCount(), before);
  c.Free(objs[8]);  // full: objs[4..8) go back to the slab, then push
  EXPECT_EQ(c.cached(), 5u);
  EXPECT_EQ(s->AvailableCount(), before + 4);
  // The flushed ones are free in the slab; the cached ones come out LIFO.
  EXPECT_EQ(c.Alloc(), objs[8]);
  EXPECT_EQ(c.Alloc(), objs[3]);
}

TEST(MagazineCacheTest, CoalescedFlushLosesNothingAcrossManyWords) {
  // 8-byte objects: 64 per bit-set word. Free one object from each of many
  // words (plus a few sharing words) so that a flush fills many cells, and
  // collisions of different words in one cell are all but certain.
  Env e(8);
  SlabAllocator direct(&e.cls);
  std::vector<void*> objs;
  const std::size_t n = e.cls.metadata().n_objects;
  for (std::size_t i = 0; i < 3 * n; ++i) objs.push_back(direct.Alloc());
  std::set<Slab*> slabs;
  for (void* p : objs) slabs.insert(direct.SlabOf(p));
  std::int64_t before = 0;
  for (Slab* s : slabs) before += s->AvailableCount();
  {
    MagazineCache c(&e.cls, 64);
    std::size_t freed = 0;
    for (std::size_t i = 0; i < objs.size(); i += 61) {
      c.Free(objs[i]);
      ++freed;
      if (i + 1 < objs.size()) {
        c.Free(objs[i + 1]);  // same word as objs[i] (mostly)
        ++freed;
      }
    }
    std::int64_t after = 0;
    for (Slab* s : slabs) after += s->AvailableCount();
    EXPECT_EQ(after - before,
              static_cast<std::int64_t>(freed - c.cached()));
    c.FlushAll();
    after = 0;
    for (Slab* s : slabs) after += s->AvailableCount();
    EXPECT_EQ(after - before, static_cast<std::int64_t>(freed));
  }
}

}  // namespace

namespace internal {
class CoalescerTestPeer {
 public:
  static void SetBusy(Coalescer& c, bool busy) { c.busy_ = busy; }
  static bool Busy(const Coalescer& c) { return c.busy_; }
  // An interrupted flush's pending entry: cell i holds (slab, word, mask)
  // and is the first touched index.
  static void SetPending(Coalescer& c, std::size_t i, Slab* slab,
                         std::size_t word, std::uint64_t mask) {
    c.cells_[i] = Coalescer::Cell{slab, word, mask};
    c.touched_[0] = static_cast<std::uint32_t>(i);
  }
  static bool HasPending(const Coalescer& c, std::size_t i, Slab* slab,
                         std::size_t word, std::uint64_t mask) {
    return c.touched_[0] == i && c.cells_[i].slab == slab &&
           c.cells_[i].word == word && c.cells_[i].mask == mask;
  }
  static void ClearPending(Coalescer& c, std::size_t i) {
    c.cells_[i] = Coalescer::Cell{nullptr, 0, 0};
    c.touched_[0] = 0;
  }
  // Cells that hold an entry (a flush must leave none).
  static std::size_t UsedCells(const Coalescer& c, std::size_t cells) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < cells; ++i) n += c.cells_[i].slab != nullptr;
    return n;
  }
};
}  // namespace internal

namespace {

using internal::CoalescerTestPeer;

// Frees one object of each of many bit-set words plus a neighbour of
// each through c; returns how many.
std::size_t FreeSpread(MagazineCache& c, const std::vector<void*>& objs) {
  std::size_t freed = 0;
  for (std::size_t i = 0; i < objs.size(); i += 61) {
    c.Free(objs[i]);
    ++freed;
    if (i + 1 < objs.size()) {
      c.Free(objs[i + 1]);
      ++freed;
    }
  }
  return freed;
}

std::int64_t Available(const std::set<Slab*>& slabs) {
  std::int64_t n = 0;
  for (Slab* s : slabs) n += s->AvailableCount();
  return n;
}

// Caches of two classes flush through one table (a ThreadHeap's), their
// flushes interleaved and one cache moved: every object reaches its slab
// and each flush leaves the table empty for the next.
TEST(MagazineCacheTest, CachesOfManyClassesShareOneCoalescer) {
  Env e8(8), e16(16);
  Coalescer shared;
  ASSERT_TRUE(shared.Init(kMaxCoalescerCells));
  SlabAllocator d8(&e8.cls), d16(&e16.cls);
  std::vector<void*> o8, o16;
  for (std::size_t i = 0; i < 3 * e8.cls.metadata().n_objects; ++i) {
    o8.push_back(d8.Alloc());
  }
  for (std::size_t i = 0; i < 3 * e16.cls.metadata().n_objects; ++i) {
    o16.push_back(d16.Alloc());
  }
  std::set<Slab*> s8, s16;
  for (void* p : o8) s8.insert(d8.SlabOf(p));
  for (void* p : o16) s16.insert(d16.SlabOf(p));
  const std::int64_t b8 = Available(s8), b16 = Available(s16);
  MagazineCache c8(&e8.cls, 64, &shared);
  MagazineCache c16(&e16.cls, 64, &shared);
  const std::size_t f8 = FreeSpread(c8, o8);
  EXPECT_EQ(CoalescerTestPeer::UsedCells(shared, kMaxCoalescerCells), 0u);
  const std::size_t f16 = FreeSpread(c16, o16);
  EXPECT_EQ(CoalescerTestPeer::UsedCells(shared, kMaxCoalescerCells), 0u);
  EXPECT_EQ(Available(s8) - b8, static_cast<std::int64_t>(f8 - c8.cached()));
  EXPECT_EQ(Available(s16) - b16,
            static_cast<std::int64_t>(f16 - c16.cached()));
  MagazineCache moved(std::move(c8));  // still flushes through `shared`
  moved.FlushAll();
  c16.FlushAll();
  EXPECT_EQ(CoalescerTestPeer::UsedCells(shared, kMaxCoalescerCells), 0u);
  EXPECT_EQ(Available(s8) - b8, static_cast<std::int64_t>(f8));
  EXPECT_EQ(Available(s16) - b16, static_cast<std::int64_t>(f16));
}

// A flush that finds the table in use (a signal handler's free while the
// interrupted code flushes another class) frees its runs directly and
// leaves the table, and its busy mark, to the interrupted flush.
TEST(MagazineCacheTest, FlushDuringAnotherFlushBypassesTheTable) {
  Env e(8);
  Coalescer shared;
  ASSERT_TRUE(shared.Init(kMaxCoalescerCells));
  SlabAllocator direct(&e.cls);
  std::vector<void*> objs;
  for (std::size_t i = 0; i < 3 * e.cls.metadata().n_objects; ++i) {
    objs.push_back(direct.Alloc());
  }
  std::set<Slab*> slabs;
  for (void* p : objs) slabs.insert(direct.SlabOf(p));
  const std::int64_t before = Available(slabs);
  MagazineCache c(&e.cls, 64, &shared);
  // The interrupted flush's state: one pending cell (of a slab nobody
  // touches here) and the busy mark.
  alignas(64) static char fake_slab[64];
  Slab* const fake = reinterpret_cast<Slab*>(fake_slab);
  CoalescerTestPeer::SetPending(shared, 7, fake, 3, 0x5);
  CoalescerTestPeer::SetBusy(shared, true);
  const std::size_t freed = FreeSpread(c, objs);
  c.FlushAll();
  EXPECT_EQ(Available(slabs) - before, static_cast<std::int64_t>(freed));
  // Untouched: the pending entry, the touched list and the mark.
  EXPECT_TRUE(CoalescerTestPeer::HasPending(shared, 7, fake, 3, 0x5));
  EXPECT_EQ(CoalescerTestPeer::UsedCells(shared, kMaxCoalescerCells), 1u);
  EXPECT_TRUE(CoalescerTestPeer::Busy(shared));
  CoalescerTestPeer::ClearPending(shared, 7);
  CoalescerTestPeer::SetBusy(shared, false);
}

TEST(MagazineCacheTest, DestructionReturnsEveryObjectAndPage) {
  Env e(128);
  {
    MagazineCache c(&e.cls);
    std::vector<void*> objs;
    const std::size_t n = 3 * e.cls.metadata().n_objects + 7;
    for (std::size_t i = 0; i < n; ++i) objs.push_back(c.Alloc());
    std::set<void*> distinct(objs.begin(), objs.end());
    EXPECT_EQ(distinct.size(), n);
    EXPECT_EQ(e.cls.pages_in_use(), 4u);
    for (void* p : objs) c.Free(p);
    EXPECT_GT(e.cls.pages_in_use(), 0u);  // the magazine holds objects
  }
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

TEST(MagazineCacheTest, MoveKeepsTheCachedObjects) {
  Env e(64);
  MagazineCache a(&e.cls);
  void* p = a.Alloc();
  a.Free(p);
  const std::size_t n = a.cached();  // p and the rest of the refill
  MagazineCache b(std::move(a));
  EXPECT_EQ(b.cached(), n);
  EXPECT_EQ(a.cached(), 0u);
  EXPECT_EQ(b.Alloc(), p);
  b.Free(p);
}

// A full stack and a nursery for a cache of `size`-byte objects, as a
// ThreadHeap's stack arena gives them.
struct NurseryStacks {
  explicit NurseryStacks(std::size_t size)
      : stack(MagazineStackBytes(size) / sizeof(void*), nullptr),
        nursery(kNurseryEntries, nullptr) {}
  MagazineCache Make(SlabClass* cls) {
    return MagazineCache(cls, 0, nullptr, stack.data(), nullptr,
                         nursery.data());
  }
  std::vector<void*> stack;
  std::vector<void*> nursery;
};

// A cache given a nursery starts in it: light use (a first refill of at
// most kNurseryEntries objects, frees that fit) never touches the full
// stack; the first overflow of a thread that took objects from the slabs
// moves every cached object to the full stack and restores the default
// capacity; so does the refill after the nursery took 2 KiB of objects
// (kSharedRefillBudgetBytes); moving the cache keeps its state.
TEST(MagazineCacheTest, NurseryHoldsLightUseAndGraduatesWithItsObjects) {
  Env e(64);
  NurseryStacks stacks(64);
  std::vector<void*>& stack = stacks.stack;
  std::vector<void*>& nursery = stacks.nursery;
  SlabAllocator other(&e.cls);
  {
    MagazineCache c = stacks.Make(&e.cls);
    ASSERT_TRUE(c.in_nursery());
    EXPECT_EQ(c.capacity(), kNurseryEntries);
    EXPECT_EQ(c.max_capacity(), 1024u);
    void* p = c.Alloc();
    ASSERT_NE(p, nullptr);
    // The first refill took a nursery's worth, not a quarter magazine.
    EXPECT_EQ(c.cached(), kNurseryEntries - 1);
    EXPECT_EQ(c.cached_objects(), nursery.data());
    c.Free(p);
    EXPECT_TRUE(c.in_nursery());
    EXPECT_EQ(c.cached(), kNurseryEntries);
    // One more free overflows the nursery: graduation, nothing lost.
    std::set<void*> want(c.cached_objects(), c.cached_objects() + c.cached());
    void* q = other.Alloc();
    ASSERT_NE(q, nullptr);
    want.insert(q);
    c.Free(q);
    EXPECT_FALSE(c.in_nursery());
    EXPECT_EQ(c.cached_objects(), stack.data());
    EXPECT_EQ(c.capacity(), c.max_capacity());
    EXPECT_EQ(std::set<void*>(c.cached_objects(),
                              c.cached_objects() + c.cached()),
              want);
    // Every object still comes back out, newest first.
    EXPECT_EQ(c.Alloc(), q);
  }
  {
    MagazineCache c = stacks.Make(&e.cls);
    // Allocating past the first refill (a nursery of 64-byte objects: 2 KiB):
    // the second refill graduates and takes a quarter magazine.
    std::vector<void*> objs;
    for (std::size_t i = 0; i <= kNurseryEntries; ++i) {
      objs.push_back(c.Alloc());
      ASSERT_NE(objs.back(), nullptr);
    }
    EXPECT_FALSE(c.in_nursery());
    EXPECT_EQ(c.capacity(), c.max_capacity());
    EXPECT_EQ(c.cached(), c.max_capacity() / 4 - 1);
    MagazineCache d(std::move(c));
    EXPECT_FALSE(d.in_nursery());
    for (void* o : objs) d.Free(o);
    EXPECT_EQ(std::set<void*>(objs.begin(), objs.end()).size(), objs.size());
  }
  {
    // Moving a cache that is still in its nursery keeps it there.
    MagazineCache c = stacks.Make(&e.cls);
    void* p = c.Alloc();
    MagazineCache d(std::move(c));
    EXPECT_TRUE(d.in_nursery());
    EXPECT_FALSE(c.in_nursery());
    EXPECT_EQ(d.cached_objects(), nursery.data());
    d.Free(p);
    EXPECT_EQ(d.cached(), kNurseryEntries);
  }
  // Without a stack of its own, or with a default capacity no larger than
  // a nursery, a cache has none.
  MagazineCache own(&e.cls, 0, nullptr, nullptr, nullptr, nursery.data());
  EXPECT_FALSE(own.in_nursery());
  Env big(4 * K, 256 * K);
  std::vector<void*> small_stack(MagazineStackBytes(4 * K) / sizeof(void*));
  MagazineCache few(&big.cls, 0, nullptr, small_stack.data(), nullptr,
                    nursery.data());
  EXPECT_FALSE(few.in_nursery());
  EXPECT_EQ(few.capacity(), 16u);
  other.Release();
}

// A thread whose first use of a class is freeing (a consumer freeing what
// another thread allocated) leaves the nursery at the free-only minimum,
// not at the default capacity: a consumer started at the default held up
// to 64 KiB of every class until its overflows halved it, long enough to
// push the producer of a pair onto a second slab per class, both wholly
// touched (prodcons peak RSS). A refill restores the default at once.
TEST(MagazineCacheTest, FreeOnlyNurseryGraduatesAtTheMinimum) {
  Env e(64);
  NurseryStacks stacks(64);
  SlabAllocator other(&e.cls);
  MagazineCache c = stacks.Make(&e.cls);
  ASSERT_TRUE(c.in_nursery());
  std::vector<void*> objs;
  for (std::size_t i = 0; i <= kNurseryEntries; ++i) {
    objs.push_back(other.Alloc());
    ASSERT_NE(objs.back(), nullptr);
  }
  for (void* p : objs) c.Free(p);
  EXPECT_FALSE(c.in_nursery());
  // 8 KiB / 64 B.
  EXPECT_EQ(c.capacity(), 128u);
  EXPECT_EQ(c.cached(), kNurseryEntries + 1);
  // Every object comes back out, then a refill restores the default.
  std::set<void*> out;
  for (std::size_t i = 0; i <= kNurseryEntries + 1; ++i) out.insert(c.Alloc());
  EXPECT_EQ(out.size(), kNurseryEntries + 2);
  for (void* p : objs) EXPECT_EQ(out.count(p), 1u);
  EXPECT_EQ(c.capacity(), c.max_capacity());
  for (void* p : out) c.Free(p);
  c.FlushAll();
  other.Release();
}

// Shared refills: a cache in its nursery (a heap's) takes its refills from
// the shared source, at most kSharedRefillBytes of objects each, until it
// has taken kSharedRefillBudgetBytes, and its later ones from its own
// slab; a cache built alone never asks the source; a source that returns 0
// sends the cache to its slab.
SlabAllocator* g_test_source = nullptr;
int g_test_source_calls = 0;
std::size_t TestSource(SlabClass*, void** out, std::size_t n) noexcept {
  ++g_test_source_calls;
  return g_test_source == nullptr ? 0 : g_test_source->AllocBatch(out, n);
}

TEST(MagazineCacheTest, RefillsOfAHeapsNurseryAreShared) {
  Env e(64);
  SlabAllocator source(&e.cls);
  g_test_source = &source;
  g_test_source_calls = 0;
  SetSharedRefill(&TestSource);
  NurseryStacks stacks(64);
  {
    MagazineCache c = stacks.Make(&e.cls);
    void* p = c.Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(g_test_source_calls, 1);
    // The source's slab, not a slab of the cache's own: 512 B of 64-byte
    // objects.
    EXPECT_TRUE(source.Contains(p));
    EXPECT_EQ(c.cached(), kSharedRefillBytes / 64 - 1);
    EXPECT_TRUE(c.in_nursery());
    // The refills up to 2 KiB of objects come from the source too, one per
    // 512 B, and the cache stays in its nursery.
    std::vector<void*> objs{p};
    while (objs.size() < kSharedRefillBudgetBytes / 64) {
      objs.push_back(c.Alloc());
      ASSERT_NE(objs.back(), nullptr);
      EXPECT_TRUE(source.Contains(objs.back()));
    }
    EXPECT_EQ(g_test_source_calls,
              static_cast<int>(kSharedRefillBudgetBytes / kSharedRefillBytes));
    EXPECT_TRUE(c.in_nursery());
    // The next refill graduates and comes from the cache's own slab.
    objs.push_back(c.Alloc());
    ASSERT_NE(objs.back(), nullptr);
    EXPECT_EQ(g_test_source_calls,
              static_cast<int>(kSharedRefillBudgetBytes / kSharedRefillBytes));
    EXPECT_FALSE(source.Contains(objs.back()));
    EXPECT_FALSE(c.in_nursery());
    for (void* o : objs) c.Free(o);
    c.FlushAll();
  }
  {
    // A cache built alone (no stack given) never asks.
    g_test_source_calls = 0;
    MagazineCache alone(&e.cls);
    void* p = alone.Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(g_test_source_calls, 0);
    alone.Free(p);
  }
  {
    // A source that cannot serve.
    g_test_source = nullptr;
    MagazineCache c = stacks.Make(&e.cls);
    void* p = c.Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(g_test_source_calls, 1);
    EXPECT_FALSE(source.Contains(p));
    c.Free(p);
  }
  SetSharedRefill(nullptr);
  source.Release();
}

// Threads allocate through their own magazine caches, stamp each object,
// and pass batches to the next thread, which checks and frees them through
// its cache: remote frees, coalesced flushes and slab transitions all race.
// Run under TSan (no data race may be reported) and ASan.
TEST(MagazineCacheTest, ConcurrentRemoteFreesThroughMagazines) {
  Env e(48);
  constexpr int kThreads = 4;
  const int rounds = 30000 * Scale();
  std::mutex mu;
  std::vector<std::vector<std::uint64_t*>> mail(kThreads);
  std::atomic<bool> failed{false};
  auto worker = [&](int id) {
    MagazineCache c(&e.cls, 32);  // small: flushes happen often
    std::vector<std::uint64_t*> mine;
    for (int r = 0; r < rounds; ++r) {
      auto* p = static_cast<std::uint64_t*>(c.Alloc());
      if (p == nullptr) {
        failed = true;
        break;
      }
      for (int w = 0; w < 6; ++w) p[w] = static_cast<std::uint64_t>(id);
      mine.push_back(p);
      if (r % 3 == 0) {  // some local frees too
        std::uint64_t* q = mine.back();
        mine.pop_back();
        c.Free(q);
      }
      if (mine.size() >= 100) {
        std::vector<std::uint64_t*> in;
        {
          std::lock_guard<std::mutex> l(mu);
          auto& box = mail[(id + 1) % kThreads];
          box.insert(box.end(), mine.begin(), mine.end());
          in.swap(mail[id]);
        }
        mine.clear();
        for (std::uint64_t* q : in) {
          for (int w = 1; w < 6; ++w) {
            if (q[w] != q[0]) failed = true;
          }
          c.Free(q);
        }
      }
    }
    for (std::uint64_t* q : mine) c.Free(q);
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  {
    MagazineCache c(&e.cls);
    for (auto& box : mail) {
      for (std::uint64_t* q : box) c.Free(q);
    }
  }
  EXPECT_FALSE(failed.load());
  // Everything is free: only wholly free slabs left in the bag by a lost
  // push/revoke race may still count as in use.
  auto h = e.cls.available().NewHandle();
  auto pages = e.pa.NewHandle();
  std::size_t listed = 0;
  Slab* s = nullptr;
  while (h.Pop(&s)) {
    EXPECT_EQ(s->AvailableCount(),
              static_cast<std::int64_t>(e.cls.metadata().n_objects));
    ++listed;
    pages.Free(s);
  }
  EXPECT_EQ(e.cls.pages_in_use(), listed);
}

}  // namespace
}  // namespace elfmalloc
