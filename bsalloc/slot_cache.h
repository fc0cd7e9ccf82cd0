// bsalloc/slot_cache.h: the small lock-free cache of free blocks behind each
// bsalloc size class.
//
// A SlotCache is a fixed array of slots, each holding either nullptr or one
// free block (an opaque pointer the cache never dereferences). There is no
// list, no count and no lock: a thread that wants a block sweeps slots and
// takes the first one it finds; a thread that frees a block sweeps slots and
// parks it in the first empty one. When a sweep gives up (its patience runs
// out) the caller falls back to the kernel: mmap on a miss, munmap on a full
// cache. This is the design of the reference bsalloc (allocators-rs), which
// bounds the memory a cache can pin to `kSlots` blocks and costs at most
// `kPatience` probes before the system call that a miss costs anyway.
//
// Differences from the reference, each deliberate:
//  * Memory orders. The reference used Relaxed everywhere. That is a data race
//    on the *contents* of the blocks: the thread that frees a block has written
//    to it, and the thread that takes it out of the cache will write to it; a
//    relaxed hand-off orders neither, so (in the C++ model, and on weakly
//    ordered hardware in practice) the old owner's stores may land after the
//    new owner's. Parking is therefore a release operation and taking an
//    acquire operation, which makes every access by the old owner happen
//    before every access by the new one. (ThreadSanitizer reports the race in
//    bsalloc_test's multi-threaded tests if either order is weakened.)
//  * Parking uses compare-and-swap (nullptr -> block) instead of exchange. With
//    exchange, parking into an occupied slot displaces its block, which the
//    freeing thread must then carry on and park elsewhere (or unmap), and which
//    it must acquire as well. With CAS a park never displaces anything, the
//    failure path needs no ordering, and a full cache costs only loads.
//  * Test-and-test-and-set: each probe first *loads* the slot (relaxed) and
//    attempts the read-modify-write only if the slot looks usable, so sweeping
//    a full (or empty) cache reads cache lines instead of stealing them from
//    other cores.
//  * Patience defaults to one full sweep (kPatience == kSlots) rather than
//    kSlots / 4. A probe is a load costing nanoseconds, a miss is an mmap or
//    munmap costing microseconds, so giving up early with blocks still cached
//    (as the reference could) only trades a cheap probe for a system call. The
//    bound still guarantees that a sweep ends after kPatience probes, however
//    busy the other threads are: TryTake and TryPut are wait-free.
//  * Each slot has its own cache line (with two statistics counters that the
//    owning thread updates right after its successful exchange, while it holds
//    that line anyway), so threads probing different slots never false-share.
//
// Probe order: the caller passes a `hint` (bsalloc uses the current stack
// address, which needs no thread-local storage and is stable for a thread
// while differing between threads, whose stacks are far apart). The hint is
// hashed into a start slot and an odd stride; with a power-of-two slot count
// an odd stride visits every slot exactly once per sweep. A thread therefore
// tends to find the block it freed last first (warm in its cache), and
// different threads start at different slots, so they rarely contend.
//
// Protocol (who may make which transition), for one slot:
//   nullptr --(TryPut: CAS, release)--> block   by the thread that owns `block`
//   block   --(TryTake/TakeAny: exchange, acquire)--> nullptr
//                                                   by any thread; the thread
//                                                   whose exchange returned
//                                                   `block` now owns it
// A block is owned by exactly one party at any time: its user, or the slot.
// The CAS succeeds only on an empty slot, so it never overwrites a parked
// block; the exchange returns the parked block to exactly one thread, because
// read-modify-writes on one atomic are totally ordered. There is no ABA
// hazard: no operation is conditional on a non-null value it read earlier.
// Everything here is constinit-constructible, allocation-free and lock-free
// (std::atomic<void*> and std::atomic<uint64_t> are always lock-free on the
// 64-bit targets we support; static_asserts below check it).
#ifndef BSALLOC_SLOT_CACHE_H_
#define BSALLOC_SLOT_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/optimization.h"

namespace bsalloc {
namespace internal {

static_assert(std::atomic<void*>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// The probe order for one sweep over `kSlots` slots (a power of two).
template <std::size_t kSlots>
class ProbeSequence {
 public:
  static_assert(kSlots > 0 && (kSlots & (kSlots - 1)) == 0,
                "slot count must be a power of two");

  // Fibonacci hashing (2^64 / golden ratio): spreads hints that differ only
  // in a few high bits (thread stacks) over the whole word.
  static constexpr std::uint64_t kMultiplier = 0x9E3779B97F4A7C15ull;
  // Hints are stack addresses; dropping the low 12 bits keeps a thread's
  // start slot the same across call depths within one 4 KiB stack page.
  static constexpr int kHintShift = 12;

  explicit constexpr ProbeSequence(std::uintptr_t hint) noexcept {
    const std::uint64_t h =
        (static_cast<std::uint64_t>(hint) >> kHintShift) * kMultiplier;
    // The high bits of a multiplicative hash are the well-mixed ones.
    index_ = static_cast<std::size_t>(h >> 32) & kMask;
    stride_ = (static_cast<std::size_t>(h >> 48) | 1) & kMask;
    if (kSlots == 1) stride_ = 0;
  }

  constexpr std::size_t index() const noexcept { return index_; }
  constexpr std::size_t stride() const noexcept { return stride_; }
  constexpr void Next() noexcept { index_ = (index_ + stride_) & kMask; }

 private:
  static constexpr std::size_t kMask = kSlots - 1;
  std::size_t index_;
  std::size_t stride_;
};

// See the file comment. kSlots: a power of two. kPatience: how many slots one
// TryTake / TryPut probes before giving up, 1..kSlots.
template <std::size_t kSlots, std::size_t kPatience = kSlots>
class SlotCache {
 public:
  static_assert(kSlots > 0 && (kSlots & (kSlots - 1)) == 0,
                "slot count must be a power of two");
  static_assert(kPatience >= 1 && kPatience <= kSlots,
                "patience must be between 1 and the slot count");

  static constexpr std::size_t kNumSlots = kSlots;
  static constexpr std::size_t kMaxProbes = kPatience;

  constexpr SlotCache() noexcept = default;
  SlotCache(const SlotCache&) = delete;
  SlotCache& operator=(const SlotCache&) = delete;

  // Takes a parked block, probing at most kPatience slots in the order given
  // by `hint`. Returns nullptr if none was found. The caller owns the result,
  // and everything the previous owner wrote to it happens-before this return.
  void* TryTake(std::uintptr_t hint) noexcept {
    ProbeSequence<kSlots> probe(hint);
    for (std::size_t i = 0; i < kPatience; ++i, probe.Next()) {
      Slot& slot = slots_[probe.index()];
      // Relaxed peek: only a hint whether the exchange is worth its cache-line
      // transfer. The exchange below is what decides.
      if (slot.block.load(std::memory_order_relaxed) == nullptr) continue;
      // Acquire pairs with the release CAS in TryPut that parked the block.
      void* block = slot.block.exchange(nullptr, std::memory_order_acquire);
      if (ABSL_PREDICT_TRUE(block != nullptr)) {
        slot.takes.fetch_add(1, std::memory_order_relaxed);
        return block;
      }
    }
    return nullptr;
  }

  // Parks `block` (non-null, owned by the caller) in an empty slot, probing at
  // most kPatience slots in the order given by `hint`. Returns false if every
  // probed slot was full; the caller still owns the block then.
  bool TryPut(void* block, std::uintptr_t hint) noexcept {
    ProbeSequence<kSlots> probe(hint);
    for (std::size_t i = 0; i < kPatience; ++i, probe.Next()) {
      Slot& slot = slots_[probe.index()];
      if (slot.block.load(std::memory_order_relaxed) != nullptr) continue;
      void* expected = nullptr;
      // Release publishes our writes to the block to whoever takes it. On
      // failure nothing was published or acquired, so relaxed.
      if (slot.block.compare_exchange_strong(expected, block,
                                             std::memory_order_release,
                                             std::memory_order_relaxed)) {
        slot.puts.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    return false;
  }

  // Takes any parked block, sweeping every slot in order (ignores patience).
  // nullptr if the cache was empty when each slot was looked at. For draining.
  void* TakeAny() noexcept {
    for (Slot& slot : slots_) {
      if (slot.block.load(std::memory_order_relaxed) == nullptr) continue;
      void* block = slot.block.exchange(nullptr, std::memory_order_acquire);
      if (block != nullptr) return block;
    }
    return nullptr;
  }

  // The number of parked blocks: exact when no other thread is using the
  // cache, otherwise a snapshot of each slot at a slightly different time.
  std::size_t CachedBlocks() const noexcept {
    std::size_t n = 0;
    for (const Slot& slot : slots_) {
      n += slot.block.load(std::memory_order_relaxed) != nullptr;
    }
    return n;
  }

  // Successful TryTake calls (TakeAny not included) and TryPut calls so far.
  std::uint64_t Takes() const noexcept { return Sum(&Slot::takes); }
  std::uint64_t Puts() const noexcept { return Sum(&Slot::puts); }

 private:
  // One cache line per slot. `takes` / `puts` are statistics only (relaxed):
  // they are bumped by the thread whose exchange / CAS on `block` just
  // succeeded, while that line is in its cache.
  struct alignas(ABSL_CACHELINE_SIZE) Slot {
    std::atomic<void*> block{nullptr};
    std::atomic<std::uint64_t> takes{0};
    std::atomic<std::uint64_t> puts{0};
  };

  std::uint64_t Sum(std::atomic<std::uint64_t> Slot::*counter) const noexcept {
    std::uint64_t n = 0;
    for (const Slot& slot : slots_) {
      n += (slot.*counter).load(std::memory_order_relaxed);
    }
    return n;
  }

  Slot slots_[kSlots];
};

}  // namespace internal
}  // namespace bsalloc

#endif  // BSALLOC_SLOT_CACHE_H_
