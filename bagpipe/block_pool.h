// block_pool: a process-wide, type-stable pool of fixed-size blocks that are
// recycled through epoch-based reclamation. Internal to bagpipe.
//
// bsalloc hands out whole pages, and mapping a page for every 2 KiB FAA
// segment or 16-byte stack node would dominate the cost of the structures. So
// small blocks are carved from 64 KiB bsalloc chunks and, once retired and past
// their grace period, go back to a free list here instead of to bsalloc. The
// memory is never returned to the system: the pool holds at most the peak
// number of blocks that were live or in limbo at once.
//
// Fresh blocks are carved from the newest chunk one at a time, on demand,
// not linked into the free list when the chunk is mapped: linking writes
// every block's header, which made a whole 64 KiB chunk resident as soon as
// its first block was taken (two pools in a process that used ten FAA
// segments: 128 KiB resident for 25 KiB of blocks). `fresh_` packs the
// next uncarved block's address (cache-line aligned, below 2^48: 42
// significant bits) with the number of blocks left in its chunk (22
// bits); Get takes a block by one CAS that moves it a stride forward and
// counts one down. Its values never repeat (addresses only grow within a
// chunk and chunks are never unmapped), so the CAS has no ABA case. A
// thread that maps a chunk while `fresh_` is not exhausted (another thread
// installed one first) links its own chunk into the free list instead, as
// every chunk used to be.
//
// Free-list protocol: a Treiber stack of block headers linked through the
// atomic `pool_next`. Pops happen only while pinned (Get pins); pushes happen
// only from the epoch collector, i.e. a block re-enters the list only after a
// grace period that began after it was last popped. So while a popper is
// pinned holding `top` and `top->pool_next`, `top` cannot be popped, reused,
// retired *and pushed back* (that would need the epoch to advance twice past
// the popper's pin): the classic ABA case cannot happen, and a successful CAS
// from `top` to the `next` it read is correct. Fresh chunks are pushed as a
// private pre-linked chain, which has no ABA exposure either. The header is
// never touched by block users, so a stale popper's read of `pool_next` never
// races with a new owner's writes to the payload.
#ifndef BAGPIPE_BLOCK_POOL_H_
#define BAGPIPE_BLOCK_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "absl/base/attributes.h"
#include "bagpipe/epoch.h"
#include "bsalloc/bsalloc.h"

#if defined(ADDRESS_SANITIZER)
#include <sanitizer/asan_interface.h>
#define BAGPIPE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define BAGPIPE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BAGPIPE_POISON(p, n) ((void)(p), (void)(n))
#define BAGPIPE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace bagpipe {
namespace internal {

inline constexpr std::size_t kCacheLine = 64;

// An atomic that owns a whole cache line *relative to its neighbours* without
// raising the alignment of the enclosing class: queue objects may live on the
// stack, where GCC's ASan fake stack (detect_stack_use_after_return) does not
// honour alignas(64). Consecutive PaddedAtomics never share a cache line
// whatever the base address.
template <class T>
struct PaddedAtomic {
  std::atomic<T> v;
  char pad[kCacheLine - sizeof(std::atomic<T>)];
  constexpr PaddedAtomic() noexcept : v(), pad() {}
  constexpr explicit PaddedAtomic(T init) noexcept : v(init), pad() {}
};

struct alignas(kCacheLine) BlockHeader {
  std::atomic<BlockHeader*> pool_next{nullptr};
  epoch::RetireNode retire;
};
static_assert(sizeof(BlockHeader) == kCacheLine);

// Blocks of at least kPayload bytes, aligned to kCacheLine. One pool (one
// global free list) per payload size.
template <std::size_t kPayload>
class BlockPool {
 public:
  static constexpr std::size_t kStride =
      sizeof(BlockHeader) +
      (kPayload + kCacheLine - 1) / kCacheLine * kCacheLine;
  static constexpr std::size_t kChunkBytes =
      kStride * 8 > (64u << 10) ? kStride * 8 : (64u << 10);
  static constexpr std::size_t kBlocksPerChunk = kChunkBytes / kStride;
  static_assert(kBlocksPerChunk < (std::size_t{1} << 22));

  // Returns an uninitialised, cache-line aligned payload, or nullptr if memory
  // is exhausted.
  static void* Get() noexcept {
    epoch::Guard g;
    if (!g.ok()) return nullptr;
    BlockHeader* top = head_.load(std::memory_order_acquire);
    while (top != nullptr) {
      BlockHeader* next = top->pool_next.load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(top, next, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
        void* p = Payload(top);
        BAGPIPE_UNPOISON(p, kPayload);
        return p;
      }
    }
    if (void* p = Carve()) return p;
    return Refill();
  }

  // Recycles `payload` (from Get) after an epoch grace period of `grace`.
  // REQUIRES: the block is unreachable from the structure's roots.
  static void Retire(void* payload, std::uint64_t grace) noexcept {
    BlockHeader* h = HeaderOf(payload);
    h->retire.free_fn = &Recycle;
    epoch::Retire(&h->retire, grace);
  }

  // There is deliberately no "put back now": even a block that was never
  // published must wait out a grace period, or a popper that read it as `top`
  // before it was handed out could see it reappear (ABA).

 private:
  static void* Payload(BlockHeader* h) noexcept {
    return reinterpret_cast<char*>(h) + sizeof(BlockHeader);
  }
  static BlockHeader* HeaderOf(void* payload) noexcept {
    return reinterpret_cast<BlockHeader*>(static_cast<char*>(payload) -
                                          sizeof(BlockHeader));
  }
  static void Recycle(epoch::RetireNode* n) noexcept {
    Push(reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(n) -
                                        offsetof(BlockHeader, retire)));
  }
  static void Push(BlockHeader* h) noexcept {
    BAGPIPE_POISON(Payload(h), kPayload);
    PushChain(h, h);
  }
  static void PushChain(BlockHeader* first, BlockHeader* last) noexcept {
    BlockHeader* old = head_.load(std::memory_order_relaxed);
    do {
      last->pool_next.store(old, std::memory_order_relaxed);
    } while (!head_.compare_exchange_weak(old, first,
                                          std::memory_order_release,
                                          std::memory_order_relaxed));
  }
  // `fresh_` (see the file comment): the block at `addr`, `left` blocks
  // (this one included) uncarved in its chunk.
  static constexpr unsigned kLeftBits = 22;
  static std::uint64_t Fresh(const char* addr, std::size_t left) noexcept {
    return left == 0 ? 0
                     : (reinterpret_cast<std::uint64_t>(addr) >> 6)
                               << kLeftBits |
                           left;
  }
  // The next uncarved block of the newest chunk, or nullptr.
  static void* Carve() noexcept {
    std::uint64_t v = fresh_.load(std::memory_order_acquire);
    while (v != 0) {
      char* const addr = reinterpret_cast<char*>((v >> kLeftBits) << 6);
      const std::size_t left = v & ((std::uint64_t{1} << kLeftBits) - 1);
      if (fresh_.compare_exchange_weak(v, Fresh(addr + kStride, left - 1),
                                       std::memory_order_acquire,
                                       std::memory_order_acquire)) {
        return Payload(new (addr) BlockHeader());
      }
    }
    return nullptr;
  }
  static void* Refill() noexcept {
    // bsalloc blocks are page aligned, hence cache-line aligned.
    char* chunk = static_cast<char*>(bsalloc::Allocate(kChunkBytes));
    if (chunk == nullptr) return nullptr;
    // The rest of the chunk is carved on demand, unless another thread
    // installed a chunk meanwhile (then this one is linked up front).
    std::uint64_t expected = 0;
    if ((reinterpret_cast<std::uintptr_t>(chunk) >> 48) == 0 &&
        fresh_.compare_exchange_strong(
            expected, Fresh(chunk + kStride, kBlocksPerChunk - 1),
            std::memory_order_release, std::memory_order_relaxed)) {
      return Payload(new (chunk) BlockHeader());
    }
    BlockHeader* first = nullptr;
    BlockHeader* prev = nullptr;
    for (std::size_t i = 1; i < kBlocksPerChunk; ++i) {
      BlockHeader* h = new (chunk + i * kStride) BlockHeader();
      BAGPIPE_POISON(Payload(h), kPayload);
      if (prev == nullptr) {
        first = h;
      } else {
        prev->pool_next.store(h, std::memory_order_relaxed);
      }
      prev = h;
    }
    if (first != nullptr) PushChain(first, prev);
    return Payload(new (chunk) BlockHeader());
  }

  ABSL_CONST_INIT static inline std::atomic<BlockHeader*> head_{nullptr};
  ABSL_CONST_INIT static inline std::atomic<std::uint64_t> fresh_{0};
};

}  // namespace internal
}  // namespace bagpipe

#endif  // BAGPIPE_BLOCK_POOL_H_
