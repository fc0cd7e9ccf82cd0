// bagpipe: a scalable concurrent *weak bag* built from an array of queues.
//
// A Bagpipe<Q> is a power-of-two array of WeakBags Q (FaaQueue,
// YangCrummeyQueue, TreiberStack, ...; default 2 x CPUs of them). Threads work
// through per-thread Handles. Contention, not a lock, decides where an item
// lands.
//
// Home queues. Each handle has a home queue: the calling thread's epoch
// index (epoch::ThreadIndex) modulo the number of queues, so up to n live
// threads have homes of their own in every bag, and one odd stride (coprime
// with the power-of-two length, so a walk visits every queue). A thread
// pushes to its home and pops from its home first, so it gets back what it
// put in before it takes what others did. For elfmalloc's page and slab
// bags that is memory this thread touched last, still in its core's cache:
// when a pop's walk moved the push position too, two threads that each free
// and reallocate 10 MiB of 2 KiB blocks (threadtest) drifted onto one queue
// and swapped their pages every round, and in some runs went at less than
// half the speed (28 against 64 million operations per second).
//
//  * TryPush probes up to push_failures + 1 queues (at most all of them). A
//    success halves push_failures; each failed probe moves the push
//    position on by one stride and increments it. So an uncontended handle
//    keeps using its home, and a contended one spreads out and then settles
//    again.
//  * TryPop probes the push position (the home, unless contention moved
//    it), then goes on from where its last walk found an item, walking on
//    by the stride. A success halves pop_failures. A transient failure
//    moves on, increments pop_failures and consumes one unit of a budget of
//    2 * pop_failures + 1; an empty queue moves on without consuming
//    budget. The bag is reported empty only once every queue was seen empty
//    consecutively (with no transient failure in between). A walk never
//    moves the push position: a thread that takes items from another's
//    queue does not start pushing there. QUIRK fixed: the reference counted
//    empty queues against the budget too, so a fresh handle on an empty bag
//    (budget 1) reported a transient failure instead of kEmpty.
//  * Emptiness is a weak property: "every queue was empty at the moment it
//    was looked at", not an atomic snapshot. There is no FIFO order across
//    queues. Nothing is lost or duplicated.
//  * SizeGuess: each handle accumulates a local difference and flushes it to
//    one of 4 shared cache-line padded counters once |diff| >= 4 and when the
//    handle is destroyed. The guess is max(0, sum): approximate, never exact
//    while handles hold unflushed differences.
//
// Ownership: the shared state (the queue array, counters, seed counter and the
// Cleanup object) is reference counted. A Bagpipe object and every Handle hold
// one reference. When the last one goes, Cleanup is called on every item
// still in the bag, then the queues are destroyed. Copying a Handle makes a
// new handle with a fresh seed (one handle per thread: a Handle is not
// thread-safe itself).
//
// Revocation: Bagpipe<FaaQueue<R*>> with R Revocable (bag.h) supports
// Revoke(item): exactly one of Revoke and a pop gets each pushed item.
//
// Memory: the shared state comes from bsalloc; queue internals from bsalloc
// and the epoch-recycled pools. Nothing calls malloc or throws.
#ifndef BAGPIPE_BAGPIPE_H_
#define BAGPIPE_BAGPIPE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "bagpipe/bag.h"
#include "bagpipe/block_pool.h"
#include "bagpipe/epoch.h"
#include "bsalloc/bsalloc.h"

namespace bagpipe {

// Number of CPUs this process may run on (sched_getaffinity, falling back to
// sysconf); never allocates; at least 1.
std::size_t NumCpus() noexcept;

// Default Cleanup: leaves remaining items alone.
struct NoCleanup {
  template <class T>
  void operator()(T) noexcept {}
};

template <WeakBag Q, class Cleanup = NoCleanup>
class Bagpipe {
  struct Shared;  // defined below; Handle names it (clang needs it declared)

 public:
  using value_type = typename Q::value_type;
  using queue_type = Q;
  class Handle;

  // num_queues is rounded up to a power of two; 0 means 2 x NumCpus().
  // Check valid(): construction fails only when memory is exhausted.
  explicit Bagpipe(std::size_t num_queues = 0,
                   Cleanup cleanup = Cleanup()) noexcept
      : s_(Shared::Create(num_queues, std::move(cleanup), nullptr)) {}

  // The bytes a bag of num_queues queues (rounded as above) occupies: a
  // multiple of the cache line, so that bags built side by side in one
  // block (the constructor below) share no line.
  static std::size_t StorageBytes(std::size_t num_queues) noexcept {
    return Shared::Bytes(Shared::Queues(num_queues));
  }

  // A bag built in `storage`: StorageBytes(num_queues) bytes aligned to a
  // cache line, owned by the caller, who must keep it until the last copy
  // and handle of the bag are gone; the bag never frees it. For owners of
  // many long-lived bags: a bag of 4 queues needs under 1 KiB, and one
  // bsalloc block per bag would take a whole page for each (elfmalloc's 57
  // size classes: 228 KiB of resident pages instead of 50 KiB).
  Bagpipe(std::size_t num_queues, Cleanup cleanup, void* storage) noexcept
      : s_(Shared::Create(num_queues, std::move(cleanup), storage)) {}
  // No bag (valid() is false) until one is assigned: for an owner that
  // builds its bag later, in storage of its own.
  explicit Bagpipe(std::nullptr_t) noexcept : s_(nullptr) {}
  Bagpipe(const Bagpipe& o) noexcept : s_(o.s_) {
    if (s_ != nullptr) s_->Ref();
  }
  Bagpipe(Bagpipe&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Bagpipe& operator=(Bagpipe o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Bagpipe() {
    if (s_ != nullptr) s_->Unref();
  }

  bool valid() const noexcept { return s_ != nullptr; }
  std::size_t num_queues() const noexcept { return s_->n; }

  // A new per-thread handle (fresh offset and stride). Pins once so that the
  // calling thread's epoch record exists before the handle is first used
  // (useful when the caller is an allocator that must not recurse later).
  Handle NewHandle() const noexcept { return Handle(s_); }

  // Approximate number of items; see the file comment.
  std::size_t SizeGuess() const noexcept { return s_->SizeGuess(); }

  // Removes `item` if it is queued in this (or any) revocable bag of this
  // type. See FaaQueue::Revoke.
  static bool Revoke(value_type item) noexcept
    requires requires { Q::Revoke(item); }
  {
    return Q::Revoke(item);
  }

  class Handle {
   public:
    Handle() noexcept = default;
    // A new handle on the same bag, with a fresh seed.
    Handle(const Handle& o) noexcept : Handle(o.s_) {}
    Handle(Handle&& o) noexcept
        : s_(std::exchange(o.s_, nullptr)),
          pipes_(o.pipes_),
          mask_(o.mask_),
          offset_(o.offset_),
          pop_at_(o.pop_at_),
          stride_(o.stride_),
          counter_(o.counter_),
          push_failures_(o.push_failures_),
          pop_failures_(o.pop_failures_),
          diff_(std::exchange(o.diff_, 0)) {}
    Handle& operator=(Handle o) noexcept {
      Swap(o);
      return *this;
    }
    ~Handle() { Release(); }

    bool valid() const noexcept { return s_ != nullptr; }

    // One probe sequence; false means every probed queue failed transiently
    // (or memory ran out): the item is not in the bag.
    //
    // Fast-path structure (all operations): the public call pins once, then
    // tries the handle's current queue inline; only when that first probe does
    // not succeed does an out-of-line slow path continue the probe sequence
    // exactly where the first probe left it. So the common case (own queue
    // accepts / is non-empty) is one pin, one queue operation and a few
    // handle-local updates, with no loops and no shared writes beyond the
    // queue's own.
    ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryPush(value_type item) noexcept {
      epoch::Guard g;
      if (ABSL_PREDICT_FALSE(!g.ok())) return false;
      return TryPushPinned(item);
    }

    // Always succeeds unless memory is exhausted (false).
    ABSL_ATTRIBUTE_ALWAYS_INLINE bool Push(value_type item) noexcept {
      epoch::Guard g;
      if (ABSL_PREDICT_FALSE(!g.ok())) return false;
      if (ABSL_PREDICT_TRUE(TryPushPinned(item))) return true;
      return PushSlow(item);
    }

    ABSL_ATTRIBUTE_ALWAYS_INLINE PopStatus TryPop(value_type* out) noexcept {
      epoch::Guard g;
      if (ABSL_PREDICT_FALSE(!g.ok())) return PopStatus::kTransient;
      return TryPopPinned(out);
    }

    // Retries while transient; false = the bag was observed empty (or, when
    // memory is exhausted, no epoch record could be made for this thread).
    bool Pop(value_type* out) noexcept {
      epoch::Guard g;
      if (ABSL_PREDICT_FALSE(!g.ok())) return false;
      for (;;) {
        const PopStatus s = TryPopPinned(out);
        if (ABSL_PREDICT_TRUE(s != PopStatus::kTransient)) {
          return s == PopStatus::kOk;
        }
      }
    }

    // Adds items[0..count) cycling through the queues from the offset, each
    // item going to the first queue that accepts it. false: out of memory
    // (items before the failing one were added).
    bool BulkAdd(const value_type* items, std::size_t count) noexcept {
      epoch::Guard g;
      if (!g.ok()) return false;
      std::size_t added = 0;
      bool ok = true;
      for (std::size_t k = 0; k < count && ok; ++k) {
        bool done = false;
        for (std::size_t i = 0; i <= mask_ && !done; ++i) {
          done = pipes_[offset_].TryPushPinned(items[k]);
          offset_ = (offset_ + stride_) & mask_;
        }
        if (!done) done = pipes_[offset_].PushPinned(items[k]);
        if (done) {
          ++added;
        } else {
          ok = false;
        }
      }
      AddDiff(static_cast<std::int64_t>(added));
      return ok;
    }

    std::size_t SizeGuess() const noexcept { return s_->SizeGuess(); }

    static bool Revoke(value_type item) noexcept
      requires requires { Q::Revoke(item); }
    {
      return Q::Revoke(item);
    }

   private:
    friend class Bagpipe;
    static constexpr std::int64_t kFlushThreshold = 4;

    explicit Handle(typename Bagpipe::Shared* s) noexcept : s_(s) {
      if (s_ == nullptr) return;
      s_->Ref();
      epoch::Guard g;  // creates the thread's epoch record now
      const std::uint64_t seed =
          s_->seeds.fetch_add(1, std::memory_order_relaxed) + 1;
      pipes_ = s_->pipes;
      mask_ = s_->n - 1;
      stride_ = static_cast<std::size_t>(2 * seed + 1);
      // The home queue: the thread's own index (distinct among live
      // threads), so that up to n threads each start at a queue of their
      // own in every bag (see "Home queues"); the seed otherwise.
      const std::uint32_t t = epoch::ThreadIndex();
      offset_ = (t != ~std::uint32_t{0} ? t : stride_) & mask_;
      pop_at_ = offset_;
      counter_ = static_cast<std::uint32_t>(seed % Shared::kCounters);
    }

    // First probe of TryPush, inline. REQUIRES: pinned.
    ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryPushPinned(value_type item) noexcept {
      if (ABSL_PREDICT_TRUE(pipes_[offset_].TryPushPinned(item))) {
        push_failures_ >>= 1;
        AddDiff(1);
        return true;
      }
      return TryPushSlow(item);
    }

    // The rest of TryPush's probe sequence after a failed first probe at
    // offset_: budget push_failures_ + 1 probes in all, as in the file
    // comment. REQUIRES: pinned.
    ABSL_ATTRIBUTE_NOINLINE bool TryPushSlow(value_type item) noexcept {
      const std::uint32_t budget = push_failures_ + 1;
      for (std::uint32_t i = 1;; ++i) {
        // Bookkeeping for the probe that just failed.
        offset_ = (offset_ + stride_) & mask_;
        if (push_failures_ <= mask_) ++push_failures_;
        if (i == budget) return false;
        if (pipes_[offset_].TryPushPinned(item)) {
          push_failures_ >>= 1;
          AddDiff(1);
          return true;
        }
      }
    }

    // Push after TryPush failed: one more lap of single attempts, then a
    // retrying push. REQUIRES: pinned.
    ABSL_ATTRIBUTE_NOINLINE bool PushSlow(value_type item) noexcept {
      for (std::size_t i = 0; i < mask_; ++i) {
        if (pipes_[offset_].TryPushPinned(item)) {
          AddDiff(1);
          return true;
        }
        offset_ = (offset_ + stride_) & mask_;
      }
      if (!pipes_[offset_].PushPinned(item)) return false;
      AddDiff(1);
      return true;
    }

    // First probe of TryPop, inline. REQUIRES: pinned.
    ABSL_ATTRIBUTE_ALWAYS_INLINE PopStatus
    TryPopPinned(value_type* out) noexcept {
      const PopStatus st = pipes_[offset_].TryPopPinned(out);
      if (ABSL_PREDICT_TRUE(st == PopStatus::kOk)) {
        pop_failures_ >>= 1;
        AddDiff(-1);
        return PopStatus::kOk;
      }
      return TryPopSlow(out, st);
    }

    // The rest of TryPop's probe sequence; `st` is the result of the probe
    // just made at offset_ (not kOk). Budget 2 * pop_failures_ + 1 transient
    // failures; empty queues move on without consuming it; kEmpty once every
    // queue was seen empty in a row. REQUIRES: pinned.
    // The walk goes on from where the last walk found an item (pop_at_),
    // not from the home queue (offset_), which the inline probe just tried:
    // a thread whose home is empty (a consumer) finds the next item in one
    // or two probes. Walks move pop_at_ only, never the push position (see
    // "Home queues").
    ABSL_ATTRIBUTE_NOINLINE PopStatus TryPopSlow(value_type* out,
                                                 PopStatus st) noexcept {
      const std::size_t n = mask_ + 1;
      std::uint32_t budget = 2 * pop_failures_ + 1;
      std::size_t empties = 0;
      if (pop_at_ != offset_) {
        if (st == PopStatus::kTransient) {
          if (pop_failures_ < n) ++pop_failures_;
          if (--budget == 0) return PopStatus::kTransient;
        }
        st = pipes_[pop_at_].TryPopPinned(out);
      }
      for (;;) {
        switch (st) {
          case PopStatus::kOk:
            pop_failures_ >>= 1;
            AddDiff(-1);
            return PopStatus::kOk;
          case PopStatus::kEmpty:
            if (++empties == n) {
              pop_failures_ >>= 1;
              return PopStatus::kEmpty;
            }
            break;
          case PopStatus::kTransient:
            empties = 0;
            if (pop_failures_ < n) ++pop_failures_;
            if (--budget == 0) {
              pop_at_ = (pop_at_ + stride_) & mask_;
              return PopStatus::kTransient;
            }
            break;
        }
        pop_at_ = (pop_at_ + stride_) & mask_;
        st = pipes_[pop_at_].TryPopPinned(out);
      }
    }

    void Swap(Handle& o) noexcept {
      std::swap(s_, o.s_);
      std::swap(pipes_, o.pipes_);
      std::swap(mask_, o.mask_);
      std::swap(offset_, o.offset_);
      std::swap(pop_at_, o.pop_at_);
      std::swap(stride_, o.stride_);
      std::swap(counter_, o.counter_);
      std::swap(push_failures_, o.push_failures_);
      std::swap(pop_failures_, o.pop_failures_);
      std::swap(diff_, o.diff_);
    }

    // Handle-local; touches the shared counters only once per
    // kFlushThreshold net change (a push/pop pair nets to zero and never
    // flushes).
    ABSL_ATTRIBUTE_ALWAYS_INLINE void AddDiff(std::int64_t d) noexcept {
      diff_ += d;
      if (ABSL_PREDICT_FALSE(diff_ >= kFlushThreshold ||
                             diff_ <= -kFlushThreshold)) {
        Flush();
      }
    }
    ABSL_ATTRIBUTE_NOINLINE void Flush() noexcept {
      if (diff_ != 0) {
        s_->counters[counter_].value.fetch_add(diff_,
                                               std::memory_order_relaxed);
        diff_ = 0;
      }
    }
    void Release() noexcept {
      if (s_ == nullptr) return;
      Flush();
      std::exchange(s_, nullptr)->Unref();
    }

    // Handles are per thread and not shared, so their fields need no
    // padding; pipes_ and mask_ cache s_->pipes and s_->n - 1 (immutable for
    // the life of the shared state, which this handle keeps alive) so the
    // fast path does not go through s_.
    typename Bagpipe::Shared* s_ = nullptr;
    Q* pipes_ = nullptr;
    std::size_t mask_ = 0;
    std::size_t offset_ = 0;
    std::size_t pop_at_ = 0;
    std::size_t stride_ = 1;
    std::uint32_t counter_ = 0;
    std::uint32_t push_failures_ = 0;
    std::uint32_t pop_failures_ = 0;
    std::int64_t diff_ = 0;
  };

 private:
  struct Shared {
    static constexpr std::size_t kCounters = 4;
    struct alignas(internal::kCacheLine) Counter {
      std::atomic<std::int64_t> value{0};
    };

    // Queues start on a cache line of their own (bsalloc blocks are page
    // aligned), and each queue keeps its hot words on separate lines.
    static std::size_t PipesOffset() noexcept {
      return (sizeof(Shared) + internal::kCacheLine - 1) /
             internal::kCacheLine * internal::kCacheLine;
    }
    static std::size_t Bytes(std::size_t n) noexcept {
      return (PipesOffset() + n * sizeof(Q) + internal::kCacheLine - 1) /
             internal::kCacheLine * internal::kCacheLine;
    }

    static std::size_t Queues(std::size_t n) noexcept {
      return absl::bit_ceil(n == 0 ? 2 * NumCpus() : n);
    }

    // `storage`: the caller's (StorageBytes), or nullptr for a bsalloc
    // block that the last Unref frees.
    static Shared* Create(std::size_t n, Cleanup cleanup,
                          void* storage) noexcept {
      n = Queues(n);
      static_assert(alignof(Q) <= bsalloc::kAlignment);
      static_assert(alignof(Shared) <= internal::kCacheLine);
      static_assert(alignof(Q) <= internal::kCacheLine &&
                    sizeof(Q) % alignof(Q) == 0);
      void* mem = storage != nullptr ? storage : bsalloc::Allocate(Bytes(n));
      if (mem == nullptr) return nullptr;
      Shared* s = new (mem) Shared(n, std::move(cleanup));
      s->owns_storage = storage == nullptr;
      s->pipes = reinterpret_cast<Q*>(static_cast<char*>(mem) + PipesOffset());
      std::size_t built = 0;
      bool ok = true;
      for (; built < n; ++built) {
        Q* q = new (&s->pipes[built]) Q();
        if (!q->valid()) {
          ++built;
          ok = false;
          break;
        }
      }
      if (!ok) {
        for (std::size_t i = 0; i < built; ++i) s->pipes[i].~Q();
        s->~Shared();
        if (storage == nullptr) bsalloc::Deallocate(mem, Bytes(n));
        return nullptr;
      }
      return s;
    }

    Shared(std::size_t num, Cleanup c) noexcept
        : n(num), cleanup(std::move(c)) {}

    void Ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
    void Unref() noexcept {
      if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
      // Last reference: no other thread can use the bag any more.
      for (std::size_t i = 0; i < n; ++i) {
        value_type item{};  // set on kOk only; {} keeps GCC's
                            // -Wmaybe-uninitialized quiet once inlined
        for (;;) {
          const PopStatus st = pipes[i].TryPop(&item);
          if (st == PopStatus::kEmpty) break;
          if (st == PopStatus::kOk) cleanup(item);
        }
        pipes[i].~Q();
      }
      const std::size_t bytes = Bytes(n);
      const bool owned = owns_storage;
      this->~Shared();
      if (owned) bsalloc::Deallocate(this, bytes);
    }

    std::size_t SizeGuess() const noexcept {
      std::int64_t sum = 0;
      for (const Counter& c : counters) {
        sum += c.value.load(std::memory_order_relaxed);
      }
      return sum < 0 ? 0 : static_cast<std::size_t>(sum);
    }

    std::atomic<std::size_t> refs{1};
    std::atomic<std::uint64_t> seeds{0};
    const std::size_t n;
    Q* pipes = nullptr;
    bool owns_storage = true;  // a bsalloc block of Bytes(n), freed last
    Cleanup cleanup;
    Counter counters[kCounters];
  };

  Shared* s_ = nullptr;
};

}  // namespace bagpipe

#endif  // BAGPIPE_BAGPIPE_H_
