// bagpipe: a scalable concurrent *weak bag* built from an array of queues.
//
// A Bagpipe<Q> is a power-of-two array of WeakBags Q (FaaQueue,
// YangCrummeyQueue, TreiberStack, ...; default 2 x CPUs of them). Threads work
// through per-thread Handles; each handle walks the array from its own offset
// with its own odd stride (coprime with the power-of-two length, so a walk
// visits every queue). Contention, not a lock, decides where an item lands:
//
//  * TryPush probes up to push_failures + 1 queues (at most all of them). A
//    success halves push_failures; each failed probe moves the offset on by
//    one stride and increments it. So an uncontended handle keeps using "its"
//    queue, and a contended one spreads out and then settles again.
//  * TryPop probes from the offset. A success halves pop_failures. A
//    transient failure moves on, increments pop_failures and consumes one
//    unit of a budget of 2 * pop_failures + 1; an empty queue moves on
//    without consuming budget. The bag is reported empty only once every
//    queue was seen empty consecutively (with no transient failure in
//    between). QUIRK fixed: the reference counted empty queues against the
//    budget too, so a fresh handle on an empty bag (budget 1) reported a
//    transient failure instead of kEmpty.
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
 public:
  using value_type = typename Q::value_type;
  using queue_type = Q;
  class Handle;

  // num_queues is rounded up to a power of two; 0 means 2 x NumCpus().
  // Check valid(): construction fails only when memory is exhausted.
  explicit Bagpipe(std::size_t num_queues = 0,
                   Cleanup cleanup = Cleanup()) noexcept
      : s_(Shared::Create(num_queues, std::move(cleanup))) {}
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
          offset_(o.offset_),
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
    bool TryPush(value_type item) noexcept {
      epoch::Guard g;
      if (!g.ok()) return false;
      const std::size_t mask = s_->n - 1;
      const std::uint32_t budget = push_failures_ + 1;
      for (std::uint32_t i = 0; i < budget; ++i) {
        if (s_->pipes[offset_].TryPushPinned(item)) {
          push_failures_ >>= 1;
          AddDiff(1);
          return true;
        }
        offset_ = (offset_ + stride_) & mask;
        if (push_failures_ < s_->n) ++push_failures_;
      }
      return false;
    }

    // Always succeeds unless memory is exhausted (false).
    bool Push(value_type item) noexcept {
      epoch::Guard g;
      if (!g.ok()) return false;
      if (TryPush(item)) return true;
      const std::size_t mask = s_->n - 1;
      for (std::size_t i = 0; i + 1 < s_->n; ++i) {
        if (s_->pipes[offset_].TryPushPinned(item)) {
          AddDiff(1);
          return true;
        }
        offset_ = (offset_ + stride_) & mask;
      }
      if (!s_->pipes[offset_].PushPinned(item)) return false;
      AddDiff(1);
      return true;
    }

    PopStatus TryPop(value_type* out) noexcept {
      epoch::Guard g;
      if (!g.ok()) return PopStatus::kTransient;
      const std::size_t n = s_->n;
      const std::size_t mask = n - 1;
      std::uint32_t budget = 2 * pop_failures_ + 1;
      std::size_t empties = 0;
      for (;;) {
        switch (s_->pipes[offset_].TryPopPinned(out)) {
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
              offset_ = (offset_ + stride_) & mask;
              return PopStatus::kTransient;
            }
            break;
        }
        offset_ = (offset_ + stride_) & mask;
      }
    }

    // Retries while transient; false = the bag was observed empty.
    bool Pop(value_type* out) noexcept {
      epoch::Guard g;
      for (;;) {
        const PopStatus s = TryPop(out);
        if (s != PopStatus::kTransient) return s == PopStatus::kOk;
      }
    }

    // Adds items[0..count) cycling through the queues from the offset, each
    // item going to the first queue that accepts it. false: out of memory
    // (items before the failing one were added).
    bool BulkAdd(const value_type* items, std::size_t count) noexcept {
      epoch::Guard g;
      if (!g.ok()) return false;
      const std::size_t mask = s_->n - 1;
      std::size_t added = 0;
      bool ok = true;
      for (std::size_t k = 0; k < count && ok; ++k) {
        bool done = false;
        for (std::size_t i = 0; i < s_->n && !done; ++i) {
          done = s_->pipes[offset_].TryPushPinned(items[k]);
          offset_ = (offset_ + stride_) & mask;
        }
        if (!done) done = s_->pipes[offset_].PushPinned(items[k]);
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
      stride_ = static_cast<std::size_t>(2 * seed + 1);
      offset_ = stride_ & (s_->n - 1);
      counter_ = static_cast<std::uint32_t>(seed % Shared::kCounters);
    }

    void Swap(Handle& o) noexcept {
      std::swap(s_, o.s_);
      std::swap(offset_, o.offset_);
      std::swap(stride_, o.stride_);
      std::swap(counter_, o.counter_);
      std::swap(push_failures_, o.push_failures_);
      std::swap(pop_failures_, o.pop_failures_);
      std::swap(diff_, o.diff_);
    }

    void AddDiff(std::int64_t d) noexcept {
      diff_ += d;
      if (diff_ >= kFlushThreshold || diff_ <= -kFlushThreshold) Flush();
    }
    void Flush() noexcept {
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

    typename Bagpipe::Shared* s_ = nullptr;
    std::size_t offset_ = 0;
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
      return PipesOffset() + n * sizeof(Q);
    }

    static Shared* Create(std::size_t n, Cleanup cleanup) noexcept {
      if (n == 0) n = 2 * NumCpus();
      n = absl::bit_ceil(n);
      static_assert(alignof(Q) <= bsalloc::kAlignment);
      void* mem = bsalloc::Allocate(Bytes(n));
      if (mem == nullptr) return nullptr;
      Shared* s = new (mem) Shared(n, std::move(cleanup));
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
        bsalloc::Deallocate(mem, Bytes(n));
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
        value_type item;
        for (;;) {
          const PopStatus st = pipes[i].TryPop(&item);
          if (st == PopStatus::kEmpty) break;
          if (st == PopStatus::kOk) cleanup(item);
        }
        pipes[i].~Q();
      }
      const std::size_t bytes = Bytes(n);
      this->~Shared();
      bsalloc::Deallocate(this, bytes);
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
    Cleanup cleanup;
    Counter counters[kCounters];
  };

  Shared* s_ = nullptr;
};

}  // namespace bagpipe

#endif  // BAGPIPE_BAGPIPE_H_
