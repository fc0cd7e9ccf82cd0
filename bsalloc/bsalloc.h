// bsalloc: the bootstrap allocator.
//
// A small, thread-safe, mmap-backed allocator that never calls malloc. It is
// where every other allocator in this repository gets its own metadata (bag
// segments, thread caches, hash maps, epoch garbage): they cannot use malloc,
// because they may *be* malloc. It plays the role of tcmalloc's Arena /
// abseil's LowLevelAlloc, and of the reference's `bsalloc` crate.
//
// Design (see bsalloc.cc and slot_cache.h for the details and the lock-free
// protocol):
//
//   request size            served by                          cache
//   0 .. 4 KiB              a 4 KiB mapping ("small" class)    32 blocks
//   4 KiB+1 .. 32 KiB       a 32 KiB mapping ("medium" class)  8 blocks
//   above 32 KiB            its own mapping (size page-rounded) none
//
// Freed class blocks are parked in a small global lock-free cache and handed
// out again; when the cache is full they are unmapped, so bsalloc never holds
// more than 32 * 4 KiB + 8 * 32 KiB = 384 KiB of idle memory. There are no
// headers: a block is a bare mapping, and the caller supplies the size on
// free, which routes it back (exactly like sized delete). Every block is
// therefore at least a page, which suits bsalloc's users (a few long-lived
// objects and arrays of a page or more) and does *not* suit millions of tiny
// nodes: a std::map<int, int> on bsalloc::Allocator spends 4 KiB per node.
//
// Guarantees:
//  * Every non-null pointer is aligned to the page size, hence to at least
//    kAlignment (4096) on every Linux platform.
//  * Fresh mappings are zero-filled; blocks reused from a cache are not
//    cleared (contents unspecified).
//  * All functions are thread-safe and noexcept and may be called from any
//    thread at any time: before main, inside a malloc replacement, even from
//    a signal handler (there is no lock to deadlock on; mmap/munmap are plain
//    system calls on Linux). They use no locks, no thread-local storage and
//    no static constructors; all state is constant-initialised. The only
//    blocking operations are the mmap/munmap system calls on a cache miss.
//  * Failure is a value: nullptr with errno = ENOMEM. Deallocate never changes
//    errno.
//  * fork() is safe at any point: the caches are plain atomics, consistent in
//    the child whatever the other threads were doing.
#ifndef BSALLOC_BSALLOC_H_
#define BSALLOC_BSALLOC_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace bsalloc {

// The alignment every non-null result of Allocate / Reallocate / Allocator /
// New has (at least; in fact the kernel page size, which is >= 4096).
inline constexpr std::size_t kAlignment = 4096;

// Size-class boundaries (see the table above). Requests of at most
// kSmallMaxSize bytes get a kSmallMaxSize block, requests of at most
// kMediumMaxSize a kMediumMaxSize block. On kernels with pages larger than
// these sizes a class block is one (bigger) page.
inline constexpr std::size_t kSmallMaxSize = 4096;
inline constexpr std::size_t kMediumMaxSize = 32 * 1024;
// Slots in each class's cache: the most blocks it keeps for reuse.
inline constexpr std::size_t kSmallCacheSlots = 32;
inline constexpr std::size_t kMediumCacheSlots = 8;

// Larger requests fail with ENOMEM without a system call (no C++ object may
// exceed PTRDIFF_MAX bytes).
inline constexpr std::size_t kMaxSize =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());

// Returns memory of at least `size` bytes aligned to at least kAlignment (the
// page size), or nullptr with errno = ENOMEM. size 0 is allowed and returns a
// unique pointer (a small-class block). Contents are zero if the block was
// freshly mapped and unspecified if it came from a cache.
void* Allocate(std::size_t size) noexcept;

// Frees memory from Allocate / Reallocate. `size` must be the size passed to
// the call that returned `p` (routing is by size; any size in the same class,
// or for direct mappings any size with the same page-rounded length, works
// too). nullptr is a no-op. A pointer that is not kAlignment-aligned cannot
// have come from bsalloc: Deallocate aborts with a message rather than cache
// it. If the kernel refuses to unmap a block (it cannot split a mapping when
// vm.max_map_count is reached) the block is leaked and counted in
// Stats::unmap_failures. Never changes errno.
void Deallocate(void* p, std::size_t size) noexcept;

// Like realloc, with the old size supplied: returns a block of at least
// new_size bytes holding the first min(old_size, new_size) bytes of `p`.
//  * p == nullptr: Allocate(new_size).
//  * Returns p itself when the block already fits: old and new size in the
//    same class, or both direct with the same page-rounded length. A direct
//    block shrinking to another direct size is trimmed in place (its tail
//    unmapped) and p returned.
//  * Otherwise allocates, copies, and frees p.
//  * On failure returns nullptr with errno = ENOMEM, and p is untouched and
//    still owned by the caller (old_size still describes it).
//  * new_size == 0 is a valid size (like Allocate(0)): it never frees p and
//    returns nullptr only on failure.
void* Reallocate(void* p, std::size_t old_size, std::size_t new_size) noexcept;

// The number of bytes usable in the block that Allocate(size) returns:
// kSmallMaxSize or kMediumMaxSize for the classes, size rounded up to the page
// size for direct mappings, 0 if size > kMaxSize. Writing up to that many
// bytes is fine, and Deallocate / Reallocate accept it as the block's size
// (it routes to the same class or page count as `size`).
std::size_t UsableSize(std::size_t size) noexcept;

// Unmaps every block parked in the caches and returns the number of bytes
// unmapped. Useful before measuring memory, and in tests.
std::size_t ReleaseCachedMemory() noexcept;

// Counters, readable at any time without allocating. Each field is exact when
// no other thread is inside bsalloc; otherwise each is a snapshot taken at a
// slightly different moment.
struct ClassStats {
  std::size_t block_size = 0;       // bytes per block of this class
  std::size_t cache_slots = 0;      // capacity of the class cache
  std::size_t cached_blocks = 0;    // blocks parked in the cache right now
  std::uint64_t allocations = 0;    // Allocate calls routed here (incl. failed)
  std::uint64_t cache_hits = 0;     // ... of which served from the cache
  std::uint64_t deallocations = 0;  // Deallocate calls routed here
  std::uint64_t cache_puts = 0;     // ... of which parked (the rest unmapped)
};

struct Stats {
  // Bytes currently mapped by bsalloc (live and cached blocks), page-rounded.
  std::size_t mapped_bytes = 0;
  std::uint64_t map_calls = 0;    // successful mmaps
  std::uint64_t unmap_calls = 0;  // successful munmaps (incl. tail trims)
  std::uint64_t failed_allocations = 0;  // Allocate/Reallocate -> nullptr
  std::uint64_t unmap_failures = 0;      // munmaps the kernel refused
  ClassStats small;
  ClassStats medium;
  std::uint64_t direct_allocations = 0;    // successful direct mappings
  std::uint64_t direct_deallocations = 0;  // direct blocks freed
};

Stats GetStats() noexcept;

namespace internal {

// Writes an allocation-free message naming the request and aborts. Used by
// Allocator<T>::allocate, whose callers (standard containers) have no way to
// handle failure without exceptions.
[[noreturn]] void DieOfAllocatorFailure(std::size_t count,
                                        std::size_t object_size) noexcept;

}  // namespace internal

// STL allocator adaptor: std::allocator_traits-compatible, stateless, all
// instances equal (memory from one may be freed by any other, of any T).
//
// allocate() never returns null and never throws: if bsalloc cannot map
// memory (or n * sizeof(T) overflows) it writes a message to stderr without
// allocating and aborts the process. Internal containers sit in allocator
// paths that have no exception-safe way to report failure, and a half-updated
// container is worse than a clear crash. Code that can handle failure should
// call Allocate / New instead.
//
// Every allocation is at least one page (see the file comment), so use it for
// vectors and other array-like containers, not for node-per-element
// containers with many elements.
template <class T>
class Allocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::true_type;

  constexpr Allocator() noexcept = default;
  template <class U>
  constexpr Allocator(const Allocator<U>&) noexcept {}  // NOLINT: implicit

  [[nodiscard]] T* allocate(std::size_t n) noexcept {
    // Here rather than in the class body, so that Allocator<T> can be named
    // while T is incomplete (struct Node { std::vector<Node, Allocator<Node>>
    // children; }), as with std::allocator.
    static_assert(alignof(T) <= kAlignment,
                  "bsalloc cannot align beyond kAlignment");
    if (n > kMaxSize / sizeof(T)) {
      internal::DieOfAllocatorFailure(n, sizeof(T));
    }
    void* p = Allocate(n * sizeof(T));
    if (p == nullptr) internal::DieOfAllocatorFailure(n, sizeof(T));
    return static_cast<T*>(p);
  }

  void deallocate(T* p, std::size_t n) noexcept {
    Deallocate(p, n * sizeof(T));
  }

  constexpr std::size_t max_size() const noexcept {
    return kMaxSize / sizeof(T);
  }
};

template <class T, class U>
constexpr bool operator==(const Allocator<T>&, const Allocator<U>&) noexcept {
  return true;
}

// Allocates and constructs one T from `args`. Returns nullptr (errno = ENOMEM)
// if memory is exhausted. If T's constructor throws, the memory is freed and
// the exception propagates.
template <class T, class... A>
[[nodiscard]] T* New(A&&... args) noexcept(
    std::is_nothrow_constructible_v<T, A...>) {
  static_assert(alignof(T) <= kAlignment,
                "bsalloc cannot align beyond kAlignment");
  void* p = Allocate(sizeof(T));
  if (p == nullptr) return nullptr;
  if constexpr (std::is_nothrow_constructible_v<T, A...>) {
    return ::new (p) T(std::forward<A>(args)...);
  } else {
    // Frees the block if the constructor exits by an exception. Written as a
    // guard rather than try/catch so it also compiles with -fno-exceptions.
    struct FreeOnUnwind {
      void* block;
      ~FreeOnUnwind() {
        if (block != nullptr) Deallocate(block, sizeof(T));
      }
    } guard{p};
    T* t = ::new (p) T(std::forward<A>(args)...);
    guard.block = nullptr;
    return t;
  }
}

// Destroys and frees an object from New<T>. T must be the type passed to New
// (not a base class: the size routes the free). nullptr is a no-op.
template <class T>
void Delete(T* p) noexcept {
  if (p == nullptr) return;
  p->~T();
  Deallocate(const_cast<std::remove_cv_t<T>*>(p), sizeof(T));
}

// std::unique_ptr deleter for objects from New<T>.
struct Deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Delete(p);
  }
};

template <class T>
using UniquePtr = std::unique_ptr<T, Deleter>;

}  // namespace bsalloc

#endif  // BSALLOC_BSALLOC_H_
