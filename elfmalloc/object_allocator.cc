// Object allocators: default page size, page allocator options and the
// per-thread handle cache behind the thread-safe entry points. See
// object_allocator.h.
#include "elfmalloc/object_allocator.h"

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/numeric/bits.h"
#include "elfmalloc/alloc_type.h"

namespace elfmalloc {

std::size_t DefaultObjectPageSize(std::size_t object_size) noexcept {
  constexpr std::size_t kMin = std::size_t{32} << 10;
  const std::size_t want = object_size > kMin / 4 ? 4 * object_size : kMin;
  return absl::bit_ceil(want);
}

namespace internal {
namespace {

// A handful of entries: a thread rarely uses more than a few allocators
// through the thread-safe entry points at once; a miss costs a locked scan
// of the allocator's registry.
constexpr int kCacheEntries = 4;
struct CacheEntry {
  std::uint64_t serial;  // 0: empty
  void* handle;
};
ABSL_CONST_INIT thread_local CacheEntry tls_cache[kCacheEntries] = {};
ABSL_CONST_INIT thread_local int tls_next = 0;

ABSL_CONST_INIT std::atomic<std::uint64_t> next_serial{1};

}  // namespace

void* CachedThreadHandle(std::uint64_t serial) noexcept {
  for (const CacheEntry& e : tls_cache) {
    if (e.serial == serial) return e.handle;
  }
  return nullptr;
}

void CacheThreadHandle(std::uint64_t serial, void* handle) noexcept {
  tls_cache[tls_next] = CacheEntry{serial, handle};
  tls_next = (tls_next + 1) % kCacheEntries;
}

const void* ThreadKey() noexcept { return &tls_next; }

std::uint64_t NextAllocatorSerial() noexcept {
  return next_serial.fetch_add(1, std::memory_order_relaxed);
}

PageAlloc::Options ObjectPageOptions(std::size_t object_size,
                                     const ObjectAllocatorOptions& o) noexcept {
  PageAlloc::Options p;
  p.page_size =
      o.page_size != 0 ? o.page_size : DefaultObjectPageSize(object_size);
  // Nothing classifies these pointers; the stamp only keeps the page
  // allocator's invariant (first word = stamp) meaningful.
  p.type = p.page_size < kStampAlignment ? AllocType::kSmallSlab
                                         : AllocType::kMediumSlab;
  p.pages_per_refill = 0;  // 2 MiB worth
  p.max_dirty_bytes = o.max_dirty_bytes;
  p.dirty_queues = o.dirty_queues;
  return p;
}

}  // namespace internal
}  // namespace elfmalloc
