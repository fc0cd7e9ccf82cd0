// Large allocations: requests above the largest size class (256 KiB), each
// in its own mmap_alloc mapping (the reference's large_alloc, allocators-rs
// elfmalloc general.rs), classifiable by the AllocType stamp like every other
// elfmalloc pointer, and a cache of freed mappings for reuse.
//
// Layout of one large allocation with alignment A (A <= page means "page"):
//
//   base                      user pointer u = base + H
//   |<----- H header space ---->|<------ round_up(size, page) ------>|
//   [LargeHeader at round_down(u - 1, 2 MiB)]
//
// where H = max(page, A) and the mapping itself is aligned to M = max(A,
// 2 MiB). Then u is A-aligned, and round_down(u - 1, 2 MiB) is base when
// A <= 2 MiB and u - 2 MiB otherwise (A a multiple of 2 MiB): in both cases
// a header address inside the header space, so ReadAllocType(u) reads
// AllocType::kLarge and free classifies u without a global map. Only the
// header's OS page is ever touched; the rest of the header space costs
// address space, not memory. (The reference always added 2 MiB and mapped at
// 64 KiB alignment; for the common A <= page case we waste one page instead.)
//
// QUIRK fixed: the reference did not round the mapping to the page size (its
// TODO); here the region is H + round_up(size, page) and the usable size is
// the page-rounded size, which callers may use in full.
//
// Reallocation keeps contents and the alignment: mmap_alloc::Remap (mremap)
// grows or shrinks the mapping, moving pages rather than copying them, with
// the mapping alignment M; if the kernel refuses, a new region is mapped and
// the contents copied.
//
// Reuse: a freed block with the default layout (alignment up to a page) is
// not unmapped but kept, whole and committed, in a small cache (32 regions,
// at most max(the configured cap, twice the bytes of live large blocks) in
// all: SetLargeCacheLimits; the general allocator sets it from the options
// table, ELFMALLOC_LARGE_CACHE_MB, when its heap is built, and until then
// the cache is off). An
// allocation first looks there: a region within an eighth above the size
// needed is used as it is; a larger one is split at the next 2 MiB
// boundary past the size, the remainder staying cached with its committed
// pages (or, if less than 2 MiB would remain, cut to size by a munmap of its
// tail); a smaller one is grown by mremap (its pages come along, only the
// new part faults in). Splitting instead of cutting matters to programs
// whose block sizes vary: with cuts, every region shrank to the last size
// asked of it and the next bigger request faulted its pages in again (blocks
// of 1-16 MiB, every page written: 400 operations/s, tcmalloc 28,000). In steady state a program that allocates and frees
// blocks of a few MiB makes no system call and takes no page fault (each
// block used to cost an aligned mmap, a fault per page and a munmap: a
// Python loop building 1.1 MB bytearrays ran 60x slower than under glibc,
// whose heap keeps such blocks). Policy, the same as the page allocators'
// dirty pages (page_alloc.h, "Memory return"): a cap (the oldest regions
// are unmapped to make room; a block above the cap is never cached) and a
// decay period (a region nobody reused for a whole period is unmapped at
// the next large-block operation or magazine refill, LargeCacheDecay(), or
// by malloc_trim's LargeCacheRelease()). Regions are unmapped, not only uncommitted, so the
// address space comes back too. A failed mapping releases the cache and
// tries once more (under RLIMIT_AS the cache may hold exactly what is
// missing).
//
// Threads: every function is thread-safe. The cache is guarded by a
// SpinLock never held across a system call; the rest is statistics
// counters. Failure is a value: nullptr with errno = ENOMEM (EINVAL for an
// alignment that is not a power of two). Never calls malloc.
#ifndef ELFMALLOC_LARGE_ALLOC_H_
#define ELFMALLOC_LARGE_ALLOC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "elfmalloc/alloc_type.h"

namespace elfmalloc {

// The header of a large allocation. `type` must stay the first field (it is
// the stamp, alloc_type.h).
struct LargeHeader {
  std::atomic<AllocType> type;  // AllocType::kLarge
  void* base;                   // start of the mapping
  std::size_t region_size;      // bytes mapped (page multiple)
  std::size_t requested;        // the size the caller asked for
  std::size_t header_space;     // H: u - base
  std::size_t map_align;        // M: the mapping's alignment
};

// A block of at least `size` bytes aligned to max(align, OS page), or nullptr
// (errno ENOMEM; EINVAL if align is not 0 or a power of two). Any size works,
// including sizes <= 1 MiB (the general allocator uses it for those only when
// the alignment demands it).
void* LargeAlloc(std::size_t size, std::size_t align = 0) noexcept;

// As LargeAlloc(size) with the first `size` bytes zero: a fresh mapping is
// not written (the kernel's pages are zero and stay untouched until used);
// only a reused region is cleared. calloc's large path.
void* LargeAllocZeroed(std::size_t size) noexcept;

// Frees a block from LargeAlloc / LargeRealloc: cached for reuse or
// unmapped (see "Reuse"). nullptr is a no-op.
void LargeFree(void* p) noexcept;

// The bytes usable at p (the requested size rounded up to the OS page).
std::size_t LargeUsableSize(const void* p) noexcept;
// The size most recently requested for p.
std::size_t LargeRequestedSize(const void* p) noexcept;

// Resizes p to new_size bytes keeping the first min(old, new) bytes and the
// alignment. Returns the (possibly moved) block, or nullptr with errno set,
// in which case p is untouched and still valid.
void* LargeRealloc(void* p, std::size_t new_size) noexcept;

// The header governing p (a pointer from LargeAlloc).
inline LargeHeader* LargeHeaderOf(const void* p) noexcept {
  return reinterpret_cast<LargeHeader*>(
      (reinterpret_cast<std::uintptr_t>(p) - 1) & ~(kStampAlignment - 1));
}

// The cache's cap in bytes (0, the initial value, disables caching) and
// decay period in milliseconds (0: regions stay until evicted by the cap or
// released).
// Lowering the cap below what is cached releases the cache.
void SetLargeCacheLimits(std::size_t max_bytes,
                         std::uint64_t decay_ms) noexcept;
// Unmaps every cached region; returns the bytes unmapped (malloc_trim).
std::size_t LargeCacheRelease() noexcept;
// Unmaps the regions cached for a whole decay period; returns the bytes.
// Cheap until a region expires (one relaxed load when the cache is empty,
// a vDSO clock read and a compare otherwise): the general allocator calls
// it on every magazine refill, so that a program that stops using large
// blocks gets their memory back while it keeps allocating small ones.
std::size_t LargeCacheDecay() noexcept;
// fork(): the cache lock is held across it (pthread_atfork handlers of the
// general allocator) so that the child never inherits it locked.
void LargeCachePreFork() noexcept;
void LargeCachePostFork() noexcept;

struct LargeStats {
  std::size_t mapped_bytes;  // live large blocks' regions, headers included
  std::size_t allocations;   // live large allocations
  std::size_t cached_bytes;  // free regions kept for reuse (committed)
  std::size_t reuses;        // allocations served from the cache so far
};
LargeStats GetLargeStats() noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_LARGE_ALLOC_H_
