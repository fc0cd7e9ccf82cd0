// AllocType: the stamp that classifies any elfmalloc pointer without a global
// ownership map.
//
// Invariant (maintained by the page allocators and the large allocator): for
// every pointer p that elfmalloc hands out, the word at round_down(p - 1,
// kStampAlignment) holds the AllocType of the memory p lies in:
//   * medium (2 MiB) slabs sit on 2 MiB boundaries and their header's first
//     field is the stamp;
//   * small (64 KiB) slabs are carved in 2 MiB-aligned groups of 32 whose first
//     slab's header (hence the stamp) sits on the boundary, and every small
//     slab's header starts with the same stamp;
//   * large allocations put a header holding the stamp 2 MiB before the user
//     pointer.
// The "- 1" makes a pointer that is itself 2 MiB-aligned (a large object)
// read the header before it. Fresh mmap memory is zero, so 0 is reserved for
// "not stamped".
//
// The stamp is read and written with relaxed atomics: a slab header may be
// re-initialised (rewriting the same stamp) while another thread classifies a
// pointer into a sibling slab of the same 2 MiB group. The value never
// changes while any object under it is live, so relaxed suffices.
#ifndef ELFMALLOC_ALLOC_TYPE_H_
#define ELFMALLOC_ALLOC_TYPE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

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

namespace internal {
inline std::atomic<AllocType>* StampAt(std::uintptr_t addr) noexcept {
  return reinterpret_cast<std::atomic<AllocType>*>(addr);
}
}  // namespace internal

// Writes the stamp at the start of a kStampAlignment-aligned region.
inline void WriteAllocType(void* region, AllocType type) noexcept {
  internal::StampAt(reinterpret_cast<std::uintptr_t>(region))
      ->store(type, std::memory_order_relaxed);
}

// The stamp governing p, read at round_down(p - 1, kStampAlignment).
// Precondition: p was handed out by elfmalloc (or lies in a stamped region).
inline AllocType ReadAllocType(const void* p) noexcept {
  const std::uintptr_t a =
      (reinterpret_cast<std::uintptr_t>(p) - 1) & ~(kStampAlignment - 1);
  return internal::StampAt(a)->load(std::memory_order_relaxed);
}

}  // namespace elfmalloc

#endif  // ELFMALLOC_ALLOC_TYPE_H_
