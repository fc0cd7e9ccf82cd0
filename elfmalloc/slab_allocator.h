// SlabAllocator: the per-thread, per-size-class back end (the reference's
// SlagAllocator, allocators-rs elfmalloc slag.rs), and SlabClass, the state
// one size class shares between all threads.
//
// SlabClass (shared, one per size class): the slab layout (SlabMetadata), the
// class's *available* bag (a revocable Bagpipe of slabs that have at least
// cutoff free objects and no owner) and the PageAlloc the class's pages come
// from and go back to. It is immutable after construction apart from the
// bag's contents and a statistics counter.
//
// SlabAllocator (one per thread per class; not thread-safe itself): the slab
// this thread currently owns (claimed) with its LocalIter (and the one it
// owned before, "The previous slab"), plus this thread's
// handles on the bag and the page allocator. It allocates by advancing the
// iterator and refreshes when the slab runs dry; it performs remote frees of
// any slab of its class and acts on the transitions they report.
//
// Every transition below is one of those defined by the slab state machine at
// the top of slab.h; this file is its *caller side*. Where each is coded, the
// comment says who may make it and why that is race-free. Summary:
//
//   owner Refresh    CLAIMED -> Unclaim; count >= cutoff -> claim again
//                    (only the owner can, since the slab is in no bag); else
//                    the slab floats. New slab: pop the available bag (the
//                    bag hands each listing to exactly one popper), else a
//                    page from the PageAlloc (exclusive to the caller). A
//                    claim that meets a completing free still at work leaves
//                    the slab to it (slab.h, "The completing free").
//   remote Free      kBecameAvailable -> push to the bag (exactly one free
//                    crosses the cutoff while unclaimed); kBecameFull ->
//                    Revoke, and a successful revoke returns the page
//                    (excludes the popper), as does a failed one whose done
//                    step finds that a claimer left the slab to it;
//                    kBecameFullUnlisted -> return the page (never listed,
//                    so nobody else can reach it).
//   owner Release    (destruction) give back the iterator's pending objects,
//                    Unclaim; count == n -> page back; count >= cutoff ->
//                    list it; else it floats and frees will list/return it.
//                    The same for the previous slab (below), which Refresh
//                    also releases when it keeps a newer one.
//
// The previous slab (SlabClass::Options::keep_previous_slab; the general
// allocator sets it for its classes of 64 KiB and 2 MiB pages). When the
// current slab runs dry with fewer than cutoff objects back, Refresh keeps
// it claimed as previous_ instead of letting it float, and every batch
// takes from it first, then from the current slab. The previous slab is
// wholly touched (it ran dry); the current one only as far as its lowest
// objects were handed out. So objects freed back into the older slab are
// reused before the newer one extends into fresh memory. A class whose
// live count goes up and down around a slab's worth used to exhaust the
// newer slab too (allocations went to it alone, frees to both), then the
// next: every slab it ever claimed became wholly resident. 100 blocks of
// 40,000 bytes live at most (a random walk of malloc and free): 6168 KiB
// resident, now 4028 (glibc 3840); a long-running server's mixed sizes
// (harness `server`) 4-5% lower; two producer-consumer pairs of 16-256 B
// blocks (whose producers' slabs run dry while the consumers free into
// them) 6.3 -> 5.9 MiB. Only the owner takes from or releases the previous
// slab; other threads' frees into it change its count, as into the
// current slab's, without listing it. Not for the general allocator's
// classes of 256 KiB pages (640 B - 14 KiB): there the gains were smaller
// than the cost where a thread that allocated the class went idle and
// others freed its blocks (Larson's benchmark, whose main thread allocates
// the first blocks: two slabs of each class pinned instead of one,
// 8.7 -> 9.5 MiB), and where threads exchange blocks (xthread_churn
// 23.4 -> 24.5 MiB: others' frees into a claimed previous slab wait for
// its owner).
//
// Memory: nothing here allocates except through bagpipe (bsalloc) and the
// PageAlloc (mmap_alloc). Nothing throws; running out of memory makes
// Alloc() return nullptr.
#ifndef ELFMALLOC_SLAB_ALLOCATOR_H_
#define ELFMALLOC_SLAB_ALLOCATOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/base/optimization.h"
#include "bagpipe/bagpipe.h"
#include "bagpipe/faa_queue.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_metadata.h"

namespace elfmalloc {

namespace internal {
class SlabAllocatorTestPeer;
}  // namespace internal

// Never eagerly uncommit.
inline constexpr std::size_t kNoEagerUncommit = ~std::size_t{0};

// Storage for the available bags of many classes, handed out in the order
// the classes first use their bags (SlabClass::Options::bag_arena): a bag
// of 4 queues takes under 1 KiB, and with a slot per class at the class's
// index, a program using a few classes spread over the size range touched
// a page for nearly every bag; taken in order of use, 4 bags share a page.
// `base` is `capacity` blocks of `bytes` bytes (a multiple of the cache
// line), aligned to a cache line, that outlive every class using it. A
// class takes one block, once (a fork child that builds a bag again reuses
// it); only a fork that lands between a Take and the class noting the
// block loses one, so an owner gives a spare block per class.
class BagArena {
 public:
  BagArena() noexcept = default;
  BagArena(const BagArena&) = delete;
  BagArena& operator=(const BagArena&) = delete;
  // Before the first Take.
  void Init(void* base, std::size_t bytes, std::size_t capacity) noexcept {
    base_ = static_cast<unsigned char*>(base);
    bytes_ = bytes;
    capacity_ = capacity;
  }
  // The next block, or nullptr when all are taken. Any thread.
  void* Take() noexcept {
    const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    return i < capacity_ ? base_ + i * bytes_ : nullptr;
  }

 private:
  unsigned char* base_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t capacity_ = 0;
  std::atomic<std::size_t> next_{0};
};

class SlabClass {
 public:
  using AvailableBag = bagpipe::Bagpipe<bagpipe::FaaQueue<Slab*>>;

  struct Options {
    std::size_t object_size = 0;
    double cutoff = 0.6;          // see ComputeMetadata
    std::size_t usable_size = 0;  // 0: the whole page
    // Pages of slabs whose usable size is at least this go back to the
    // PageAlloc with the uncommit hint (the reference's eager decommit).
    std::size_t eager_uncommit_threshold = kNoEagerUncommit;
    std::size_t available_queues = 16;  // the reference's general allocator
    // Where the available bag is built: on the class's first use, in a
    // block of BagStorageBytes(available_queues) bytes taken from this
    // arena then (see "The bag"; a bsalloc block of its own if the arena
    // is exhausted), or, with nullptr, in a block of its own (a whole
    // bsalloc page) built at once. An owner of many classes gives them
    // one arena.
    BagArena* bag_arena = nullptr;
    // Written into every slab's tag byte (Slab::TagOf): the general
    // allocator's size class index, so a free finds its class next to the
    // stamp.
    std::uint8_t tag = Slab::kNoTag;
    // Lay slabs out with a guard word before object 0 and one after the
    // last object (ComputeMetadata's guard_bytes), and when a page that
    // another layout left data in (its header names other metadata) is laid
    // out for this class, zero both and the last word of each object.
    // Afterwards every object's last word is 0 or was written through this
    // class's layout, and the guard words are 0 unless a stray write hit
    // them: the hardened general allocator keeps a trailer in the last words
    // and checks its neighbours' (a page whose header reads as zero is
    // wholly zero, fresh or uncommitted).
    bool zero_object_tails = false;
    // Keep the slab a SlabAllocator ran dry claimed as its previous slab
    // (see "The previous slab").
    bool keep_previous_slab = false;
  };

  // `pages` must outlive this object; its page size is the slab size. Several
  // classes may share one PageAlloc; a page keeps its old layout only for the
  // class whose metadata it still points to (see SlabAllocator::Refresh), so
  // every class sharing a PageAlloc must live as long as it does.
  SlabClass(PageAlloc* pages, const Options& options) noexcept;
  // Precondition: no SlabAllocator of this class is left. Slabs still in the
  // available bag that are wholly free go back to the PageAlloc; any others
  // hold live objects (a caller bug) and stay mapped.
  ~SlabClass();
  SlabClass(const SlabClass&) = delete;
  SlabClass& operator=(const SlabClass&) = delete;

  // The bytes of a bag of `available_queues` queues (BagArena blocks).
  static std::size_t BagStorageBytes(std::size_t available_queues) noexcept {
    return AvailableBag::StorageBytes(available_queues);
  }

  // False if the layout is invalid (nothing fits) or memory ran out.
  bool valid() const noexcept { return valid_; }
  const SlabMetadata& metadata() const noexcept { return meta_; }
  PageAlloc& pages() const noexcept { return *pages_; }
  // The available bag, built first if it is not yet (see "The bag").
  AvailableBag& available() noexcept {
    if (ABSL_PREDICT_FALSE(bag_state_.load(std::memory_order_acquire) !=
                           kBagBuilt)) {
      BuildBag();
    }
    return available_;
  }
  // In a child of fork(): a bag another thread of the parent was building
  // is built afresh on its next use (that thread does not exist here).
  void ResetBagInForkChild() noexcept {
    if (bag_state_.load(std::memory_order_relaxed) == kBagBuilding) {
      bag_state_.store(kBagNone, std::memory_order_relaxed);
    }
  }
  bool uncommit_on_free() const noexcept { return uncommit_on_free_; }

  // Pages taken from the PageAlloc and not yet returned (slabs that are
  // claimed, listed or floating). For tests and statistics.
  std::size_t pages_in_use() const noexcept {
    return pages_in_use_.load(std::memory_order_relaxed);
  }

 private:
  friend class SlabAllocator;
  PageAlloc* pages_;
  SlabMetadata meta_;
  bool uncommit_on_free_ = false;
  // The first OS page holds the header and the whole bit-set, so a page that
  // went back with the uncommit hint keeps its layout (see Refresh).
  bool header_survives_uncommit_ = false;
  bool zero_object_tails_ = false;
  bool keep_previous_slab_ = false;
  bool valid_ = false;
  std::uint8_t tag_ = Slab::kNoTag;

  // The bag. Built in a block of the arena (Options::bag_arena) by the
  // first available() call rather than by the constructor: a bag of Q
  // queues writes about 220 * Q bytes, and an owner of 60 classes whose
  // bags are all built up front touches 60 of them in every process
  // (52 KiB with 4 queues on 2 CPUs, 210 KiB with 16), where a program
  // uses a few dozen classes. The storage is fresh mapped memory, so the
  // pages of bags never built stay untouched. Protocol: the caller that
  // moves bag_state_ from kBagNone to kBagBuilding (compare-exchange)
  // builds the bag and publishes it with a release store of kBagBuilt;
  // the others wait for kBagBuilt (acquire) and then read available_,
  // which nobody writes afterwards. A fork child resets kBagBuilding
  // (ResetBagInForkChild): its builder is gone, and the bag is simply
  // built again (in the block the builder took, if it noted one). Building never waits for anything but memory
  // writes, so a waiter waits a few hundred nanoseconds.
  static constexpr std::uint32_t kBagNone = 0;
  static constexpr std::uint32_t kBagBuilding = 1;
  static constexpr std::uint32_t kBagBuilt = 2;
  void BuildBag() noexcept;
  // The bag's block, taken from bag_arena_ by the first builder and kept,
  // so that a fork child that builds the bag again builds it there.
  BagArena* bag_arena_ = nullptr;
  void* bag_storage_ = nullptr;
  std::size_t bag_queues_ = 0;
  std::atomic<std::uint32_t> bag_state_{kBagNone};
  AvailableBag available_{nullptr};
  std::atomic<std::size_t> pages_in_use_{0};
};

class SlabAllocator {
 public:
  SlabAllocator() noexcept = default;  // invalid; assign a real one
  // Takes no slab yet: the first Alloc() does.
  explicit SlabAllocator(SlabClass* cls) noexcept;
  ~SlabAllocator() { Release(); }
  SlabAllocator(SlabAllocator&& o) noexcept;
  SlabAllocator& operator=(SlabAllocator&& o) noexcept;
  SlabAllocator(const SlabAllocator&) = delete;
  SlabAllocator& operator=(const SlabAllocator&) = delete;

  bool valid() const noexcept { return cls_ != nullptr; }
  const SlabMetadata& metadata() const noexcept { return cls_->meta_; }
  SlabClass* slab_class() const noexcept { return cls_; }

  // An object, or nullptr when memory is exhausted.
  void* Alloc() noexcept {
    void* p;
    if (ABSL_PREDICT_FALSE(FromPrevious(&p + 1, 1) != 0)) return p;
    p = iter_.Next();
    return p != nullptr ? p : AllocSlow();
  }

  // Up to n objects into out[0, k) (at least one unless memory is
  // exhausted); returns k. Takes what the current slab word holds first and
  // stops at the end of a slab, so a batch never claims a slab it does not
  // need.
  //
  // The order is descending: out[k - 1] is the lowest address, so a stack
  // popped from its top (the magazines) hands objects out in ascending
  // address order. A slab is then used from its start: the first objects
  // share the OS page of the slab's header and bit-set, and a class that a
  // thread uses lightly touches one page of its slab instead of two (the
  // header's and the page of the batch's last object: ascending batches
  // popped from the top handed out the highest address first). The batch
  // is written from its end down (NextBatch<true>), which costs nothing per
  // object; only a batch cut short by the end of a slab moves its k
  // pointers to the bottom.
  std::size_t AllocBatch(void** out, std::size_t n) noexcept {
    if (n == 0) return 0;
    void** const top = out + n;
    std::size_t k = FromPrevious(top, n);
    for (bool refreshed = false; k < n; refreshed = true) {
      k += iter_.NextBatch<true>(top - k, n - k);
      if (k != 0 || refreshed) break;
      // The current slab is used up: AllocSlow takes the next one (and its
      // first object); the rest of the batch comes from that slab.
      void* p = AllocSlow();
      if (p == nullptr) return 0;
      top[-1] = p;
      k = 1;
    }
    if (k < n) std::memmove(out, top - k, k * sizeof(void*));
    return k;
  }

  // The slab an object of this class lies in.
  Slab* SlabOf(const void* p) const noexcept {
    return Slab::Find(p, cls_->meta_.page_size);
  }
  // True if p lies in the slab this thread currently owns.
  bool Contains(const void* p) const noexcept {
    const Slab* const s = SlabOf(p);
    return s != nullptr && (s == current_ || s == previous_);
  }

  // Frees an object of this class (allocated by any thread) and acts on the
  // transition it causes.
  void Free(void* p) noexcept {
    Slab* s = SlabOf(p);
    OnFree(s, s->Free(p));
  }
  // Frees the objects of bit-set word `word` of slab s whose bits are set in
  // mask, at once.
  // Objects freed into the slab this allocator owns are taken again before
  // its iterator moves on (LocalIter::Rewind).
  void BulkFree(Slab* s, std::size_t word, std::uint64_t mask) noexcept {
    if (s == current_) iter_.Rewind(word);
    if (s == previous_) previous_iter_.Rewind(word);
    OnFree(s, s->BulkFree(mask, word));
  }

  // Lets go of the current and the previous slab (the destruction policy);
  // the next Alloc() takes a new one. Called by the destructor.
  void Release() noexcept;

  // Checks the page allocator's decay rule (PageAlloc::Handle::Tick), for
  // owners that go on using their slab without claiming or releasing one.
  void TickPages() noexcept { pages_.Tick(); }

 private:
  friend class internal::SlabAllocatorTestPeer;
  void* AllocSlow() noexcept;
  // Up to n objects of the previous slab, if there is one (see "The
  // previous slab"), into top[-1] downwards (NextBatch<true>); the count
  // test spares the bit-set scan of a slab with nothing available.
  std::size_t FromPrevious(void** top, std::size_t n) noexcept {
    if (previous_ == nullptr || previous_->AvailableCount() <= 0) return 0;
    return previous_iter_.NextBatch<true>(top, n);
  }
  // Makes iter_ iterate a slab with available objects; false on OOM.
  bool Refresh() noexcept;
  void OnFree(Slab* s, FreeResult r) noexcept;
  void ReturnPage(Slab* s) noexcept;
  // Lets go of claimed slab s, whose iterator is `it` (Release's policy).
  void ReleaseSlab(Slab* s, Slab::LocalIter& it) noexcept;
  // Options::zero_object_tails for a page just laid out with m.
  static void ZeroObjectTails(void* page, const SlabMetadata& m) noexcept;

  SlabClass* cls_ = nullptr;
  Slab* current_ = nullptr;  // claimed by this thread, or null
  Slab::LocalIter iter_;
  // The slab this allocator used before current_, still claimed (see "The
  // previous slab"), or null.
  Slab* previous_ = nullptr;
  Slab::LocalIter previous_iter_;
  PageAlloc::Handle pages_;
  SlabClass::AvailableBag::Handle available_;
};

}  // namespace elfmalloc

#endif  // ELFMALLOC_SLAB_ALLOCATOR_H_
