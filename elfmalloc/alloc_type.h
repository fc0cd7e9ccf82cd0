// The region header: what `free` reads to classify a pointer, and the only
// code that writes it.
//
// Every pointer elfmalloc hands out lies in a 2 MiB-aligned region
// (kStampAlignment) whose first 40 bytes are a RegionHeader:
//   * `type`, the stamp: the AllocType of the memory in the region (a
//     small-slab group, a medium slab, a large block or a freed one);
//   * `tags`, for slab regions: byte i is the tag (the general allocator's
//     size class + 1) of the slab covering [i * 64 KiB, (i + 1) * 64 KiB) of
//     the region; a 2 MiB slab writes all 32.
// A free therefore classifies p with one cache line, round_down(p - 1,
// 2 MiB) (ReadAllocType, ReadRegionTag), and no dependent load of the slab's
// or block's own header. The "- 1" makes a pointer that is itself 2 MiB
// aligned (a large block's user pointer at a unit boundary + 0 never
// happens, but a block may end there) read the region it starts in.
//
// One owner: the functions below are the only writers. The page allocators
// stamp the regions they carve (WriteAllocType), Slab::Init re-stamps its
// page and writes its tag bytes (WriteRegionTags), and the large-block heap
// stamps a block's header kLarge when it hands the block out and kFreedLarge
// when it takes it back. The structures that live at a region's start embed
// a RegionHeader as their first member (Slab, LargeHeader) and never touch
// it themselves.
//
// Invariants the writers keep:
//   * The stamp of a region never changes while any object under it is
//     live, and is only ever stored atomically (never constructed or
//     cleared): a slab header may be re-initialised (rewriting the same
//     stamp) while another thread classifies a pointer into a sibling slab
//     of the same group, so it must never read as anything else, not even
//     transiently. Relaxed atomics suffice.
//   * A slab's tag bytes are written only by its Init, before any of its
//     objects exist; every free of an object happens after the object's
//     allocation, which happens after that Init (the owner allocates from
//     the slab it initialised; others get objects through synchronisation
//     with it). Each byte is its own relaxed atomic, so writers of sibling
//     slabs never disturb each other (no read-modify-write of a shared
//     word), and nobody rewrites a sibling's bytes.
//   * The region header's OS page is never uncommitted while the region is
//     carved (the page allocators keep the first OS page of every 2 MiB
//     boundary committed, page_alloc.h), so stamps and tags survive purges.
//   * Fresh mmap memory is zero, so 0 is reserved for "not stamped"
//     (kUnstamped) and tag 0 names nothing.
#ifndef ELFMALLOC_ALLOC_TYPE_H_
#define ELFMALLOC_ALLOC_TYPE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

enum class AllocType : std::uint64_t {
  kUnstamped = 0,  // fresh, zeroed memory
  kSmallSlab = 1,  // a slab on a 64 KiB page
  kMediumSlab = 2,  // a slab on a 2 MiB page
  kLarge = 3,      // an individually mapped large allocation
  // A freed large block whose units are free in the large-block heap
  // (large_alloc.h): freeing it again is a double free, reported as such.
  kFreedLarge = 4,
};

inline constexpr std::size_t kStampAlignment = std::size_t{2} << 20;  // 2 MiB

static_assert(std::atomic<AllocType>::is_always_lock_free);
static_assert(sizeof(std::atomic<AllocType>) == sizeof(AllocType));

// The granule of the tag table and its size.
inline constexpr std::size_t kTagGranule = std::size_t{64} << 10;  // 64 KiB
inline constexpr std::size_t kRegionTags = kStampAlignment / kTagGranule;

// The header at the start of a region (see above). Embedded as the first
// member of the structures that live there; written only by the functions
// below. Never constructed or cleared: fresh mappings are zero.
struct RegionHeader {
  std::atomic<AllocType> type;
  std::atomic<std::uint8_t> tags[kRegionTags];
};
static_assert(sizeof(RegionHeader) == 40);

namespace internal {
inline RegionHeader* HeaderAt(std::uintptr_t region) noexcept {
  return reinterpret_cast<RegionHeader*>(region);
}
// The region p lies in (see "- 1" above).
inline std::uintptr_t RegionOf(const void* p) noexcept {
  return (reinterpret_cast<std::uintptr_t>(p) - 1) & ~(kStampAlignment - 1);
}
}  // namespace internal

// Writes the stamp of the region starting at `region` (2 MiB aligned, or
// a large block's header: the start of the unit its block begins in).
inline void WriteAllocType(void* region, AllocType type) noexcept {
  internal::HeaderAt(reinterpret_cast<std::uintptr_t>(region))
      ->type.store(type, std::memory_order_relaxed);
}

// Writes `tag` into the tag bytes of the slab [page, page + bytes), which
// lies in one region (bytes a multiple of kTagGranule, at most 2 MiB).
inline void WriteRegionTags(void* page, std::size_t bytes,
                            std::uint8_t tag) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(page);
  RegionHeader* h = internal::HeaderAt(a & ~(kStampAlignment - 1));
  const std::size_t first = (a & (kStampAlignment - 1)) / kTagGranule;
  const std::size_t n = bytes / kTagGranule;
  for (std::size_t i = first; i < first + n && i < kRegionTags; ++i) {
    h->tags[i].store(tag, std::memory_order_relaxed);
  }
}

// The stamp governing p, read at round_down(p - 1, kStampAlignment).
// Precondition: p was handed out by elfmalloc (or lies in a stamped region).
inline AllocType ReadAllocType(const void* p) noexcept {
  return internal::HeaderAt(internal::RegionOf(p))
      ->type.load(std::memory_order_relaxed);
}

// True iff the region header governing p may be read at all: its page is
// mapped readable by this process's mmap_alloc (mmap_alloc's mapping
// registry; every region the page allocators and the large-block heap map
// qualifies). For pointers that may not come from elfmalloc (the checked
// and hardened builds ask before ReadAllocType), so that a pointer into a
// static array or a forged chunk is reported rather than faulting on an
// unmapped 2 MiB boundary.
inline bool RegionIsMapped(const void* p) noexcept {
  static_assert(mmap_alloc::kRegistryGranule == kStampAlignment);
  return mmap_alloc::IsMappedBoundary(
      reinterpret_cast<const void*>(internal::RegionOf(p)));
}

// The tag of the slab holding p, for a p handed out from a tagged slab of at
// least kTagGranule bytes (p - 1 lies in the same slab: objects never start
// at a slab's first byte). The same cache line as ReadAllocType(p).
inline std::uint8_t ReadRegionTag(const void* p) noexcept {
  const std::uintptr_t q = reinterpret_cast<std::uintptr_t>(p) - 1;
  static_assert(kTagGranule == std::size_t{1} << 16);
  return internal::HeaderAt(q & ~(kStampAlignment - 1))
      ->tags[(q >> 16) & (kRegionTags - 1)]
      .load(std::memory_order_relaxed);
}

}  // namespace elfmalloc

#endif  // ELFMALLOC_ALLOC_TYPE_H_
