// Tests for slab_allocator.h: allocation across slabs, every refresh path
// (re-claim above the cutoff, pop from the available bag, fresh page, reuse
// of a returned page), every remote-free transition (available, full with
// revoke, full unlisted), the release policy (page back / listed / floating,
// including the iterator's pending objects), the eager-uncommit hint, and a
// multi-threaded remote-free stress that checks exclusivity of objects.
#include "elfmalloc/slab_allocator.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/size_classes.h"
#include "elfmalloc/slab.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace internal {

// Splits a remote free into the slab's half and the allocator's reaction,
// so that a test can "preempt" the freer between them.
class SlabAllocatorTestPeer {
 public:
  static void OnFree(SlabAllocator& a, Slab* s, FreeResult r) {
    a.OnFree(s, r);
  }
};

}  // namespace internal

namespace {

using internal::SlabAllocatorTestPeer;

constexpr std::size_t K = 1024;

PageAlloc::Options Pages(std::size_t page_size) {
  PageAlloc::Options o;
  o.page_size = page_size;
  o.type = page_size < kStampAlignment ? AllocType::kSmallSlab
                                       : AllocType::kMediumSlab;
  return o;
}

// A BagArena of `blocks` zeroed blocks for bags of `queues` queues, in
// cache-line-aligned memory of the test's own, and whether a block is
// still untouched.
struct TestBagArena {
  TestBagArena(std::size_t queues, std::size_t blocks)
      : bytes(SlabClass::BagStorageBytes(queues)),
        raw(blocks * bytes + 64, 0),
        base(raw.data() +
             (64 - reinterpret_cast<std::uintptr_t>(raw.data()) % 64) % 64) {
    arena.Init(base, bytes, blocks);
  }
  bool Zero(std::size_t block) const {
    const unsigned char* b = base + block * bytes;
    return std::all_of(b, b + bytes, [](unsigned char c) { return c == 0; });
  }
  const std::size_t bytes;
  std::vector<unsigned char> raw;
  unsigned char* const base;
  BagArena arena;
};

SlabClass::Options Class(std::size_t size, double cutoff = 0.6) {
  SlabClass::Options o;
  o.object_size = size;
  o.cutoff = cutoff;
  return o;
}

int Scale() {
  const char* s = std::getenv("ELFMALLOC_STRESS_SCALE");
  return s != nullptr && std::atoi(s) > 0 ? std::atoi(s) : 1;
}

struct Env {
  explicit Env(std::size_t size, std::size_t page = 32 * K,
               double cutoff = 0.6)
      : pa(Pages(page)), cls(&pa, Class(size, cutoff)) {}
  explicit Env(std::size_t size, std::size_t page,
               const SlabClass::Options& o)
      : pa(Pages(page)), cls(&pa, o) {
    (void)size;
  }
  std::size_t n() const { return cls.metadata().n_objects; }
  std::size_t cutoff() const { return cls.metadata().cutoff_objects; }
  PageAlloc pa;
  SlabClass cls;
};

std::vector<void*> AllocN(SlabAllocator& a, std::size_t n) {
  std::vector<void*> v;
  for (std::size_t i = 0; i < n; ++i) {
    void* p = a.Alloc();
    EXPECT_NE(p, nullptr);
    v.push_back(p);
  }
  return v;
}

TEST(SlabAllocatorTest, ObjectsAreDistinctAlignedAndInsideTheirSlab) {
  Env e(256);
  ASSERT_TRUE(e.cls.valid());
  SlabAllocator a(&e.cls);
  const std::size_t total = 3 * e.n() + 5;
  std::vector<void*> objs = AllocN(a, total);
  std::set<void*> distinct(objs.begin(), objs.end());
  EXPECT_EQ(distinct.size(), total);
  std::set<Slab*> slabs;
  for (void* p : objs) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 256, 0u);
    Slab* s = a.SlabOf(p);
    slabs.insert(s);
    const auto off = static_cast<std::size_t>(static_cast<char*>(p) -
                                              reinterpret_cast<char*>(s));
    EXPECT_GE(off, e.cls.metadata().objects_offset);
    EXPECT_LE(off + 256, 32 * K);
    std::memset(p, 0xab, 256);  // must not corrupt any header
  }
  EXPECT_EQ(slabs.size(), 4u);
  EXPECT_EQ(e.cls.pages_in_use(), 4u);
  for (void* p : objs) a.Free(p);
  a.Release();
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

// AllocBatch fills out[0, k) in descending address order (out[k - 1] the
// lowest), so a stack popped from its top hands a slab out from its start;
// a batch cut short by the end of a slab sits at the bottom of out, and
// every object of every slab is handed out exactly once.
TEST(SlabAllocatorTest, AllocBatchIsDescendingAndCompactedAtSlabEnd) {
  Env e(256);
  ASSERT_TRUE(e.cls.valid());
  SlabAllocator a(&e.cls);
  const std::size_t n = e.n();
  ASSERT_GT(n, 40u);
  std::set<void*> seen;
  std::size_t total = 0;
  bool short_batch = false;
  Slab* first_slab = nullptr;
  for (int round = 0; total < 2 * n; ++round) {
    void* out[40];
    for (void*& p : out) p = nullptr;
    const std::size_t k = a.AllocBatch(out, 40);
    ASSERT_GE(k, 1u);
    ASSERT_LE(k, 40u);
    if (k < 40) short_batch = true;
    for (std::size_t i = 0; i < k; ++i) {
      ASSERT_NE(out[i], nullptr);
      EXPECT_TRUE(seen.insert(out[i]).second) << "handed out twice";
      if (i + 1 < k && a.SlabOf(out[i]) == a.SlabOf(out[i + 1])) {
        EXPECT_GT(out[i], out[i + 1]) << "batch " << round << " at " << i;
      }
    }
    if (round == 0) {
      // The very first object of a fresh slab is its lowest one.
      first_slab = a.SlabOf(out[k - 1]);
      EXPECT_EQ(static_cast<char*>(out[k - 1]) -
                    reinterpret_cast<char*>(first_slab),
                static_cast<std::ptrdiff_t>(e.cls.metadata().objects_offset));
    }
    total += k;
  }
  EXPECT_TRUE(short_batch);  // n is not a multiple of 40 for 256-byte objects
  for (void* p : seen) a.Free(p);
  a.Release();
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

// A magazine's refill after a flush: the objects a flush gave back to the
// owner's low-first slab come out again before any the slab never handed
// out, also when the slab's first object was taken by claiming it
// (AllocSlow's Next()). Next() once took its word whole into the iterator,
// which then handed out the rest of that word, in order, before it looked
// at the slab again: for classes of at most 64 objects per slab (4 KiB
// objects on 256 KiB pages) or 64 objects per word (16 KiB objects on
// 2 MiB pages: 1 MiB) a thread touched the whole word, however few
// objects it held (shbench 64 B-4 KiB: every 3-4 KiB class kept its
// slabs wholly resident).
TEST(SlabAllocatorTest, RefillsAfterAFlushReuseTheFlushedObjectsFirst) {
  for (const auto& [size, page] :
       {std::pair{std::size_t{4096}, 256 * K}, std::pair{3 * K, 256 * K},
        std::pair{16 * K, 2048 * K}, std::pair{std::size_t{1000}, 64 * K}}) {
    SCOPED_TRACE(size);
    Env e(size, page);
    ASSERT_TRUE(e.cls.valid());
    ASSERT_GE(page, kLowFirstMinPage);
    SlabAllocator a(&e.cls);
    void* out[8];
    // The first refill claims the slab: its 8 lowest objects.
    ASSERT_EQ(a.AllocBatch(out, 8), 8u);
    Slab* s = a.SlabOf(out[0]);
    for (std::size_t i = 0; i < 8; ++i) {
      ASSERT_EQ(out[7 - i], s->ObjectAt(i)) << i;
    }
    // A flush gives back objects 2..7.
    for (std::size_t i = 2; i < 8; ++i) {
      const auto pos = s->PositionOf(s->ObjectAt(i));
      a.BulkFree(s, pos.word, pos.mask);
    }
    // The next refill takes them, lowest first, before object 8.
    ASSERT_EQ(a.AllocBatch(out, 8), 8u);
    for (std::size_t i = 0; i < 6; ++i) {
      EXPECT_EQ(out[7 - i], s->ObjectAt(2 + i)) << i;
    }
    EXPECT_EQ(out[1], s->ObjectAt(8));
    EXPECT_EQ(out[0], s->ObjectAt(9));
    for (std::size_t i = 0; i < 10; ++i) a.Free(s->ObjectAt(i));
    a.Release();
    EXPECT_EQ(e.cls.pages_in_use(), 0u);
  }
}

// The previous slab (2 MiB pages): once the first slab ran dry and a
// second one serves, objects freed back into the first are handed out
// before any of the second's that were never handed out; the first slab
// floated before, and the batches walked on into the second.
TEST(SlabAllocatorTest, ObjectsFreedIntoThePreviousSlabAreReusedFirst) {
  SlabClass::Options o = Class(40 * K);
  o.keep_previous_slab = true;
  Env e(40 * K, 2048 * K, o);
  ASSERT_TRUE(e.cls.valid());
  SlabAllocator a(&e.cls);
  const std::size_t n = e.n();
  std::vector<void*> objs;
  while (objs.size() < n + 4) {
    void* out[8];
    const std::size_t k = a.AllocBatch(out, 8);
    ASSERT_GE(k, 1u);
    for (std::size_t i = k; i-- > 0;) objs.push_back(out[i]);
  }
  Slab* const first = a.SlabOf(objs[0]);
  Slab* const second = a.SlabOf(objs.back());
  ASSERT_NE(first, second);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(a.SlabOf(objs[i]), first);
  std::set<void*> freed;
  for (std::size_t i = 3; i < 13; ++i) {
    const auto pos = first->PositionOf(objs[i]);
    a.BulkFree(first, pos.word, pos.mask);
    freed.insert(objs[i]);
  }
  void* out[8];
  ASSERT_EQ(a.AllocBatch(out, 8), 8u);
  for (void* p : out) {
    EXPECT_EQ(freed.count(p), 1u) << "not an object freed into the first slab";
  }
  EXPECT_EQ(e.cls.pages_in_use(), 2u);
  // Release gives back both slabs.
  for (void* p : out) freed.erase(p);
  for (std::size_t i = 0; i < objs.size(); ++i) {
    if (i < 3 || i >= 13) a.Free(objs[i]);
  }
  for (void* p : out) a.Free(p);
  a.Release();
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

// Objects the owner frees into its current slab are handed out again
// before the slab counts as used up (LocalIter::Rewind): a thread with few
// live objects keeps reusing the start of its slab instead of taking a new
// one (here the slab would float below the cutoff and a fresh page would
// be claimed).
TEST(SlabAllocatorTest, OwnersFreesIntoItsSlabAreReusedFirst) {
  Env e(256);
  ASSERT_TRUE(e.cls.valid());
  SlabAllocator a(&e.cls);
  const std::size_t n = e.n();
  std::vector<void*> objs = AllocN(a, n);  // the whole first slab
  Slab* s = a.SlabOf(objs[0]);
  for (void* p : objs) ASSERT_EQ(a.SlabOf(p), s);
  const std::size_t k = 20;
  ASSERT_LT(k, e.cutoff());
  std::set<void*> freed;
  for (std::size_t i = 0; i < k; ++i) {
    const auto pos = s->PositionOf(objs[i]);
    a.BulkFree(s, pos.word, pos.mask);
    freed.insert(objs[i]);
  }
  for (std::size_t i = 0; i < k; ++i) {
    void* p = a.Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(freed.count(p), 1u) << "object " << i << " not reused";
    objs[i] = p;
  }
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
  for (void* p : objs) a.Free(p);
  a.Release();
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

TEST(SlabAllocatorTest, RefreshReclaimsTheSameSlabAboveCutoff) {
  Env e(256);
  SlabAllocator a(&e.cls);
  std::vector<void*> objs = AllocN(a, e.n());  // iterator now exhausted
  Slab* s = a.SlabOf(objs[0]);
  // Frees while claimed make no transition.
  for (std::size_t i = 0; i < e.cutoff(); ++i) a.Free(objs[i]);
  EXPECT_EQ(e.cls.available().SizeGuess(), 0u);
  void* p = a.Alloc();
  EXPECT_EQ(a.SlabOf(p), s);
  EXPECT_TRUE(s->IsClaimed());
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
}

TEST(SlabAllocatorTest, BelowCutoffFloatsThenFreesListItForOthers) {
  Env e(256);
  SlabAllocator a(&e.cls);
  SlabAllocator b(&e.cls);  // "another thread"
  std::vector<void*> objs = AllocN(a, e.n());
  Slab* s = a.SlabOf(objs[0]);
  void* next = a.Alloc();  // refresh: s floats (count 0), new slab
  EXPECT_NE(a.SlabOf(next), s);
  EXPECT_FALSE(s->IsClaimed());
  for (std::size_t i = 0; i + 1 < e.cutoff(); ++i) b.Free(objs[i]);
  EXPECT_EQ(e.cls.available().SizeGuess(), 0u);  // still floating
  b.Free(objs[e.cutoff() - 1]);  // crosses the cutoff: listed
  void* q = b.Alloc();           // b's first slab comes from the bag
  EXPECT_EQ(b.SlabOf(q), s);
  EXPECT_TRUE(s->IsClaimed());
  EXPECT_EQ(e.cls.pages_in_use(), 2u);
}

TEST(SlabAllocatorTest, CompletingAListedSlabRevokesAndReturnsItsPage) {
  Env e(256);
  SlabAllocator a(&e.cls);
  std::vector<void*> objs = AllocN(a, e.n());
  Slab* s = a.SlabOf(objs[0]);
  a.Alloc();  // s floats
  ASSERT_EQ(e.cls.pages_in_use(), 2u);
  const std::size_t dirty_before = e.pa.GetStats().dirty_pages;
  for (void* p : objs) a.Free(p);  // listed at the cutoff, then FULL
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
  EXPECT_EQ(e.pa.GetStats().dirty_pages, dirty_before + 1);
  EXPECT_EQ(s->handle().load(), 0u);
  // The revoke removed it: the bag hands out nothing.
  auto h = e.cls.available().NewHandle();
  Slab* got = nullptr;
  EXPECT_FALSE(h.Pop(&got));
}

TEST(SlabAllocatorTest, OneObjectSlabsGoBackUnlisted) {
  Env e(20 * K);
  ASSERT_EQ(e.n(), 1u);
  ASSERT_EQ(e.cutoff(), 1u);
  SlabAllocator a(&e.cls);
  void* x = a.Alloc();
  void* y = a.Alloc();  // x's slab floats with count 0
  EXPECT_NE(a.SlabOf(x), a.SlabOf(y));
  EXPECT_EQ(e.cls.pages_in_use(), 2u);
  a.Free(x);  // FLOATING -> FULL: straight back to the page allocator
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
  EXPECT_EQ(e.cls.available().SizeGuess(), 0u);
  a.Free(y);  // claimed: nothing yet
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
  a.Release();  // wholly free: page back
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

TEST(SlabAllocatorTest, ReturnedPageIsReusedAndServesEveryObjectAgain) {
  Env e(256);
  SlabAllocator a(&e.cls);
  std::vector<void*> first = AllocN(a, e.n());
  Slab* s = a.SlabOf(first[0]);
  for (void* p : first) a.Free(p);
  a.Release();  // wholly free: page back to the PageAlloc (dirty)
  ASSERT_EQ(e.cls.pages_in_use(), 0u);
  // The same page comes back (the only dirty page) without re-init, and
  // still yields exactly its n objects.
  std::vector<void*> second = AllocN(a, e.n());
  EXPECT_EQ(a.SlabOf(second[0]), s);
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  EXPECT_EQ(first, second);
  void* extra = a.Alloc();
  EXPECT_NE(a.SlabOf(extra), s);
}

TEST(SlabAllocatorTest, ReleaseGivesBackTheIteratorsPendingObjects) {
  Env e(256);
  SlabAllocator a(&e.cls);
  void* p = a.Alloc();  // takes the whole first bit-set word
  a.Free(p);
  a.Release();
  // Without returning the word's other 63 objects the count would be below
  // n and the page would be listed instead of returned.
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
  EXPECT_EQ(e.cls.available().SizeGuess(), 0u);
}

TEST(SlabAllocatorTest, ReleaseListsASlabAboveCutoff) {
  Env e(256);
  SlabAllocator a(&e.cls);
  std::vector<void*> objs = AllocN(a, e.n());
  Slab* s = a.SlabOf(objs[0]);
  for (std::size_t i = 0; i < e.cutoff(); ++i) a.Free(objs[i]);
  a.Release();
  EXPECT_FALSE(s->IsClaimed());
  SlabAllocator b(&e.cls);
  EXPECT_EQ(b.SlabOf(b.Alloc()), s);  // popped from the bag
}

TEST(SlabAllocatorTest, ReleaseLeavesASlabBelowCutoffFloating) {
  Env e(256);
  SlabAllocator a(&e.cls);
  std::vector<void*> objs = AllocN(a, e.n());
  Slab* s = a.SlabOf(objs[0]);
  a.Release();
  EXPECT_FALSE(s->IsClaimed());
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
  SlabAllocator b(&e.cls);
  EXPECT_NE(b.SlabOf(b.Alloc()), s);  // not listed
  for (void* p : objs) b.Free(p);     // listed, then returned
  EXPECT_EQ(e.cls.pages_in_use(), 1u);  // b's own slab only
}

TEST(SlabAllocatorTest, EagerUncommitHintUncommitsReturnedPages) {
  SlabClass::Options o = Class(1024);
  o.eager_uncommit_threshold = 128 * K;
  Env e(1024, 256 * K, o);
  ASSERT_TRUE(e.cls.uncommit_on_free());
  SlabAllocator a(&e.cls);
  std::vector<void*> objs = AllocN(a, e.n());
  for (void* p : objs) std::memset(p, 1, 1024);
  for (void* p : objs) a.Free(p);
  a.Release();
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
  EXPECT_EQ(e.pa.GetStats().uncommits, 1u);
  EXPECT_EQ(e.pa.GetStats().dirty_pages, 0u);
  // The uncommitted page is reused (header kept) and works.
  std::vector<void*> again = AllocN(a, e.n());
  std::set<void*> distinct(again.begin(), again.end());
  EXPECT_EQ(distinct.size(), e.n());
  for (void* p : again) a.Free(p);
}

TEST(SlabAllocatorTest, NoHintBelowThreshold) {
  SlabClass::Options o = Class(256);
  o.eager_uncommit_threshold = 128 * K;
  Env e(256, 32 * K, o);
  EXPECT_FALSE(e.cls.uncommit_on_free());
}

TEST(SlabAllocatorTest, SharedPageAllocReinitialisesForAnotherClass) {
  PageAlloc pa(Pages(32 * K));
  SlabClass small(&pa, Class(64));
  SlabClass big(&pa, Class(512));
  {
    SlabAllocator a(&small);
    a.Free(a.Alloc());
  }  // page back, laid out for 64-byte objects
  ASSERT_EQ(small.pages_in_use(), 0u);
  SlabAllocator b(&big);
  std::vector<void*> objs = AllocN(b, big.metadata().n_objects);
  std::set<void*> distinct(objs.begin(), objs.end());
  EXPECT_EQ(distinct.size(), objs.size());
  for (void* p : objs) {
    EXPECT_EQ(b.SlabOf(p)->metadata(), &big.metadata());
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 512, 0u);
  }
}

// zero_object_tails: a page another class's layout left data in gets the
// last word of every object, and the guard words kept before object 0 and
// after the last one, zeroed
// when this class lays it out; a class
// without the option leaves the old bytes (so the test sees the option).
TEST(SlabAllocatorTest, ZeroObjectTailsClearsWhatAnotherLayoutLeft) {
  for (bool zero : {true, false}) {
    PageAlloc pa(Pages(32 * K));
    SlabClass::Options ob = Class(48);
    ob.zero_object_tails = zero;
    SlabClass small(&pa, Class(64));
    SlabClass big(&pa, ob);
    {
      SlabAllocator a(&small);
      std::vector<void*> objs = AllocN(a, small.metadata().n_objects);
      for (void* p : objs) std::memset(p, 0xee, 64);
      for (void* p : objs) a.Free(p);
    }  // page back with 0xee everywhere but the header
    ASSERT_EQ(small.pages_in_use(), 0u);
    SlabAllocator b(&big);
    std::vector<void*> objs = AllocN(b, big.metadata().n_objects);
    ASSERT_EQ(big.pages_in_use(), 1u);  // the same page
    std::size_t zero_tails = 0;
    for (void* p : objs) {
      std::uint64_t tail;
      std::memcpy(&tail, static_cast<char*>(p) + 48 - 8, 8);
      zero_tails += tail == 0;
    }
    EXPECT_EQ(zero_tails, zero ? objs.size() : 0u) << "zero_object_tails "
                                                   << zero;
    if (zero) {
      // The layout keeps a word before object 0, past the bit-set, and one
      // after the last object, zeroed like the objects' tails.
      const SlabMetadata& m = big.metadata();
      EXPECT_GE(m.objects_offset,
                kSlabHeaderSize + 8 * m.bitset_words + sizeof(std::uint64_t));
      EXPECT_LE(m.objects_offset + m.n_objects * m.object_size +
                    sizeof(std::uint64_t),
                m.usable_size);
      const char* slab = reinterpret_cast<char*>(b.SlabOf(objs[0]));
      std::uint64_t before, after;
      std::memcpy(&before, slab + m.objects_offset - sizeof(std::uint64_t),
                  sizeof(before));
      std::memcpy(&after, slab + m.objects_offset + m.n_objects * m.object_size,
                  sizeof(after));
      EXPECT_EQ(before, 0u);
      EXPECT_EQ(after, 0u);
    }
  }
}

TEST(SlabAllocatorTest, LostRevokeLeavesAWhollyFreeListedSlabThatIsReused) {
  PageAlloc pa(Pages(32 * K));
  std::size_t dirty_before_destroy = 0;
  {
    SlabClass cls(&pa, Class(256));
    SlabAllocator a(&cls);
    std::vector<void*> objs = AllocN(a, cls.metadata().n_objects);
    Slab* s = a.SlabOf(objs[0]);
    void* a_extra = a.Alloc();  // s floats
    for (std::size_t i = 0; i + 1 < objs.size(); ++i) a.Free(objs[i]);
    // s is listed. Simulate the race of slab.h's AVAILABLE -> FULL: the
    // listing push lands only after the completing free's revoke failed.
    auto h = cls.available().NewHandle();
    Slab* got = nullptr;
    ASSERT_TRUE(h.Pop(&got));
    ASSERT_EQ(got, s);
    a.Free(objs.back());  // kBecameFull; the revoke fails: nothing happens
    EXPECT_EQ(cls.pages_in_use(), 2u);
    ASSERT_TRUE(h.Push(s));  // the late listing push
    // A wholly free listed slab is popped and fully usable.
    SlabAllocator b(&cls);
    std::vector<void*> again = AllocN(b, cls.metadata().n_objects);
    EXPECT_EQ(b.SlabOf(again[0]), s);
    std::set<void*> distinct(again.begin(), again.end());
    EXPECT_EQ(distinct.size(), again.size());
    for (void* p : again) b.Free(p);
    b.Release();  // page back
    EXPECT_EQ(cls.pages_in_use(), 1u);  // a's current slab
    // Once more, and leave it listed for the class destructor.
    SlabAllocator c(&cls);
    std::vector<void*> third = AllocN(c, cls.metadata().n_objects);
    Slab* t = c.SlabOf(third[0]);
    void* c_extra = c.Alloc();  // t floats
    for (std::size_t i = 0; i + 1 < third.size(); ++i) c.Free(third[i]);
    ASSERT_TRUE(h.Pop(&got));
    ASSERT_EQ(got, t);
    c.Free(third.back());
    ASSERT_TRUE(h.Push(t));
    a.Free(a_extra);
    c.Free(c_extra);
    a.Release();
    c.Release();
    EXPECT_EQ(cls.pages_in_use(), 1u);  // t, wholly free in the bag
    dirty_before_destroy = pa.GetStats().dirty_pages;
  }  // ~SlabClass drains the bag and returns t's page
  EXPECT_EQ(pa.GetStats().dirty_pages, dirty_before_destroy + 1);
}

// The free that completes a listed slab (kBecameFull) is preempted before it
// revokes. Meanwhile another thread pops the listing, takes objects from the
// wholly free slab and lets go of it, which lists it again. The late revoke
// then found that second listing and gave back the page of a slab with live
// objects, and the next slab taken from the page allocator handed them out
// again ("handed out overlapping blocks" in threadtest, about one run in 200
// with 2 KiB blocks on 2..4 threads).
TEST(SlabAllocatorTest, LateCompletingFreeNeverReturnsALaterPeriodsSlab) {
  Env e(256);
  SlabAllocator a(&e.cls);
  std::vector<void*> objs = AllocN(a, e.n());
  Slab* s = a.SlabOf(objs[0]);
  void* a_extra = a.Alloc();  // s floats
  for (std::size_t i = 0; i + 1 < objs.size(); ++i) a.Free(objs[i]);
  const FreeResult r = s->Free(objs.back());  // the freer is preempted here
  ASSERT_EQ(r, FreeResult::kBecameFull);
  SlabAllocator b(&e.cls);
  std::vector<void*> live = AllocN(b, 9);
  b.Release();
  SlabAllocatorTestPeer::OnFree(a, s, r);  // the freer runs again
  const std::set<void*> live_set(live.begin(), live.end());
  SlabAllocator c(&e.cls);
  std::vector<void*> more = AllocN(c, 2 * e.n());
  for (void* p : more) EXPECT_EQ(live_set.count(p), 0u) << p;
  for (void* p : more) c.Free(p);
  for (void* p : live) c.Free(p);
  a.Free(a_extra);
  a.Release();
  c.Release();
  EXPECT_LE(e.cls.pages_in_use(), 1u);
}

// Threads allocate, write their id into each object, and hand objects to
// the other threads, which check the contents and free them remotely.
TEST(SlabAllocatorTest, ConcurrentRemoteFreesKeepObjectsExclusive) {
  Env e(64);
  constexpr int kThreads = 4;
  const int rounds = 20000 * Scale();
  std::mutex mu;
  std::vector<std::vector<std::uint64_t*>> mail(kThreads);
  std::atomic<bool> failed{false};
  auto worker = [&](int id) {
    SlabAllocator a(&e.cls);
    std::vector<std::uint64_t*> mine;
    for (int r = 0; r < rounds; ++r) {
      auto* p = static_cast<std::uint64_t*>(a.Alloc());
      if (p == nullptr) {
        failed = true;
        break;
      }
      for (int w = 0; w < 8; ++w) p[w] = static_cast<std::uint64_t>(id);
      mine.push_back(p);
      if (mine.size() == 64) {
        std::vector<std::uint64_t*> in;
        {
          std::lock_guard<std::mutex> l(mu);
          auto& box = mail[(id + 1) % kThreads];
          box.insert(box.end(), mine.begin(), mine.end());
          in.swap(mail[id]);
        }
        mine.clear();
        for (std::uint64_t* q : in) {
          const std::uint64_t owner = q[0];
          for (int w = 0; w < 8; ++w) {
            if (q[w] != owner) failed = true;
          }
          a.Free(q);
        }
      }
    }
    for (std::uint64_t* q : mine) a.Free(q);
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  SlabAllocator a(&e.cls);
  for (auto& box : mail) {
    for (std::uint64_t* q : box) a.Free(q);
  }
  a.Release();
  EXPECT_FALSE(failed.load());
  // Every object is free: every slab went back, except wholly free slabs
  // left in the bag by a lost push/revoke race (drained by ~SlabClass).
  auto h = e.cls.available().NewHandle();
  auto pages = e.pa.NewHandle();
  std::size_t listed = 0;
  Slab* s = nullptr;
  while (h.Pop(&s)) {
    EXPECT_EQ(s->AvailableCount(), static_cast<std::int64_t>(e.n()));
    ++listed;
    pages.Free(s);
  }
  EXPECT_EQ(e.cls.pages_in_use(), listed);
}

// A bag in an arena's block is built by the class's first user, not by the
// class: the block stays as it was (untouched fresh pages, in the general
// allocator) until then.
TEST(SlabAllocatorTest, BagInGivenStorageIsBuiltOnFirstUse) {
  PageAlloc pa(Pages(32 * K));
  SlabClass::Options o = Class(256);
  o.available_queues = 4;
  TestBagArena storage(o.available_queues, 1);
  o.bag_arena = &storage.arena;
  SlabClass cls(&pa, o);
  ASSERT_TRUE(cls.valid());
  EXPECT_TRUE(storage.Zero(0));
  {
    SlabAllocator a(&cls);
    EXPECT_FALSE(storage.Zero(0));
    void* p = a.Alloc();
    ASSERT_NE(p, nullptr);
    a.Free(p);
  }
  EXPECT_TRUE(cls.available().valid());
}

// Classes that take their bags from one arena take its blocks in the
// order they are first used, not in the order they were built: the bags of
// the classes a program uses share pages, whichever classes those are.
TEST(SlabAllocatorTest, BagsFromAnArenaAreTakenInOrderOfFirstUse) {
  PageAlloc pa(Pages(32 * K));
  constexpr std::size_t kQueues = 4;
  constexpr std::size_t kBlocks = 4;
  TestBagArena storage(kQueues, kBlocks);
  BagArena& arena = storage.arena;
  SlabClass::Options small = Class(64);
  SlabClass::Options big = Class(256);
  small.available_queues = big.available_queues = kQueues;
  small.bag_arena = big.bag_arena = &arena;
  SlabClass first_built(&pa, small);
  SlabClass second_built(&pa, big);
  ASSERT_TRUE(first_built.valid());
  ASSERT_TRUE(second_built.valid());
  const auto zero = [&](std::size_t block) { return storage.Zero(block); };
  for (std::size_t i = 0; i < kBlocks; ++i) EXPECT_TRUE(zero(i)) << i;
  {
    SlabAllocator a(&second_built);  // used first: takes block 0
    EXPECT_FALSE(zero(0));
    EXPECT_TRUE(zero(1));
    SlabAllocator b(&first_built);  // block 1
    EXPECT_FALSE(zero(1));
    EXPECT_TRUE(zero(2));
    void* p = a.Alloc();
    void* q = b.Alloc();
    ASSERT_NE(p, nullptr);
    ASSERT_NE(q, nullptr);
    a.Free(p);
    b.Free(q);
  }
  // A class's second user finds the bag built: no block more is taken.
  SlabAllocator again(&second_built);
  EXPECT_TRUE(zero(2));
  EXPECT_EQ(arena.Take(), storage.base + 2 * storage.bytes);
}

// Threads that create the first allocators of a class at once all get
// the one bag: a slab one lists is found by the others.
TEST(SlabAllocatorTest, FirstUsersRacingForTheBagShareOne) {
  for (int round = 0; round < 20 * Scale(); ++round) {
    PageAlloc pa(Pages(32 * K));
    SlabClass::Options o = Class(256);
    o.available_queues = 4;
    TestBagArena storage(o.available_queues, 1);
    o.bag_arena = &storage.arena;
    SlabClass cls(&pa, o);
    ASSERT_TRUE(cls.valid());
    constexpr int kThreads = 4;
    std::atomic<int> ready{0};
    std::vector<SlabAllocator> allocators(kThreads);
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; ++i) {
      ts.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) {
        }
        allocators[i] = SlabAllocator(&cls);
      });
    }
    for (auto& t : ts) t.join();
    // One allocator leaves a slab above the cutoff listed; another pops
    // it from the same bag.
    const std::size_t n = cls.metadata().n_objects;
    std::vector<void*> v = AllocN(allocators[0], n);
    Slab* s = allocators[0].SlabOf(v[0]);
    for (std::size_t i = 0; i < cls.metadata().cutoff_objects; ++i) {
      allocators[0].Free(v[i]);
    }
    allocators[0].Release();
    void* p = allocators[kThreads - 1].Alloc();
    EXPECT_EQ(allocators[kThreads - 1].SlabOf(p), s);
    allocators[kThreads - 1].Free(p);
    for (std::size_t i = cls.metadata().cutoff_objects; i < n; ++i) {
      allocators[1].Free(v[i]);
    }
    allocators.clear();
  }
}

}  // namespace
}  // namespace elfmalloc
