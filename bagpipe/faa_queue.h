// faa_queue: a lock-free MPMC FIFO queue of word-sized items, after
// Ramalhete & Correia's FAAArrayQueue, with optional revocation.
//
// The queue is a linked list of 256-cell segments. Each segment has its own
// enqueue and dequeue counters; a push claims a cell with fetch_add on the
// tail segment's `enq` and CASes the item into it, a pop claims a cell with
// fetch_add on the head segment's `deq` and swaps kTakenCell into it (for
// non-revocable items it first just loads the cell and skips the swap when
// the item is already there; see the invariants). A pop that arrives at a
// cell before its push swaps kTakenCell in first, and that push's CAS fails:
// TryPush then reports a transient failure (the caller retries) and TryPop
// reports kTransient. Pops never wait for pushes.
//
// Segments come from a type-stable BlockPool and are recycled through epoch
// reclamation (epoch.h). Every operation pins.
//
// ## The first segment is allocated by the first push
// A new queue's head_ and tail_ point at the sentinel: one static segment
// per item type, permanently full and drained (enq = deq = kSegmentSize,
// next always null). Constructing a queue touches no memory beyond the
// object, so an allocator holding hundreds of mostly idle queues (elfmalloc
// has a bag of 4..32 queues per size class) no longer pays a 2 KiB segment
// per queue up front. Pops of an untouched queue see it empty (their
// fetch_add on the sentinel's deq lands past the end, and its next is
// null). The first push lands past its end too and, in AdvanceTail,
// installs a fresh segment: CAS head_ sentinel -> fresh FIRST, then CAS
// tail_ sentinel -> head_. Only this path moves a root off the sentinel;
// the sentinel is never linked as a next and never retired. While head_ =
// fresh and tail_ = sentinel (tail momentarily behind head) nothing can be
// retired: head_ leaves `fresh` only after fresh->next is set, which only a
// push whose tail_ is `fresh` does, and the pusher that moves tail_ off the
// sentinel reads head_ after the head CAS, so it moves tail_ to `fresh`.
//
// ## Invariants and who moves what
//  * head_ and tail_ only move forward, one segment at a time, by CAS from a
//    segment S to S->next. tail_ is never behind head_: before a pop moves
//    head_ from S to S->next it first helps tail_ off S (CAS tail_ S ->
//    S->next; if that fails tail_ was already past S). Hence when head_ leaves
//    S, S is unreachable from both roots and the head-CAS winner may retire it
//    (the unlink of epoch.h). This is a fix over a naive port, in which tail_
//    may still point at a retired segment.
//  * New segments are appended empty (CAS S->next nullptr -> new). They are
//    never pre-filled with the pusher's item, so no item is ever visible in a
//    segment that might be discarded (which matters for revocation).
//  * A cell goes kEmptyCell -> item (the push's CAS) -> kTakenCell (the pop's
//    exchange, or a revoke's CAS), or kEmptyCell -> kTakenCell when the pop
//    came first. Exactly one pop claims each cell index (fetch_add), so every
//    pushed item is popped or revoked exactly once.
//  * Non-revocable queues skip the pop's exchange when the item has already
//    landed: the pop loads the cell (acquire, pairing with the push's release
//    CAS) and, if it holds an item, takes it and leaves the cell as it is.
//    This is race-free because the cell then has no other writer left: its
//    one push (enq fetch_add hands each index to one pusher) has completed
//    its CAS, its one pop (deq fetch_add) is this one, and without
//    revocation nothing else writes cells. Nothing reads a cell after its pop
//    either (emptiness is decided from deq/enq/next, and a segment is zeroed
//    again when it is reused), so the stale item is never seen. Only when the
//    load sees kEmptyCell does the pop exchange kTakenCell in, to beat (or,
//    if the exchange returns an item, lose to) the late push as above.
//    Revocable queues always exchange, since a Revoke may CAS the item out
//    concurrently.
//
// ## Revocation (when T is a pointer to a Revocable, see bag.h)
// The item's handle records the address of the cell it sits in:
//  * push: handle := &cell, then CAS the cell; if the CAS fails, handle := 0.
//  * pop: after the exchange returned the item, handle := 0.
//  * Revoke(item): pinned, load the handle c; if 0, fail; else CAS *c from the
//    item to kTakenCell. Success means the item was in the queue and is now
//    removed; then handle := 0. The cell CAS and the pop's exchange are the
//    same word, so exactly one of revoke and pop wins.
// Memory safety of Revoke's access to *c: a handle value c pointing into
// segment S is written only by the pusher of that cell, and removed by (a) the
// pusher itself on failure, (b) the popper of the cell, or (c) the winning
// revoker. (a) and (b) reached S through the roots, so they are pinned at an
// epoch <= t (S's retire epoch) and must unpin (after removing c) before the
// epoch can reach t + 2. (c) wins its CAS before the cell's popper exchanges,
// so it read c while pinned at <= t + 1 and removes c before the epoch can
// reach t + 3. A revoker pinned at >= t + 3 therefore cannot read c, and one
// pinned at <= t + 2 holds the epoch below t + 4: segments of revocable queues
// are retired with grace 4.
// Semantics: a Revoke that races with the Push of the same item may fail
// (the item is not "in" yet); a Revoke after Push returned succeeds unless a
// pop or another revoke took the item first.
#ifndef BAGPIPE_FAA_QUEUE_H_
#define BAGPIPE_FAA_QUEUE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "bagpipe/bag.h"
#include "bagpipe/bag_ops.h"
#include "bagpipe/block_pool.h"
#include "bagpipe/epoch.h"

namespace bagpipe {

template <Item T>
class FaaQueue : public internal::PushOps<FaaQueue<T>, T>,
                 public internal::PopOps<FaaQueue<T>, T> {
 public:
  using value_type = T;
  static constexpr std::size_t kSegmentSize = 256;
  static constexpr bool kRevocable = kIsRevocableItem<T>;

  // Allocates nothing (see "The first segment is allocated by the first
  // push"); a push that cannot get a segment reports out of memory.
  FaaQueue() noexcept {
    head_.v.store(Sentinel(), std::memory_order_relaxed);
    tail_.v.store(Sentinel(), std::memory_order_relaxed);
  }
  FaaQueue(const FaaQueue&) = delete;
  FaaQueue& operator=(const FaaQueue&) = delete;

  // REQUIRES: no concurrent operations. Items still queued are dropped (their
  // revocation handles are cleared).
  ~FaaQueue() {
    if (!valid()) return;
    T item;
    while (this->TryPop(&item) != PopStatus::kEmpty) {
    }
    epoch::Guard g;
    Segment* first = head_.v.load(std::memory_order_relaxed);
    if (first == Sentinel()) return;  // never pushed to
    for (Segment* s = first; s != nullptr;) {
      Segment* next = s->next.load(std::memory_order_relaxed);
      s->~Segment();
      Pool::Retire(s, kGrace);
      s = next;
    }
  }

  bool valid() const noexcept {
    return head_.v.load(std::memory_order_relaxed) != nullptr;
  }

  // TryPush, Push, TryPushPinned, PushPinned, TryPop and Pop come from
  // internal::PushOps / PopOps (bag_ops.h), over PushOnce, PushOncePinned
  // and TryPopPinned below.

  // The common case (a cell of the head segment) is inline; moving head_ on
  // to the next segment is out of line (once per kSegmentSize pops).
  ABSL_ATTRIBUTE_ALWAYS_INLINE PopStatus TryPopPinned(T* out) noexcept {
    for (;;) {
      Segment* lh = head_.v.load(std::memory_order_acquire);
      // Emptiness pre-check, so that pops of an empty queue do not burn
      // cells: only when deq has caught up with enq is `next` read.
      if (lh->deq.load(std::memory_order_acquire) >=
              lh->enq.load(std::memory_order_acquire) &&
          lh->next.load(std::memory_order_acquire) == nullptr) {
        return PopStatus::kEmpty;
      }
      const std::uint64_t idx =
          lh->deq.fetch_add(1, std::memory_order_acq_rel);
      if (ABSL_PREDICT_FALSE(idx >= kSegmentSize)) {
        if (!AdvanceHead(lh)) return PopStatus::kEmpty;
        continue;
      }
      std::atomic<std::uintptr_t>& cell = lh->cells[idx];
      std::uintptr_t v;
      if constexpr (kRevocable) {
        // A revoker may CAS the item out concurrently: claim it atomically.
        v = cell.exchange(internal::kTakenCell, std::memory_order_acq_rel);
      } else {
        // Read first; only an empty cell needs the exchange (see "A cell
        // goes ..." above): one locked instruction fewer per pop whenever
        // the push has landed, which is the common case.
        v = cell.load(std::memory_order_acquire);
        if (ABSL_PREDICT_FALSE(v == internal::kEmptyCell)) {
          v = cell.exchange(internal::kTakenCell, std::memory_order_acq_rel);
        }
      }
      if (ABSL_PREDICT_FALSE(v == internal::kEmptyCell)) {
        return PopStatus::kTransient;
      }
      if (ABSL_PREDICT_FALSE(v == internal::kTakenCell)) {
        continue;  // revoked while queued
      }
      T item = ItemTraits<T>::Decode(v);
      if constexpr (kRevocable) {
        item->handle().store(0, std::memory_order_release);
      }
      *out = item;
      return PopStatus::kOk;
    }
  }

  // Removes `item` from whichever revocable FaaQueue of this type holds it.
  // true: it was queued and this call removed it (no pop will return it).
  // false: it was not queued, or a pop / another revoke took it first.
  static bool Revoke(T item) noexcept
    requires kRevocable
  {
    epoch::Guard g;
    if (!g.ok()) return false;
    std::atomic<std::uintptr_t>& h = item->handle();
    const std::uintptr_t c = h.load(std::memory_order_acquire);
    if (c == 0) return false;
    auto* cell = reinterpret_cast<std::atomic<std::uintptr_t>*>(c);
    std::uintptr_t expected = ItemTraits<T>::Encode(item);
    if (!cell->compare_exchange_strong(expected, internal::kTakenCell,
                                       std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
      return false;
    }
    h.store(0, std::memory_order_release);
    return true;
  }

 private:
  friend class internal::PushOps<FaaQueue<T>, T>;
  using PushResult = internal::PushResult;
  static constexpr PushResult kPushed = PushResult::kPushed;
  static constexpr PushResult kRetry = PushResult::kRetry;
  static constexpr PushResult kNoMemory = PushResult::kNoMemory;
  static constexpr std::uint64_t kGrace = kRevocable ? 4 : 2;

  struct Segment {
    constexpr Segment() noexcept = default;
    // The sentinel's: full and drained.
    constexpr explicit Segment(std::uint64_t used) noexcept
        : deq(used), enq(used) {}
    alignas(internal::kCacheLine) std::atomic<std::uint64_t> deq{0};
    alignas(internal::kCacheLine) std::atomic<std::uint64_t> enq{0};
    alignas(internal::kCacheLine) std::atomic<Segment*> next{nullptr};
    alignas(internal::kCacheLine) std::atomic<std::uintptr_t> cells[kSegmentSize] = {};
  };
  using Pool = internal::BlockPool<sizeof(Segment)>;

  // See "The first segment is allocated by the first push". Its cells are
  // never touched (every index handed out is >= kSegmentSize).
  ABSL_CONST_INIT static inline Segment sentinel_{kSegmentSize};
  static Segment* Sentinel() noexcept { return &sentinel_; }

  static Segment* NewSegment() noexcept {
    void* p = Pool::Get();
    return p == nullptr ? nullptr : new (p) Segment();
  }

  PushResult PushOnce(T item) noexcept {
    epoch::Guard g;
    if (!g.ok()) return kNoMemory;
    return PushOncePinned(item);
  }

  // The common case (a cell of the tail segment) is inline; appending a
  // segment / moving tail_ on is out of line (once per kSegmentSize pushes).
  ABSL_ATTRIBUTE_ALWAYS_INLINE PushResult PushOncePinned(T item) noexcept {
    const std::uintptr_t v = ItemTraits<T>::Encode(item);
    for (;;) {
      Segment* lt = tail_.v.load(std::memory_order_acquire);
      const std::uint64_t idx =
          lt->enq.fetch_add(1, std::memory_order_acq_rel);
      if (ABSL_PREDICT_FALSE(idx >= kSegmentSize)) {
        if (!AdvanceTail(lt)) return kNoMemory;
        continue;
      }
      std::atomic<std::uintptr_t>& cell = lt->cells[idx];
      if constexpr (kRevocable) {
        item->handle().store(reinterpret_cast<std::uintptr_t>(&cell),
                             std::memory_order_release);
      }
      std::uintptr_t expected = internal::kEmptyCell;
      if (ABSL_PREDICT_TRUE(cell.compare_exchange_strong(
              expected, v, std::memory_order_acq_rel,
              std::memory_order_relaxed))) {
        return kPushed;
      }
      if constexpr (kRevocable) {
        item->handle().store(0, std::memory_order_release);
      }
      return kRetry;
    }
  }

  // A push found segment `lt` full: make sure a next segment exists and help
  // tail_ from lt to it. false: out of memory. REQUIRES: pinned.
  ABSL_ATTRIBUTE_NOINLINE bool AdvanceTail(Segment* lt) noexcept {
    if (lt != tail_.v.load(std::memory_order_acquire)) return true;
    if (lt == Sentinel()) return InstallFirstSegment();
    Segment* ln = lt->next.load(std::memory_order_acquire);
    if (ln == nullptr) {
      Segment* fresh = NewSegment();
      if (fresh == nullptr) return false;
      Segment* expected = nullptr;
      if (lt->next.compare_exchange_strong(expected, fresh,
                                           std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
        ln = fresh;
      } else {
        fresh->~Segment();
        Pool::Retire(fresh, kGrace);  // never published; see block_pool.h
        ln = expected;
      }
    }
    tail_.v.compare_exchange_strong(lt, ln, std::memory_order_acq_rel,
                                    std::memory_order_relaxed);
    return true;
  }

  // The first push(es) of a queue: head_ sentinel -> fresh, then tail_
  // sentinel -> head_ (see the file comment for why in this order). false:
  // out of memory. REQUIRES: pinned.
  ABSL_ATTRIBUTE_NOINLINE bool InstallFirstSegment() noexcept {
    Segment* h = head_.v.load(std::memory_order_acquire);
    if (h == Sentinel()) {
      Segment* fresh = NewSegment();
      if (fresh == nullptr) return false;
      if (head_.v.compare_exchange_strong(h, fresh, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
        h = fresh;
      } else {
        fresh->~Segment();
        Pool::Retire(fresh, kGrace);  // never published
      }
    }
    Segment* t = Sentinel();
    tail_.v.compare_exchange_strong(t, h, std::memory_order_acq_rel,
                                    std::memory_order_relaxed);
    return true;
  }

  // A pop found head segment `lh` exhausted. false: there is no next segment
  // (the queue is empty). Otherwise helps tail_ off lh, then moves head_ from
  // lh to its successor; the winner of the head CAS retires lh (see the
  // invariants above). REQUIRES: pinned.
  ABSL_ATTRIBUTE_NOINLINE bool AdvanceHead(Segment* lh) noexcept {
    Segment* ln = lh->next.load(std::memory_order_acquire);
    if (ln == nullptr) return false;
    Segment* t = lh;
    tail_.v.compare_exchange_strong(t, ln, std::memory_order_acq_rel,
                                    std::memory_order_relaxed);
    Segment* h = lh;
    if (head_.v.compare_exchange_strong(h, ln, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
      Pool::Retire(lh, kGrace);
    }
    return true;
  }

  internal::PaddedAtomic<Segment*> head_;
  internal::PaddedAtomic<Segment*> tail_;
};

}  // namespace bagpipe

#endif  // BAGPIPE_FAA_QUEUE_H_
