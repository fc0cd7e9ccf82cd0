// bsalloc: implementation of the bootstrap allocator declared in bsalloc.h.
//
// Three routes, chosen from the request size alone (there are no headers, so
// Deallocate/Reallocate recompute the route from the size the caller passes):
//  * small  (size <= kSmallMaxSize):  one kSmallMaxSize mapping per block,
//  * medium (size <= kMediumMaxSize): one kMediumMaxSize mapping per block,
//    each with a global SlotCache (slot_cache.h) of freed blocks,
//  * direct (larger): one mapping of exactly the page-rounded size, unmapped on
//    free.
//
// Why these classes (the reference used 1 KiB objects on whole pages and an
// 18 KiB class on 20 KiB mappings): a mapping is page-granular anyway, so the
// small class takes everything that fits in one page instead of wasting 3 KiB
// of each page it maps. 32 KiB (8 pages) for the medium class covers the
// larger metadata records of elfmalloc and bagpipe's big segments while
// bounding the internal waste of a 4 KiB + 1 byte request to 7 untouched -
// hence never committed - pages. Why these slot counts: the small class serves
// most metadata churn (queue segments, epoch garbage), so it gets 32 slots;
// the medium class 8. Together the caches pin at most 384 KiB, which is the
// price of avoiding an mmap/munmap pair per allocation for the common churn.
//
// Global state is a handful of constant-initialised (ABSL_CONST_INIT) atomics:
// no constructor runs, so bsalloc works before main, from any thread, and in
// a malloc replacement. There is no thread-local storage; the cache probe order
// is seeded from the caller's stack address instead.
//
// Statistics are split by cost. Per-block hot-path events (cache takes and
// puts) are counted inside the cache slot's own cache line, which the thread
// owns at that moment anyway. Everything else (misses, unmaps, mapped bytes)
// happens next to a system call and uses shared relaxed counters.
#include "bsalloc/bsalloc.h"

#include <errno.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/base/attributes.h"
#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"
#include "bsalloc/slot_cache.h"
#include "mmap_alloc/mmap_alloc.h"

namespace bsalloc {
namespace {

static_assert(kSmallMaxSize <= kMediumMaxSize);
static_assert(kAlignment > 0 && (kAlignment & (kAlignment - 1)) == 0);

enum class Route { kSmall, kMedium, kDirect };

constexpr Route RouteOf(std::size_t size) {
  if (size <= kSmallMaxSize) return Route::kSmall;
  if (size <= kMediumMaxSize) return Route::kMedium;
  return Route::kDirect;
}

// One size class: its cache plus the counters for its slow paths (a cache
// miss is followed by an mmap, a rejected park by an munmap, so a shared
// counter costs nothing measurable there). The counters sit on their own cache
// line so that updating them does not disturb the slots.
template <std::size_t kSlots>
struct SizeClass {
  internal::SlotCache<kSlots> cache;
  alignas(ABSL_CACHELINE_SIZE) std::atomic<std::uint64_t> misses{0};
  std::atomic<std::uint64_t> unmapped_frees{0};
};

// Process-wide counters for the mapping layer. All relaxed: they are
// statistics, nothing is ordered by them.
struct alignas(ABSL_CACHELINE_SIZE) Counters {
  std::atomic<std::size_t> mapped_bytes{0};
  std::atomic<std::uint64_t> map_calls{0};
  std::atomic<std::uint64_t> unmap_calls{0};
  std::atomic<std::uint64_t> failed_allocations{0};
  std::atomic<std::uint64_t> unmap_failures{0};
  std::atomic<std::uint64_t> direct_allocations{0};
  std::atomic<std::uint64_t> direct_deallocations{0};
};

ABSL_CONST_INIT SizeClass<kSmallCacheSlots> g_small;
ABSL_CONST_INIT SizeClass<kMediumCacheSlots> g_medium;
ABSL_CONST_INIT Counters g_counters;

// The probe hint for the caches: the caller's stack address. It needs no
// thread-local storage (which may allocate on first use in a shared object),
// is stable for a thread and differs between threads, whose stacks are at
// least a guard page plus a stack apart. Only a hint: any value is correct.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::uintptr_t StackHint() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

// The number of bytes a mapping of `size` bytes really occupies.
// REQUIRES: size <= kMaxSize, so the rounding cannot overflow.
std::size_t PageRound(std::size_t size) {
  const std::size_t mask = mmap_alloc::PageSize() - 1;
  return (size + mask) & ~mask;
}

void CountFailure() {
  g_counters.failed_allocations.fetch_add(1, std::memory_order_relaxed);
  errno = ENOMEM;
}

// Maps a fresh zero-filled block of `size` bytes; nullptr + ENOMEM on failure
// (mmap_alloc reports EINVAL/ENOMEM; our callers only ever see ENOMEM).
void* MapBlock(std::size_t size) {
  void* p = mmap_alloc::Map(size);
  if (ABSL_PREDICT_FALSE(p == nullptr)) {
    CountFailure();
    return nullptr;
  }
  g_counters.map_calls.fetch_add(1, std::memory_order_relaxed);
  g_counters.mapped_bytes.fetch_add(PageRound(size), std::memory_order_relaxed);
  return p;
}

// Unmaps [p, p + size). On failure the range stays mapped (leaked unless the
// caller recovers) and is counted. errno is preserved either way.
bool UnmapBlock(void* p, std::size_t size) {
  const int saved_errno = errno;
  const bool ok = mmap_alloc::Unmap(p, size);
  if (ABSL_PREDICT_TRUE(ok)) {
    g_counters.unmap_calls.fetch_add(1, std::memory_order_relaxed);
    g_counters.mapped_bytes.fetch_sub(PageRound(size),
                                      std::memory_order_relaxed);
  } else {
    g_counters.unmap_failures.fetch_add(1, std::memory_order_relaxed);
  }
  errno = saved_errno;
  return ok;
}

template <std::size_t kSlots>
void* AllocateFromClass(SizeClass<kSlots>& c, std::size_t block_size,
                        std::uintptr_t hint) {
  if (void* p = c.cache.TryTake(hint); ABSL_PREDICT_TRUE(p != nullptr)) {
    return p;
  }
  c.misses.fetch_add(1, std::memory_order_relaxed);
  return MapBlock(block_size);
}

template <std::size_t kSlots>
void DeallocateToClass(SizeClass<kSlots>& c, void* p, std::size_t block_size,
                       std::uintptr_t hint) {
  if (ABSL_PREDICT_TRUE(c.cache.TryPut(p, hint))) return;
  c.unmapped_frees.fetch_add(1, std::memory_order_relaxed);
  UnmapBlock(p, block_size);
}

void* AllocateDirect(std::size_t size) {
  if (ABSL_PREDICT_FALSE(size > kMaxSize)) {
    CountFailure();
    return nullptr;
  }
  void* p = MapBlock(size);
  if (p != nullptr) {
    g_counters.direct_allocations.fetch_add(1, std::memory_order_relaxed);
  }
  return p;
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieOfBadFree(
    const void* p, std::size_t size) {
  ABSL_RAW_LOG(FATAL,
               "bsalloc::Deallocate(%p, %zu): not a bsalloc block (bsalloc "
               "blocks are %zu-aligned and at most %zu bytes)",
               p, size, kAlignment, kMaxSize);
  std::abort();  // ABSL_RAW_LOG(FATAL) aborts; this tells the compiler.
}

template <std::size_t kSlots>
std::size_t DrainClass(SizeClass<kSlots>& c, std::size_t block_size) {
  std::size_t released = 0;
  while (void* p = c.cache.TakeAny()) {
    if (UnmapBlock(p, block_size)) released += PageRound(block_size);
  }
  return released;
}

template <std::size_t kSlots>
ClassStats ReadClass(const SizeClass<kSlots>& c, std::size_t block_size) {
  ClassStats s;
  s.block_size = PageRound(block_size);
  s.cache_slots = kSlots;
  s.cached_blocks = c.cache.CachedBlocks();
  s.cache_hits = c.cache.Takes();
  s.allocations = s.cache_hits + c.misses.load(std::memory_order_relaxed);
  s.cache_puts = c.cache.Puts();
  s.deallocations =
      s.cache_puts + c.unmapped_frees.load(std::memory_order_relaxed);
  return s;
}

}  // namespace

void* Allocate(std::size_t size) noexcept {
  switch (RouteOf(size)) {
    case Route::kSmall:
      return AllocateFromClass(g_small, kSmallMaxSize, StackHint());
    case Route::kMedium:
      return AllocateFromClass(g_medium, kMediumMaxSize, StackHint());
    case Route::kDirect:
      break;
  }
  return AllocateDirect(size);
}

void Deallocate(void* p, std::size_t size) noexcept {
  if (p == nullptr) return;
  // Cheap misuse check: parking a foreign pointer in a cache would hand it out
  // again later and corrupt someone else's memory, far from the bug.
  if (ABSL_PREDICT_FALSE(
          (reinterpret_cast<std::uintptr_t>(p) & (kAlignment - 1)) != 0 ||
          size > kMaxSize)) {
    DieOfBadFree(p, size);
  }
  switch (RouteOf(size)) {
    case Route::kSmall:
      DeallocateToClass(g_small, p, kSmallMaxSize, StackHint());
      return;
    case Route::kMedium:
      DeallocateToClass(g_medium, p, kMediumMaxSize, StackHint());
      return;
    case Route::kDirect:
      break;
  }
  g_counters.direct_deallocations.fetch_add(1, std::memory_order_relaxed);
  UnmapBlock(p, size);
}

void* Reallocate(void* p, std::size_t old_size, std::size_t new_size) noexcept {
  if (p == nullptr) return Allocate(new_size);
  const Route from = RouteOf(old_size);
  const Route to = RouteOf(new_size);
  if (from == to && from != Route::kDirect) return p;  // same block size
  if (from == Route::kDirect && to == Route::kDirect && new_size <= kMaxSize &&
      old_size <= kMaxSize) {
    const std::size_t old_len = PageRound(old_size);
    const std::size_t new_len = PageRound(new_size);
    if (new_len == old_len) return p;
    // Shrinking: give the tail back instead of copying. new_len is a whole
    // number of pages, so the tail starts page-aligned. If the kernel refuses
    // (it cannot split the mapping) the block is intact; copy instead.
    if (new_len < old_len &&
        UnmapBlock(static_cast<char*>(p) + new_len, old_len - new_len)) {
      return p;
    }
  }
  void* q = Allocate(new_size);
  if (ABSL_PREDICT_FALSE(q == nullptr)) return nullptr;  // errno = ENOMEM
  std::memcpy(q, p, old_size < new_size ? old_size : new_size);
  Deallocate(p, old_size);
  return q;
}

std::size_t UsableSize(std::size_t size) noexcept {
  switch (RouteOf(size)) {
    case Route::kSmall:
      return kSmallMaxSize;
    case Route::kMedium:
      return kMediumMaxSize;
    case Route::kDirect:
      break;
  }
  return size > kMaxSize ? 0 : PageRound(size);
}

std::size_t ReleaseCachedMemory() noexcept {
  return DrainClass(g_small, kSmallMaxSize) +
         DrainClass(g_medium, kMediumMaxSize);
}

Stats GetStats() noexcept {
  Stats s;
  s.mapped_bytes = g_counters.mapped_bytes.load(std::memory_order_relaxed);
  s.map_calls = g_counters.map_calls.load(std::memory_order_relaxed);
  s.unmap_calls = g_counters.unmap_calls.load(std::memory_order_relaxed);
  s.failed_allocations =
      g_counters.failed_allocations.load(std::memory_order_relaxed);
  s.unmap_failures = g_counters.unmap_failures.load(std::memory_order_relaxed);
  s.small = ReadClass(g_small, kSmallMaxSize);
  s.medium = ReadClass(g_medium, kMediumMaxSize);
  s.direct_allocations =
      g_counters.direct_allocations.load(std::memory_order_relaxed);
  s.direct_deallocations =
      g_counters.direct_deallocations.load(std::memory_order_relaxed);
  return s;
}

namespace internal {

void DieOfAllocatorFailure(std::size_t count,
                           std::size_t object_size) noexcept {
  ABSL_RAW_LOG(FATAL,
               "bsalloc::Allocator: cannot allocate %zu objects of %zu bytes "
               "(out of memory, or the size overflows); standard containers "
               "cannot recover from allocation failure, so aborting",
               count, object_size);
  std::abort();  // ABSL_RAW_LOG(FATAL) aborts; this tells the compiler.
}

}  // namespace internal
}  // namespace bsalloc
