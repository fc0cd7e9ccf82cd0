// yang_crummey_queue: an obstruction-free MPMC queue of word-sized items in
// the style of Yang & Crummey / Morrison & Afek: two global fetch_add
// counters index an unbounded array of cells, stored as a linked list of large
// segments (2^kSegmentShift cells each).
//
//  * push: t = tail_idx++; swap the item into cell t. If the cell already held
//    kTakenCell, a pop reached it first and the push fails transiently (the
//    item is not queued; the stale word left in the dead cell is never read).
//  * pop: if head_idx >= tail_idx the queue is empty. Otherwise h = head_idx++;
//    swap kTakenCell into cell h. An item means success; kEmptyCell means the
//    matching push has not arrived: kEmpty if h >= tail_idx now (the pop ran
//    ahead of every push), kTransient otherwise.
// Each index is claimed by exactly one push and one pop, and both sides swap,
// so an item is returned exactly once or its push reports failure.
// No revocation: cells are reused by index only, and items carry no handle.
//
// ## Segment list, reclamation and why a claimed cell is always reachable
// head_seg_ and tail_seg_ are *hints*: the segment in which pops / pushes
// start walking. Rules:
//  1. A thread loads the hint (acquire) BEFORE its fetch_add on the counter.
//  2. A hint is advanced from S to S->next (CAS, one step at a time) only by a
//     thread that already holds an index beyond S, i.e. after the counter
//     passed S's last index.
// So a thread that sees a hint pointing at S obtains, by rule 1 and 2 and
// coherence of the counter, an index at or beyond S's first index: walking
// forward from the hint always reaches its cell. Walking appends missing
// segments with CAS(next: nullptr -> new).
// Each successful hint CAS bumps the segment's `passes`; the thread that makes
// it 2 (both hints past S) retires S. S is then unreachable from both hints,
// and from its predecessor only through an already retired segment (whose
// readers pinned earlier, so they hold the epoch back as well); threads still
// working inside S pinned before the unlink. See epoch.h.
#ifndef BAGPIPE_YANG_CRUMMEY_QUEUE_H_
#define BAGPIPE_YANG_CRUMMEY_QUEUE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "bagpipe/bag.h"
#include "bagpipe/bag_ops.h"
#include "bagpipe/block_pool.h"
#include "bagpipe/epoch.h"
#include "bsalloc/bsalloc.h"

namespace bagpipe {

// The reference's segment sizes: 2^15 cells in optimised builds (2^12 in
// debug builds). Tests use small segments to exercise reclamation.
inline constexpr int kDefaultYcSegmentShift = 15;

template <Item T, int kSegmentShift = kDefaultYcSegmentShift>
class YangCrummeyQueue
    : public internal::PushOps<YangCrummeyQueue<T, kSegmentShift>, T>,
      public internal::PopOps<YangCrummeyQueue<T, kSegmentShift>, T> {
  static_assert(kSegmentShift >= 1 && kSegmentShift <= 24);

 public:
  using value_type = T;
  static constexpr std::uint64_t kSegmentSize = std::uint64_t{1}
                                                << kSegmentShift;

  YangCrummeyQueue() noexcept {
    Segment* s = NewSegment(0);
    head_seg_.v.store(s, std::memory_order_relaxed);
    tail_seg_.v.store(s, std::memory_order_relaxed);
  }
  YangCrummeyQueue(const YangCrummeyQueue&) = delete;
  YangCrummeyQueue& operator=(const YangCrummeyQueue&) = delete;

  // REQUIRES: no concurrent operations. Queued items are dropped. Segments
  // not yet retired are the chain from the older of the two hints.
  ~YangCrummeyQueue() {
    Segment* h = head_seg_.v.load(std::memory_order_relaxed);
    Segment* t = tail_seg_.v.load(std::memory_order_relaxed);
    if (h == nullptr) return;
    Segment* s = h->id <= t->id ? h : t;
    while (s != nullptr) {
      Segment* next = s->next.load(std::memory_order_relaxed);
      FreeSegment(s);
      s = next;
    }
  }

  bool valid() const noexcept {
    return head_seg_.v.load(std::memory_order_relaxed) != nullptr;
  }

  // TryPush, Push, TryPushPinned, PushPinned, TryPop and Pop come from
  // internal::PushOps / PopOps (bag_ops.h), over PushOnce, PushOncePinned
  // and TryPopPinned below.

  PopStatus TryPopPinned(T* out) noexcept {
    if (head_idx_.v.load(std::memory_order_acquire) >=
        tail_idx_.v.load(std::memory_order_acquire)) {
      return PopStatus::kEmpty;
    }
    Segment* hint = head_seg_.v.load(std::memory_order_acquire);
    const std::uint64_t h = head_idx_.v.fetch_add(1, std::memory_order_acq_rel);
    std::atomic<std::uintptr_t>* cell = FindCell(head_seg_.v, hint, h);
    if (cell == nullptr) return PopStatus::kTransient;  // out of memory
    const std::uintptr_t v =
        cell->exchange(internal::kTakenCell, std::memory_order_acq_rel);
    if (v != internal::kEmptyCell) {
      *out = ItemTraits<T>::Decode(v);
      return PopStatus::kOk;
    }
    return h >= tail_idx_.v.load(std::memory_order_acquire)
               ? PopStatus::kEmpty
               : PopStatus::kTransient;
  }

 private:
  friend class internal::PushOps<YangCrummeyQueue<T, kSegmentShift>, T>;
  using PushResult = internal::PushResult;
  static constexpr PushResult kPushed = PushResult::kPushed;
  static constexpr PushResult kRetry = PushResult::kRetry;
  static constexpr PushResult kNoMemory = PushResult::kNoMemory;

  struct Segment {
    epoch::RetireNode retire;
    std::uint64_t id = 0;
    std::atomic<Segment*> next{nullptr};
    std::atomic<int> passes{0};
    alignas(internal::kCacheLine)
        std::atomic<std::uintptr_t> cells[kSegmentSize] = {};
  };

  static Segment* NewSegment(std::uint64_t id) noexcept {
    void* p = bsalloc::Allocate(sizeof(Segment));  // page aligned
    if (p == nullptr) return nullptr;
    Segment* s = new (p) Segment();
    s->id = id;
    return s;
  }
  static void FreeSegment(Segment* s) noexcept {
    s->~Segment();
    bsalloc::Deallocate(s, sizeof(Segment));
  }
  static void FreeRetired(epoch::RetireNode* n) noexcept {
    FreeSegment(reinterpret_cast<Segment*>(n));  // retire is the first member
  }

  // Returns the cell of index `ix`, walking from `hint` (loaded before the
  // index was claimed) and appending segments as needed; then advances the
  // shared hint towards the cell's segment. nullptr: out of memory.
  std::atomic<std::uintptr_t>* FindCell(std::atomic<Segment*>& shared,
                                        Segment* hint, std::uint64_t ix) {
    const std::uint64_t want = ix >> kSegmentShift;
    Segment* s = hint;
    while (s->id < want) {
      Segment* next = s->next.load(std::memory_order_acquire);
      if (next == nullptr) {
        Segment* fresh = NewSegment(s->id + 1);
        if (fresh == nullptr) return nullptr;
        if (s->next.compare_exchange_strong(next, fresh,
                                            std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
          next = fresh;
        } else {
          FreeSegment(fresh);  // never published
        }
      }
      s = next;
    }
    // Rule 2: we hold an index in segment `want`, so every hint may move up to
    // it. Stop at the first failed CAS: someone else is advancing.
    Segment* cur = hint;
    while (cur->id < want) {
      Segment* next = cur->next.load(std::memory_order_acquire);
      Segment* expected = cur;
      if (!shared.compare_exchange_strong(expected, next,
                                          std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
        break;
      }
      if (cur->passes.fetch_add(1, std::memory_order_acq_rel) == 1) {
        cur->retire.free_fn = &FreeRetired;
        epoch::Retire(&cur->retire);
      }
      cur = next;
    }
    return &s->cells[ix & (kSegmentSize - 1)];
  }

  PushResult PushOnce(T item) noexcept {
    epoch::Guard g;
    if (!g.ok()) return kNoMemory;
    return PushOncePinned(item);
  }

  PushResult PushOncePinned(T item) noexcept {
    Segment* hint = tail_seg_.v.load(std::memory_order_acquire);
    const std::uint64_t t = tail_idx_.v.fetch_add(1, std::memory_order_acq_rel);
    std::atomic<std::uintptr_t>* cell = FindCell(tail_seg_.v, hint, t);
    if (cell == nullptr) return kNoMemory;
    const std::uintptr_t old =
        cell->exchange(ItemTraits<T>::Encode(item), std::memory_order_acq_rel);
    return old == internal::kEmptyCell ? kPushed : kRetry;
  }

  internal::PaddedAtomic<std::uint64_t> head_idx_;
  internal::PaddedAtomic<std::uint64_t> tail_idx_;
  internal::PaddedAtomic<Segment*> head_seg_;
  internal::PaddedAtomic<Segment*> tail_seg_;
};

}  // namespace bagpipe

#endif  // BAGPIPE_YANG_CRUMMEY_QUEUE_H_
