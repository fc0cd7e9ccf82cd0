// Tests for slab.h: layout and stamp, claim/unclaim, the owner's iterator,
// every free transition single-threaded (including the two reference QUIRKs,
// fixed), the bit-then-count ordering of Free, double frees, and
// multi-threaded remote frees with and without a concurrently iterating owner.
#include "elfmalloc/slab.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "bagpipe/bag.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/size_classes.h"
#include "elfmalloc/slab_metadata.h"
#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace internal {

// Splits Free into its two steps so tests can interleave them.
class SlabTestPeer {
 public:
  // The first step of Free (whatever it is), then the rest.
  static Slab::PendingFree FreeBegin(Slab* s, void* p) {
    return s->FreeBegin(p);
  }
  static FreeResult FreeEnd(Slab* s, Slab::PendingFree f) {
    return s->FreeEnd(f);
  }
  static std::uint64_t Word(Slab* s, std::size_t w) {
    return s->Bitset()[w].load();
  }
};

}  // namespace internal

namespace {

using internal::SlabTestPeer;

static_assert(bagpipe::Revocable<Slab>);

constexpr std::size_t K = 1024;

// A page of `size` bytes aligned to its size, from mmap_alloc.
class Page {
 public:
  explicit Page(std::size_t size) : size_(size) {
    mmap_alloc::MapOptions o;
    o.align = size;
    p_ = mmap_alloc::Map(size, o);
  }
  ~Page() { mmap_alloc::Unmap(p_, size_); }
  void* get() const { return p_; }

 private:
  std::size_t size_;
  void* p_;
};

struct Fixture {
  explicit Fixture(std::size_t object_size, double cutoff = 0.6,
                   std::size_t page_size = 0)
      : meta(ComputeMetadata(
            object_size,
            page_size ? page_size : ClassPageSize(SizeToClass(object_size)),
            cutoff,
            page_size ? page_size : ClassPageSize(SizeToClass(object_size)))),
        page(meta.page_size),
        slab(Slab::Init(page.get(), &meta,
                        meta.page_size == kMediumPageSize
                            ? AllocType::kMediumSlab
                            : AllocType::kSmallSlab)) {}

  // Claims the slab, takes every object (in iteration order), unclaims it:
  // the slab is then FLOATING with every object "live".
  std::vector<void*> TakeAllAndRelease() {
    EXPECT_TRUE(slab->Claim());
    std::vector<void*> objs = TakeAll();
    const Slab::UnclaimResult r = slab->Unclaim();
    EXPECT_TRUE(r.was_claimed);
    EXPECT_EQ(r.count, 0);
    return objs;
  }
  std::vector<void*> TakeAll() {
    std::vector<void*> objs;
    Slab::LocalIter it = slab->Iterate();
    for (void* p = it.Next(); p != nullptr; p = it.Next()) objs.push_back(p);
    return objs;
  }

  SlabMetadata meta;
  Page page;
  Slab* slab;
};

TEST(SlabTest, InitLayoutAndStamp) {
  Fixture f(64 * K);  // medium: 2 MiB page on a 2 MiB boundary
  ASSERT_TRUE(f.meta.valid());
  EXPECT_EQ(static_cast<void*>(f.slab), f.page.get());
  // The stamp is the first word of the page.
  std::uint64_t first_word;
  std::memcpy(&first_word, f.page.get(), sizeof(first_word));
  EXPECT_EQ(first_word, static_cast<std::uint64_t>(AllocType::kMediumSlab));
  EXPECT_EQ(f.slab->type(), AllocType::kMediumSlab);
  EXPECT_EQ(f.slab->metadata(), &f.meta);
  EXPECT_EQ(f.slab->AvailableCount(), 31);
  EXPECT_FALSE(f.slab->IsClaimed());
  EXPECT_EQ(f.slab->handle().load(), 0u);
  for (std::size_t i = 0; i < f.meta.n_objects; ++i) {
    void* p = f.slab->ObjectAt(i);
    EXPECT_EQ(ReadAllocType(p), AllocType::kMediumSlab);
    EXPECT_EQ(Slab::Find(p, f.meta.page_size), f.slab);
    EXPECT_EQ(Slab::Find(static_cast<char*>(p) + f.meta.object_size - 1,
                         f.meta.page_size),
              f.slab);
  }
}

// Re-initialising the first small slab of a 2 MiB group (its page going to
// another class) must never make the group's stamp read as anything but the
// slab stamp: other threads classify pointers into the sibling slabs through
// it at the same time. Slab::Init used to placement-new the header, which
// zeroed the stamp before storing it (TSan reports the race; without TSan the
// reader may see kUnstamped).
TEST(SlabTest, ReinitialisingAGroupsFirstSlabKeepsItsStamp) {
  Page group(kStampAlignment);
  ASSERT_NE(group.get(), nullptr);
  const SlabMetadata m1 = ComputeMetadata(64, kSmallPageSize, 0.6, kSmallPageSize);
  const SlabMetadata m2 = ComputeMetadata(512, kSmallPageSize, 0.6, kSmallPageSize);
  Slab::Init(group.get(), &m1, AllocType::kSmallSlab);
  const char* sibling = static_cast<char*>(group.get()) + kSmallPageSize + 64;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      if (ReadAllocType(sibling) != AllocType::kSmallSlab) {
        bad.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  for (int i = 0; i < 20000; ++i) {
    Slab::Init(group.get(), (i & 1) ? &m1 : &m2, AllocType::kSmallSlab);
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0);
}

// Tags (slab.h): each small slab of a 2 MiB group owns one byte of the
// leader's tag table; a 2 MiB slab owns all of them. Re-initialising one slab
// (the leader included) never changes a sibling's tag, even while another
// thread reads it, and untagged Inits write nothing.
TEST(SlabTest, TagsLiveInTheLeaderAndBelongToEachSlab) {
  Page group(kStampAlignment);
  ASSERT_NE(group.get(), nullptr);
  char* base = static_cast<char*>(group.get());
  const SlabMetadata small = ComputeMetadata(64, kSmallPageSize, 0.6, kSmallPageSize);
  constexpr std::size_t kSlabs = kStampAlignment / kSmallPageSize;
  for (std::size_t k = 0; k < kSlabs; ++k) {
    const std::size_t i = (k * 7 + 3) % kSlabs;  // every slab, shuffled
    Slab::Init(base + i * kSmallPageSize, &small, AllocType::kSmallSlab,
               static_cast<std::uint8_t>(10 + i));
  }
  for (std::size_t i = 0; i < kSlabs; ++i) {
    Slab* s = Slab::Find(base + i * kSmallPageSize, kSmallPageSize);
    // The first and the last object of each slab.
    EXPECT_EQ(Slab::TagOf(s->ObjectAt(0)), 10 + i) << i;
    EXPECT_EQ(Slab::TagOf(s->ObjectAt(small.n_objects - 1)), 10 + i) << i;
  }
  // Untagged: nothing changes.
  Slab::Init(base + 2 * kSmallPageSize, &small, AllocType::kSmallSlab);
  EXPECT_EQ(Slab::TagOf(base + 2 * kSmallPageSize + 4096), 12);

  // The leader re-initialised over and over with other tags while a reader
  // checks its sibling's tag.
  const char* sibling = base + 5 * kSmallPageSize + 4096;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      if (Slab::TagOf(sibling) != 15) bad.fetch_add(1, std::memory_order_relaxed);
    }
  });
  for (int i = 0; i < 20000; ++i) {
    Slab::Init(base, &small, AllocType::kSmallSlab,
               static_cast<std::uint8_t>(1 + (i & 1)));
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(Slab::TagOf(base + 4096), 2);

  // A 256 KiB slab writes the four bytes it covers, no others.
  constexpr std::size_t kPage256 = 256 * K;
  const SlabMetadata mid = ComputeMetadata(2 * K, kPage256, 0.6, kPage256);
  Slab* d = Slab::Init(base + kPage256, &mid, AllocType::kSmallSlab, 77);
  for (std::size_t i = 0; i < mid.n_objects; ++i) {
    EXPECT_EQ(Slab::TagOf(d->ObjectAt(i)), 77) << i;
  }
  EXPECT_EQ(Slab::TagOf(base + kPage256 - 64), 10 + 3);
  EXPECT_EQ(Slab::TagOf(base + 2 * kPage256 + 64), 10 + 8);

  // A 2 MiB slab writes the whole table.
  const SlabMetadata medium =
      ComputeMetadata(64 * K, kMediumPageSize, 0.6, kMediumPageSize);
  Slab* m = Slab::Init(base, &medium, AllocType::kMediumSlab, 42);
  for (std::size_t i = 0; i < medium.n_objects; ++i) {
    EXPECT_EQ(Slab::TagOf(m->ObjectAt(i)), 42) << i;
  }
}

// NextBatch hands out exactly what the same number of Next() calls would,
// across word boundaries and with partial words left for Next().
TEST(SlabTest, NextBatchMatchesNext) {
  for (std::size_t size : {std::size_t{16}, std::size_t{48}, std::size_t{1000}}) {
    SCOPED_TRACE(size);
    Fixture a(size), b(size);
    ASSERT_TRUE(a.slab->Claim());
    ASSERT_TRUE(b.slab->Claim());
    const std::vector<void*> all = a.TakeAll();
    Slab::LocalIter it = b.slab->Iterate();
    std::vector<void*> got;
    const char* base_a = reinterpret_cast<const char*>(a.slab);
    for (std::size_t n = 1; got.size() < all.size(); n = n * 3 % 97 + 1) {
      void* buf[100];
      const std::size_t k = it.NextBatch(buf, n);
      ASSERT_TRUE(k == n || got.size() + k == all.size());
      for (std::size_t i = 0; i < k; ++i) got.push_back(buf[i]);
      if (void* p = it.Next()) got.push_back(p);
    }
    ASSERT_EQ(got.size(), all.size());
    for (std::size_t i = 0; i < all.size(); ++i) {
      // Same offsets in the two slabs.
      ASSERT_EQ(static_cast<const char*>(got[i]) -
                    reinterpret_cast<const char*>(b.slab),
                static_cast<const char*>(all[i]) - base_a) << i;
    }
    void* buf[4];
    EXPECT_EQ(it.NextBatch(buf, 4), 0u);
    EXPECT_EQ(b.slab->AvailableCount(), 0);
  }
}

// Low-first batches (slabs of kLowFirstMinPage bytes or more): an object
// freed behind the batches, by another thread or from the owner's cache, is
// handed out again before any object the slab never handed out, and a batch
// takes only the objects it returns. The sequential iterator took a word
// whole and walked on (objects 4 and 5 below), so every claimed slab of a
// big class became wholly resident.
TEST(SlabTest, LowFirstBatchesReuseFreedObjectsBeforeFreshOnes) {
  for (std::size_t size : {std::size_t{16}, std::size_t{256},
                           std::size_t{1000}, 16 * K, 64 * K}) {
    SCOPED_TRACE(size);
    Fixture f(size);
    ASSERT_GE(f.meta.page_size, kLowFirstMinPage);
    ASSERT_GE(f.meta.n_objects, 8u);
    const std::int64_t n = static_cast<std::int64_t>(f.meta.n_objects);
    ASSERT_TRUE(f.slab->Claim());
    Slab::LocalIter it = f.slab->Iterate();
    void* buf[4];
    ASSERT_EQ(it.NextBatch(buf, 4), 4u);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(buf[i], f.slab->ObjectAt(i));
    // Only the four objects left the slab, not their whole bit-set word.
    EXPECT_EQ(f.slab->AvailableCount(), n - 4);
    EXPECT_EQ(it.TakeRemaining().mask, 0u);
    EXPECT_EQ(f.slab->Free(f.slab->ObjectAt(1)), FreeResult::kNone);
    EXPECT_EQ(f.slab->Free(f.slab->ObjectAt(3)), FreeResult::kNone);
    ASSERT_EQ(it.NextBatch(buf, 3), 3u);
    EXPECT_EQ(buf[0], f.slab->ObjectAt(1));
    EXPECT_EQ(buf[1], f.slab->ObjectAt(3));
    EXPECT_EQ(buf[2], f.slab->ObjectAt(4));
    EXPECT_EQ(f.slab->AvailableCount(), n - 5);
    // Filled downwards (the magazines' refills): out[-1] is the lowest.
    EXPECT_EQ(f.slab->Free(f.slab->ObjectAt(0)), FreeResult::kNone);
    ASSERT_EQ(it.NextBatch<true>(buf + 2, 2), 2u);
    EXPECT_EQ(buf[1], f.slab->ObjectAt(0));
    EXPECT_EQ(buf[0], f.slab->ObjectAt(5));
    // The rest of the slab, then the end.
    std::size_t taken = 6;
    for (std::size_t k; (k = it.NextBatch(buf, 4)) != 0;) {
      for (std::size_t i = 0; i < k; ++i) {
        ASSERT_EQ(buf[i], f.slab->ObjectAt(taken + i));
      }
      taken += k;
    }
    EXPECT_EQ(taken, f.meta.n_objects);
    EXPECT_EQ(f.slab->AvailableCount(), 0);
    for (std::size_t w = 0; w < f.meta.bitset_words; ++w) {
      EXPECT_EQ(SlabTestPeer::Word(f.slab, w), 0u);
    }
    EXPECT_EQ(f.slab->Unclaim().count, 0);
  }
}

// In a low-first slab Next() takes one object, the lowest available, as a
// batch of one does; it once took its whole bit-set word into the iterator
// (see SlabAllocatorTest.RefillsAfterAFlushReuseTheFlushedObjectsFirst).
TEST(SlabTest, LowFirstNextTakesOnlyTheLowestObject) {
  for (std::size_t size : {std::size_t{16}, std::size_t{4096}, 16 * K}) {
    SCOPED_TRACE(size);
    Fixture f(size);
    ASSERT_GE(f.meta.page_size, kLowFirstMinPage);
    const std::int64_t n = static_cast<std::int64_t>(f.meta.n_objects);
    ASSERT_TRUE(f.slab->Claim());
    Slab::LocalIter it = f.slab->Iterate();
    EXPECT_EQ(it.Next(), f.slab->ObjectAt(0));
    EXPECT_EQ(it.Next(), f.slab->ObjectAt(1));
    EXPECT_EQ(f.slab->AvailableCount(), n - 2);
    EXPECT_EQ(it.TakeRemaining().mask, 0u);
    EXPECT_EQ(f.slab->Free(f.slab->ObjectAt(0)), FreeResult::kNone);
    EXPECT_EQ(it.Next(), f.slab->ObjectAt(0));
    EXPECT_EQ(it.Next(), f.slab->ObjectAt(2));
    std::size_t taken = 3;
    while (void* p = it.Next()) {
      ASSERT_EQ(p, f.slab->ObjectAt(taken));
      ++taken;
    }
    EXPECT_EQ(taken, f.meta.n_objects);
    EXPECT_EQ(f.slab->AvailableCount(), 0);
    EXPECT_EQ(f.slab->Unclaim().count, 0);
  }
}

// Slabs below kLowFirstMinPage (none of the general allocator's; the
// object allocators' may be) keep the sequential iterator: a batch takes
// whole words.
TEST(SlabTest, SmallSlabBatchesTakeWholeWords) {
  Fixture f(64, 0.6, 32 * K);
  ASSERT_LT(f.meta.page_size, kLowFirstMinPage);
  ASSERT_TRUE(f.slab->Claim());
  Slab::LocalIter it = f.slab->Iterate();
  void* buf[4];
  ASSERT_EQ(it.NextBatch(buf, 4), 4u);
  EXPECT_EQ(f.slab->AvailableCount(),
            static_cast<std::int64_t>(f.meta.n_objects) - 64);
  EXPECT_EQ(f.slab->Free(f.slab->ObjectAt(1)), FreeResult::kNone);
  ASSERT_EQ(it.NextBatch(buf, 1), 1u);
  EXPECT_EQ(buf[0], f.slab->ObjectAt(4));
}

TEST(SlabTest, ClaimUnclaim) {
  Fixture f(128);
  const auto n = static_cast<std::int64_t>(f.meta.n_objects);
  EXPECT_TRUE(f.slab->Claim());
  EXPECT_TRUE(f.slab->IsClaimed());
  EXPECT_FALSE(f.slab->Claim());
  EXPECT_EQ(f.slab->AvailableCount(), n);  // the claimed bit is not counted
  Slab::UnclaimResult r = f.slab->Unclaim();
  EXPECT_TRUE(r.was_claimed);
  EXPECT_EQ(r.count, n);
  r = f.slab->Unclaim();
  EXPECT_FALSE(r.was_claimed);
  EXPECT_EQ(r.count, n);
}

// slab.h, "The completing free": the claim of a wholly free AVAILABLE slab
// and the completing free's done step, in both orders.
TEST(SlabTest, ClaimAndCompletingFreeDoneDecideWhoHasTheSlab) {
  Fixture f(128);
  const auto n = static_cast<std::int64_t>(f.meta.n_objects);
  // Make the slab AVAILABLE with one object live, then complete it.
  auto complete = [&] {
    ASSERT_TRUE(f.slab->Claim());
    std::vector<void*> objs = f.TakeAll();
    ASSERT_EQ(f.slab->Unclaim().count, 0);
    for (std::size_t i = 0; i + 1 < objs.size(); ++i) f.slab->Free(objs[i]);
    ASSERT_EQ(f.slab->Free(objs.back()), FreeResult::kBecameFull);
  };
  // The claim first: the claimer leaves the slab, the done step takes it.
  complete();
  EXPECT_EQ(f.slab->ClaimAvailable(), Slab::ClaimResult::kCompleting);
  EXPECT_TRUE(f.slab->CompletingFreeDone());
  f.slab->Adopt();  // the page's next life
  EXPECT_TRUE(f.slab->IsClaimed());
  EXPECT_EQ(f.slab->Unclaim().count, n);
  // The done step first: the freer leaves the slab, the claimer owns it.
  complete();
  EXPECT_FALSE(f.slab->CompletingFreeDone());
  EXPECT_EQ(f.slab->ClaimAvailable(), Slab::ClaimResult::kClaimed);
  EXPECT_EQ(f.slab->ClaimAvailable(), Slab::ClaimResult::kWasClaimed);
  // Unclaim ends the period and its done bit: the next completing free of a
  // slab that was claimed below n is met by a claimer as still acting.
  std::vector<void*> objs = f.TakeAll();
  ASSERT_EQ(f.slab->Unclaim().count, 0);
  for (void* p : objs) f.slab->Free(p);
  EXPECT_EQ(f.slab->ClaimAvailable(), Slab::ClaimResult::kCompleting);
  // Below n, a claim always owns the slab.
  ASSERT_TRUE(f.slab->CompletingFreeDone());
  f.slab->Adopt();
  objs = f.TakeAll();
  ASSERT_EQ(f.slab->Unclaim().count, 0);
  for (std::size_t i = 1; i < objs.size(); ++i) f.slab->Free(objs[i]);
  EXPECT_EQ(f.slab->ClaimAvailable(), Slab::ClaimResult::kClaimed);
  EXPECT_EQ(f.slab->AvailableCount(), n - 1);
  f.slab->Free(objs[0]);
  EXPECT_EQ(f.slab->Unclaim().count, n);
}

TEST(SlabTest, IteratorYieldsEveryObjectOnceInOrder) {
  for (std::size_t size : {std::size_t{8}, std::size_t{48}, std::size_t{192}, std::size_t{1000}, 8 * K, 512 * K}) {
    SCOPED_TRACE(size);
    Fixture f(size);
    ASSERT_TRUE(f.slab->Claim());
    std::vector<void*> objs = f.TakeAll();
    ASSERT_EQ(objs.size(), f.meta.n_objects);
    for (std::size_t i = 0; i < objs.size(); ++i) {
      ASSERT_EQ(objs[i], f.slab->ObjectAt(i));
      ASSERT_EQ(reinterpret_cast<std::uintptr_t>(objs[i]) %
                    f.meta.object_alignment,
                0u);
    }
    // Last object ends inside the page.
    EXPECT_LE(static_cast<char*>(objs.back()) + f.meta.object_size,
              static_cast<char*>(f.page.get()) + f.meta.page_size);
    EXPECT_EQ(f.slab->AvailableCount(), 0);
    for (std::size_t w = 0; w < f.meta.bitset_words; ++w) {
      EXPECT_EQ(SlabTestPeer::Word(f.slab, w), 0u);
    }
    EXPECT_EQ(f.TakeAll().size(), 0u);  // a fresh iterator finds nothing
    // Objects are writable end to end (nothing overlaps the header/bit-set:
    // ASan/valgrind-free check by content).
    for (void* p : objs) std::memset(p, 0xAB, f.meta.object_size);
    for (std::size_t w = 0; w < f.meta.bitset_words; ++w) {
      EXPECT_EQ(SlabTestPeer::Word(f.slab, w), 0u);
    }
    EXPECT_TRUE(f.slab->IsClaimed());
  }
}

// LocalIter::TakeRemaining (added for SlabAllocator::Release): the objects
// of the current word that were taken but not handed out, which BulkFree
// gives back so that the count is complete again. Only the sequential
// iterator (slabs below kLowFirstMinPage) takes words whole.
TEST(SlabTest, TakeRemainingReturnsTheCurrentWordsUnusedObjects) {
  Fixture f(64, 0.6, 32 * K);  // 64 objects per bit-set word
  ASSERT_LT(f.meta.page_size, kLowFirstMinPage);
  ASSERT_TRUE(f.slab->Claim());
  Slab::LocalIter it = f.slab->Iterate();
  EXPECT_EQ(it.TakeRemaining().mask, 0u);  // nothing taken yet
  void* first = it.Next();
  ASSERT_EQ(first, f.slab->ObjectAt(0));
  const std::int64_t n = static_cast<std::int64_t>(f.meta.n_objects);
  EXPECT_EQ(f.slab->AvailableCount(), n - 64);  // the whole word was taken
  const Slab::LocalIter::Remaining r = it.TakeRemaining();
  EXPECT_EQ(r.word, 0u);
  EXPECT_EQ(r.mask, f.meta.InitialWord(0) & ~std::uint64_t{1});
  EXPECT_EQ(it.TakeRemaining().mask, 0u);  // cleared
  EXPECT_EQ(it.Next(), f.slab->ObjectAt(64));  // moves on to word 1
  const Slab::LocalIter::Remaining r1 = it.TakeRemaining();
  EXPECT_EQ(r1.word, 1u);
  EXPECT_EQ(f.slab->BulkFree(r.mask, r.word), FreeResult::kNone);
  EXPECT_EQ(f.slab->BulkFree(r1.mask, r1.word), FreeResult::kNone);
  EXPECT_EQ(f.slab->Free(first), FreeResult::kNone);
  EXPECT_EQ(f.slab->Free(f.slab->ObjectAt(64)), FreeResult::kNone);
  EXPECT_EQ(f.slab->Unclaim().count, n);
}

TEST(SlabTest, FloatingToAvailableToFull) {
  Fixture f(64, 0.6, 256 * K);  // the reference's appendix layout
  const std::size_t n = f.meta.n_objects, cutoff = f.meta.cutoff_objects;
  ASSERT_EQ(n, 4087u);
  ASSERT_EQ(cutoff, 2452u);
  std::vector<void*> objs = f.TakeAllAndRelease();
  ASSERT_EQ(objs.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    const FreeResult r = f.slab->Free(objs[i]);
    if (i + 1 == cutoff) {
      ASSERT_EQ(r, FreeResult::kBecameAvailable) << i;
    } else if (i + 1 == n) {
      ASSERT_EQ(r, FreeResult::kBecameFull) << i;
    } else {
      ASSERT_EQ(r, FreeResult::kNone) << i;
    }
  }
  EXPECT_EQ(f.slab->AvailableCount(), static_cast<std::int64_t>(n));
  for (std::size_t w = 0; w < f.meta.bitset_words; ++w) {
    EXPECT_EQ(SlabTestPeer::Word(f.slab, w), f.meta.InitialWord(w));
  }
}

TEST(SlabTest, ClaimedSlabNeverTransitions) {
  Fixture f(64);
  ASSERT_TRUE(f.slab->Claim());
  std::vector<void*> objs = f.TakeAll();
  for (void* p : objs) ASSERT_EQ(f.slab->Free(p), FreeResult::kNone);
  const Slab::UnclaimResult r = f.slab->Unclaim();
  EXPECT_TRUE(r.was_claimed);
  EXPECT_EQ(r.count, static_cast<std::int64_t>(f.meta.n_objects));
  // Re-claim and take them again: the iterator sees frees made while claimed.
  ASSERT_TRUE(f.slab->Claim());
  EXPECT_EQ(f.TakeAll().size(), f.meta.n_objects);
}

TEST(SlabTest, UnclaimBelowCutoffThenFreesCrossIt) {
  Fixture f(1 * K);  // n 255, cutoff 153
  const std::size_t n = f.meta.n_objects, cutoff = f.meta.cutoff_objects;
  ASSERT_TRUE(f.slab->Claim());
  std::vector<void*> objs = f.TakeAll();
  for (std::size_t i = 0; i < 10; ++i) f.slab->Free(objs[i]);  // while claimed
  EXPECT_EQ(f.slab->Unclaim().count, 10);
  for (std::size_t i = 10; i < n; ++i) {
    const FreeResult r = f.slab->Free(objs[i]);
    const FreeResult want = i + 1 == cutoff ? FreeResult::kBecameAvailable
                            : i + 1 == n    ? FreeResult::kBecameFull
                                            : FreeResult::kNone;
    ASSERT_EQ(r, want) << i;
  }
}

TEST(SlabTest, DoubleFreeIsDetectedAndChangesNothing) {
  Fixture f(256);
  std::vector<void*> objs = f.TakeAllAndRelease();
  EXPECT_EQ(f.slab->Free(objs[5]), FreeResult::kNone);
  EXPECT_EQ(f.slab->Free(objs[5]), FreeResult::kDoubleFree);
  EXPECT_EQ(f.slab->AvailableCount(), 1);
  const Slab::BitPosition pos = f.slab->PositionOf(objs[5]);
  EXPECT_EQ(f.slab->BulkFree(pos.mask, pos.word), FreeResult::kDoubleFree);
  EXPECT_EQ(f.slab->AvailableCount(), 1);
  // A bulk free counts only the bits that were not already set.
  const Slab::BitPosition p6 = f.slab->PositionOf(objs[6]);
  ASSERT_EQ(p6.word, pos.word);
  EXPECT_EQ(f.slab->BulkFree(pos.mask | p6.mask, pos.word), FreeResult::kNone);
  EXPECT_EQ(f.slab->AvailableCount(), 2);
}

// QUIRK (a) fixed: one-object slabs (cutoff == n == 1) become FULL when
// freed; the reference checked Available first and reported Available, so
// the page never went back.
TEST(SlabTest, OneObjectSlabBecomesFull) {
  Fixture f(1024 * K);
  ASSERT_EQ(f.meta.n_objects, 1u);
  ASSERT_EQ(f.meta.cutoff_objects, 1u);
  std::vector<void*> objs = f.TakeAllAndRelease();
  ASSERT_EQ(objs.size(), 1u);
  EXPECT_EQ(f.slab->Free(objs[0]), FreeResult::kBecameFullUnlisted);
}

// Same fix for any slab whose cutoff equals n.
TEST(SlabTest, CutoffEqualsNReportsFullNotAvailable) {
  Fixture f(4 * K, /*cutoff=*/1.0);
  const std::size_t n = f.meta.n_objects;
  ASSERT_EQ(f.meta.cutoff_objects, n);
  std::vector<void*> objs = f.TakeAllAndRelease();
  for (std::size_t i = 0; i + 1 < n; ++i) {
    ASSERT_EQ(f.slab->Free(objs[i]), FreeResult::kNone);
  }
  EXPECT_EQ(f.slab->Free(objs[n - 1]), FreeResult::kBecameFullUnlisted);
}

// QUIRK (b) fixed: a bulk free jumping from below the cutoff straight to n is
// FULL (never listed, so no revoke is needed); the reference attempted a
// revoke that could only fail, leaving the slab floating forever.
TEST(SlabTest, BulkFreeFromBelowCutoffToFull) {
  Fixture f(64 * K);  // 31 objects in word 0, cutoff 18
  ASSERT_EQ(f.meta.bitset_words, 1u);
  std::vector<void*> objs = f.TakeAllAndRelease();
  EXPECT_EQ(f.slab->Free(objs[0]), FreeResult::kNone);  // count 1 < cutoff
  EXPECT_EQ(f.slab->BulkFree(f.meta.InitialWord(0) & ~std::uint64_t{1}, 0),
            FreeResult::kBecameFullUnlisted);
  EXPECT_EQ(f.slab->AvailableCount(), 31);
}

TEST(SlabTest, BulkFreeCrossingCutoffThenCompleting) {
  Fixture f(64 * K);
  std::vector<void*> objs = f.TakeAllAndRelease();
  std::uint64_t first20 = 0, rest = 0;
  for (std::size_t i = 0; i < objs.size(); ++i) {
    const Slab::BitPosition pos = f.slab->PositionOf(objs[i]);
    ASSERT_EQ(pos.word, 0u);
    (i < 20 ? first20 : rest) |= pos.mask;
  }
  EXPECT_EQ(f.slab->BulkFree(first20, 0), FreeResult::kBecameAvailable);
  EXPECT_EQ(f.slab->BulkFree(rest, 0), FreeResult::kBecameFull);
}

// Free sets the bit BEFORE counting it. Interleave the two steps of one free
// with complete frees of every other object: the free that reports FULL must
// find every bit already set (so recycling the page then is safe). With the
// reference's order (count first) the last complete free would report FULL
// while the interrupted free's bit was still clear, and its late fetch_or
// would land in the recycled page.
TEST(SlabTest, FullIsReportedOnlyAfterEveryBitIsSet) {
  Fixture f(512 * K);  // 3 objects, cutoff 1
  std::vector<void*> objs = f.TakeAllAndRelease();
  ASSERT_EQ(objs.size(), 3u);
  // Thread A is "preempted" between the two steps of freeing objs[0].
  const auto a = SlabTestPeer::FreeBegin(f.slab, objs[0]);
  const auto all_bits_set = [&] {
    return SlabTestPeer::Word(f.slab, 0) == f.meta.InitialWord(0);
  };
  FreeResult r1 = f.slab->Free(objs[1]);
  FreeResult r2 = f.slab->Free(objs[2]);
  EXPECT_EQ(r1, FreeResult::kBecameAvailable);
  EXPECT_NE(r2, FreeResult::kBecameFull);
  EXPECT_NE(r2, FreeResult::kBecameFullUnlisted);
  // A completes its free; only now may the slab be FULL.
  const FreeResult ra = SlabTestPeer::FreeEnd(f.slab, a);
  EXPECT_EQ(ra, FreeResult::kBecameFull);
  EXPECT_TRUE(all_bits_set());
}

// The owner may take an object whose free has set the bit but not yet
// counted it: the count dips below zero without disturbing the claimed bit,
// and returns to the truth once the increment lands.
TEST(SlabTest, TransientNegativeCountKeepsClaimedBit) {
  Fixture f(1 * K);
  ASSERT_TRUE(f.slab->Claim());
  std::vector<void*> objs = f.TakeAll();
  const auto a = SlabTestPeer::FreeBegin(f.slab, objs[0]);
  const auto b = SlabTestPeer::FreeBegin(f.slab, objs[1]);
  std::vector<void*> again = f.TakeAll();  // takes both before they count
  EXPECT_EQ(again.size(), 2u);
  EXPECT_EQ(f.slab->AvailableCount(), -2);
  EXPECT_TRUE(f.slab->IsClaimed());
  EXPECT_EQ(SlabTestPeer::FreeEnd(f.slab, a), FreeResult::kNone);
  EXPECT_EQ(SlabTestPeer::FreeEnd(f.slab, b), FreeResult::kNone);
  EXPECT_EQ(f.slab->AvailableCount(), 0);
  EXPECT_TRUE(f.slab->IsClaimed());
  const Slab::UnclaimResult r = f.slab->Unclaim();
  EXPECT_TRUE(r.was_claimed);
  EXPECT_EQ(r.count, 0);
}

int Rounds(int normal) {
  const char* s = std::getenv("ELFMALLOC_STRESS_SCALE");
  return s ? normal * std::atoi(s) : normal;
}

// Threads free disjoint objects of one FLOATING slab at once, checking each
// object's contents first: exactly one free reports kBecameAvailable and
// exactly one kBecameFull, and afterwards the bit-set is exactly the initial
// one.
TEST(SlabTest, ConcurrentRemoteFrees) {
  constexpr int kThreads = 4;
  for (std::size_t size : {std::size_t{16}, std::size_t{64}, 4 * K}) {
    SCOPED_TRACE(size);
    Fixture f(size);
    const std::size_t n = f.meta.n_objects;
    for (int round = 0; round < Rounds(5); ++round) {
      std::vector<void*> objs = f.TakeAllAndRelease();
      ASSERT_EQ(objs.size(), n);
      for (std::size_t i = 0; i < n; ++i) {
        std::memcpy(objs[i], &i, sizeof(i));
        std::memcpy(static_cast<char*>(objs[i]) + size - sizeof(i), &i,
                    sizeof(i));
      }
      std::atomic<int> available{0}, full{0}, other{0}, bad{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          for (std::size_t i = t; i < n; i += kThreads) {
            std::size_t a, b;
            std::memcpy(&a, objs[i], sizeof(a));
            std::memcpy(&b, static_cast<char*>(objs[i]) + size - sizeof(b),
                        sizeof(b));
            if (a != i || b != i) bad.fetch_add(1);
            std::memset(objs[i], 0x5A, size);
            switch (f.slab->Free(objs[i])) {
              case FreeResult::kNone: break;
              case FreeResult::kBecameAvailable: available.fetch_add(1); break;
              case FreeResult::kBecameFull: full.fetch_add(1); break;
              default: other.fetch_add(1); break;
            }
          }
        });
      }
      for (std::thread& th : threads) th.join();
      EXPECT_EQ(bad.load(), 0);
      EXPECT_EQ(available.load(), 1);
      EXPECT_EQ(full.load(), 1);
      EXPECT_EQ(other.load(), 0);
      EXPECT_EQ(f.slab->AvailableCount(), static_cast<std::int64_t>(n));
      for (std::size_t w = 0; w < f.meta.bitset_words; ++w) {
        ASSERT_EQ(SlabTestPeer::Word(f.slab, w), f.meta.InitialWord(w));
      }
    }
  }
}

// The owner keeps iterating (taking objects as they come back) while remote
// threads free what it hands them. Every object is handed out at most once at
// a time (checked by a per-object ownership flag), and when everything is
// returned the count and bit-set agree.
TEST(SlabTest, OwnerIteratesWhileRemoteThreadsFree) {
  Fixture f(64 * K);  // few objects: maximal reuse pressure
  const std::size_t n = f.meta.n_objects;
  constexpr int kFreers = 2;
  const int kHandOuts = Rounds(20000);
  std::vector<std::atomic<int>> live(n);
  std::vector<std::atomic<void*>> mailbox(8);
  for (auto& m : mailbox) m.store(nullptr);
  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> freers;
  for (int t = 0; t < kFreers; ++t) {
    freers.emplace_back([&, t] {
      for (;;) {
        // Read `done` before scanning, so a final scan follows the last put.
        const bool finished = done.load();
        bool got = false;
        for (std::size_t i = t; i < mailbox.size(); i += kFreers) {
          void* p = mailbox[i].exchange(nullptr);
          if (p == nullptr) continue;
          got = true;
          const std::size_t idx =
              (static_cast<char*>(p) - static_cast<char*>(f.slab->ObjectAt(0))) /
              f.meta.object_size;
          std::size_t stamp;
          std::memcpy(&stamp, p, sizeof(stamp));
          if (stamp != idx) errors.fetch_add(1);
          if (live[idx].exchange(0) != 1) errors.fetch_add(1);
          if (f.slab->Free(p) != FreeResult::kNone) errors.fetch_add(1);
        }
        if (!got && finished) return;
        if (!got) std::this_thread::yield();
      }
    });
  }
  ASSERT_TRUE(f.slab->Claim());
  int handed = 0;
  std::size_t slot = 0;
  while (handed < kHandOuts) {
    Slab::LocalIter it = f.slab->Iterate();
    while (handed < kHandOuts) {
      void* p = it.Next();
      if (p == nullptr) break;
      const std::size_t idx =
          (static_cast<char*>(p) - static_cast<char*>(f.slab->ObjectAt(0))) /
          f.meta.object_size;
      if (live[idx].exchange(1) != 0) errors.fetch_add(1);  // double hand-out
      std::memcpy(p, &idx, sizeof(idx));
      // Hand it to a freer; spin until a mailbox slot is empty.
      for (;;) {
        void* expected = nullptr;
        slot = (slot + 1) % mailbox.size();
        if (mailbox[slot].compare_exchange_strong(expected, p)) break;
        std::this_thread::yield();
      }
      ++handed;
    }
    // The objects the iterator took but did not hand out (none in a
    // low-first slab, whose Next() takes one object at a time): back to the
    // slab, so nothing leaks.
    const Slab::LocalIter::Remaining rest = it.TakeRemaining();
    if (rest.mask != 0 &&
        f.slab->BulkFree(rest.mask, rest.word) != FreeResult::kNone) {
      errors.fetch_add(1);
    }
  }
  done.store(true);
  for (std::thread& th : freers) th.join();
  EXPECT_EQ(errors.load(), 0);
  const Slab::UnclaimResult r = f.slab->Unclaim();
  EXPECT_TRUE(r.was_claimed);
  EXPECT_EQ(r.count, static_cast<std::int64_t>(n));
  EXPECT_EQ(SlabTestPeer::Word(f.slab, 0), f.meta.InitialWord(0));
}

}  // namespace
}  // namespace elfmalloc
