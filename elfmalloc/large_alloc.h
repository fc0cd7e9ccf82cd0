// Large allocations: requests above the largest size class (256 KiB), the
// reference's large_alloc (allocators-rs elfmalloc general.rs,
// https://github.com/ezrosent/allocators-rs), served from a heap of 2 MiB
// units instead of a mapping each, and classifiable by the AllocType stamp
// like every other elfmalloc pointer.
//
// Layout. Address space is reserved in arenas (mmap_alloc, MAP_NORESERVE, so
// only touched pages count; 2 MiB-aligned; 64 MiB first, each new arena as
// large as all before it, up to 1 GiB; exactly the size needed when a
// reservation that large fails, e.g. under RLIMIT_AS) and cut into units of
// kStampAlignment (2 MiB). A block occupies a run of whole units. With
// alignment A <= 2 MiB and H = max(page, A):
//
//   base (a unit boundary)   user pointer u = base + H
//   |<-- H header space -->|<---- round_up(size, page) ---->|<- unused tail ->|
//   [LargeHeader at base]                                    (rest of the last unit)
//
// so round_down(u - 1, 2 MiB) = base holds the stamp (alloc_type.h) and free
// classifies u without a global map. The block's region is H + round_up(size,
// page), its usable size that minus H; the rest of its last unit is address
// space it owns but never uses. Blocks that need more than 1 GiB, an
// alignment above 2 MiB, or arrive when the arena table is full get a
// mapping of their own ("direct" blocks: the header 2 MiB before u when
// A > 2 MiB, unmapped at free, resized by mremap).
//
// Packed units. A block that fits one unit after its alignment's worth of
// pages (page-rounded; alignment at most 512 KiB) takes pages inside a
// shared unit instead of a unit of its own:
//
//   unit (2 MiB aligned)
//   [PackedUnit header page][block][block][free][block]...[free]
//
// The unit's header (a LargeHeader whose `packed` is set, then the page
// map: which pages are free, which start a live block and how many pages
// that block has) is the region header free reads, so classification is
// unchanged; the block needs no header page of its own and costs only its
// pages of address space. (With a unit per block, a 260 KiB block reserved
// 2 MiB: a program under RLIMIT_AS holding 256 KiB-2 MiB blocks ran out of
// address space with 2-7x the bytes it had asked for.) A unit is placed in
// an arena like a one-unit block and goes back to it when its last block is
// freed. Pages freed in a unit stay resident for reuse under the same cap
// as free units (below: each free enforces it over free units, the oldest
// first, then free packed pages); the decay period and malloc_trim purge
// them like free units' pages. A block takes the first place whose pages
// are all resident (the first run of that many free resident pages, for an
// unaligned block, in a unit where the calling thread placed the last block
// if there is one), else the place with the fewest pages to fault in, then
// the shortest free run. Double and interior frees are found in the page
// map, under the heap lock, in every build. Packing needs 4 KiB OS pages
// (512 per unit); with larger pages every block takes units of its own.
//
// Reuse. A freed run of units stays mapped with whatever pages it has
// resident; free runs coalesce with their neighbours by construction (one
// bit per unit); an allocation takes the free run whose units would fault
// in the fewest pages (resident units first, so that the pages a program
// touches stay a compact set), then the shortest that fits (best fit), the
// first among equals; a block that realloc is growing takes the upper half
// of the longest run, so that it can go on growing in place. A program that allocates and frees
// blocks of a few MiB therefore runs without a system call or a page fault
// in steady state (the reference mapped and unmapped every block: 1-16 MiB
// blocks with every page written ran at 1,900 operations/s, like glibc's
// mmap'd chunks; a bounded cache of whole mappings, split and gathered with
// mremap, still faulted ~1 MiB per operation; mimalloc, whose segments keep
// freed spans, runs at 26,000).
// Residency is tracked per unit (the bytes from the unit's start that may be
// resident), so calloc clears only pages that may hold old data (a fresh
// unit is zero and stays untouched), and a block placed on a unit whose
// resident prefix reaches past the block's end by more than 1 MiB and more
// than the block's own size gives that tail back at once (a live block
// holds at most max(1 MiB, its size) of resident memory it does not use).
//
// Memory return, the page allocators' policy for dirty pages (page_alloc.h,
// "Memory return"): a cap on the resident bytes of free units, max(the
// configured bytes, twice the bytes of live large blocks), beyond which the
// units freed longest ago are purged (madvise DONTNEED: the address space
// stays, the memory goes back); a decay period after which a free unit's
// pages are purged and an arena wholly free for a period is unmapped
// (checked on large-block operations and on magazine refills,
// LargeCacheDecay()); malloc_trim and a failed mapping purge every free unit
// and unmap every wholly free arena (LargeCacheRelease()). SetLargeCacheLimits
// sets the cap and period (the general allocator, from its options table,
// ELFMALLOC_LARGE_CACHE_MB and ELFMALLOC_DECAY_MS); until then the cap is 0:
// freed units are purged at once and free arenas unmapped.
//
// Reallocation keeps contents and alignment: in place when the new region
// fits the block's units or the units after it are free (taken; a shrink
// frees the units it no longer needs); otherwise the block's pages move
// (mremap, no copy) to a mapping of its own, and it is a direct block from
// then on; a copy only if the kernel refuses. Direct blocks grow and shrink
// by mremap.
//
// Threads: every function is thread-safe. The heap is guarded by a SpinLock
// never held across a system call (units being purged are marked in use
// while their madvise runs, so no allocation can take them meanwhile); the
// rest is statistics counters. Failure is a value: nullptr with errno =
// ENOMEM (EINVAL for an alignment that is not a power of two); success
// leaves errno alone. Never calls malloc: arena metadata is mapped with
// mmap_alloc.
#ifndef ELFMALLOC_LARGE_ALLOC_H_
#define ELFMALLOC_LARGE_ALLOC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "elfmalloc/alloc_type.h"

namespace elfmalloc {

// The header of a large allocation, at the start of the unit its block
// begins in. Its first field is the region header (alloc_type.h), whose
// stamp reads kLarge while the block is live and kFreedLarge once it is
// freed; only alloc_type.h's WriteAllocType writes it.
struct LargeHeader {
  RegionHeader region;
  void* base;                   // start of the mapping
  std::size_t region_size;      // bytes mapped (page multiple)
  std::size_t requested;        // the size the caller asked for
  std::size_t header_space;     // H: u - base
  std::size_t map_align;        // direct blocks: the mapping's alignment
  // The arena the block's units belong to; nullptr for a direct block.
  struct LargeArena* arena;
  // Non-null for a packed unit ("Packed units" above): the header then
  // describes the unit (base, region_size = 2 MiB, header_space = its
  // header pages), and the blocks in it are found through this.
  struct PackedUnit* packed;
};

// A block of at least `size` bytes aligned to max(align, OS page), or nullptr
// (errno ENOMEM; EINVAL if align is not 0 or a power of two). Any size works,
// including sizes <= 1 MiB (the general allocator uses it for those only when
// the alignment demands it).
void* LargeAlloc(std::size_t size, std::size_t align = 0) noexcept;

// As LargeAlloc(size) with the first `size` bytes zero: pages never touched
// since they were mapped or purged are not written (they are zero and stay
// untouched until used); only pages that may be resident are cleared.
// calloc's large path.
void* LargeAllocZeroed(std::size_t size) noexcept;

// As LargeAlloc(size), for a block that is being grown by realloc (from a
// slab block): placed where it has room to grow in place ("Reuse").
void* LargeAllocForGrowth(std::size_t size) noexcept;

// Frees a block from LargeAlloc / LargeRealloc: its units go back to the
// heap (see "Reuse"; a direct block is unmapped). nullptr is a no-op. In
// every build, a p that is not the start of a live block (LargeStateOf) is
// reported (DieBadLargeBlock) before anything changes: a packed block's
// state is read under the heap lock the free takes anyway, so callers need
// no check of their own (a caller's LargeStateOf would lock the heap a
// second time for every free of a packed block).
void LargeFree(void* p) noexcept;

// What p is, for the checks of free and realloc (p has the kLarge stamp):
// the start of a live block, a pointer inside one (or between blocks), or
// (packed units only: an ordinary block's second free finds the
// kFreedLarge stamp instead) a block already freed. Takes the heap lock for
// a block in a packed unit.
enum class LargeBlockState { kLive, kInterior, kFreed };
LargeBlockState LargeStateOf(const void* p) noexcept;
// Reports p, which LargeStateOf found not kLive, as a double free or an
// interior pointer passed to `op`, and aborts. The one place these reports
// are worded.
[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieBadLargeBlock(
    const void* p, const char* op, LargeBlockState state) noexcept;

// The bytes usable at p (the requested size rounded up to the OS page).
std::size_t LargeUsableSize(const void* p) noexcept;
// The size most recently requested for p.
std::size_t LargeRequestedSize(const void* p) noexcept;

// The user pointer of the live block (LargeAlloc's, in an arena) whose
// region holds address a, or nullptr. For reports about a fault at a (the
// hardened build's guard pages): it takes no lock and makes no system call,
// so a signal handler may call it. It reads the headers of the units from
// a's down to the block's first (at most a block's worth of units), each
// only if mmap_alloc's registry maps it, and skips a's own unit header
// when a lies in that header's page (a guard page may start a unit); a
// header that matches must name its own unit as its base and a region
// reaching a. A block freed or resized meanwhile may be missed.
void* LargeBlockContaining(const void* a) noexcept;

// Resizes p to new_size bytes keeping the first min(old, new) bytes and the
// alignment. Returns the (possibly moved) block, or nullptr with errno set,
// in which case p is untouched and still valid. Checks p as LargeFree does.
void* LargeRealloc(void* p, std::size_t new_size) noexcept;

// The header governing p (a pointer from LargeAlloc).
inline LargeHeader* LargeHeaderOf(const void* p) noexcept {
  return reinterpret_cast<LargeHeader*>(
      (reinterpret_cast<std::uintptr_t>(p) - 1) & ~(kStampAlignment - 1));
}

// The cap on the resident bytes of free units (0, the initial value: purge
// at once) and the decay period in milliseconds (0: free units keep their
// pages until the cap or a release takes them). Lowering the cap below what
// free units hold releases them.
void SetLargeCacheLimits(std::size_t max_bytes,
                         std::uint64_t decay_ms) noexcept;
// Purges every free unit and unmaps every wholly free arena; returns the
// bytes given back (resident bytes purged plus arena bytes unmapped).
// malloc_trim, and the retry after a failed mapping.
std::size_t LargeCacheRelease() noexcept;
// Purges the free units freed a whole decay period ago and unmaps the arenas
// wholly free for a period; returns the bytes given back. One relaxed load
// while nothing is pending, a vDSO clock read and a compare until something
// expires: the general allocator calls it on every magazine refill, so that
// a program that stops using large blocks gets their memory back while it
// keeps allocating small ones.
std::size_t LargeCacheDecay() noexcept;
// fork(): the heap lock is held across it (pthread_atfork handlers of the
// general allocator) so that the child never inherits it locked.
void LargeCachePreFork() noexcept;
void LargeCachePostFork() noexcept;

struct LargeStats {
  std::size_t mapped_bytes;    // live large blocks' regions, headers included
  std::size_t allocations;     // live large allocations
  std::size_t cached_bytes;    // resident bytes of free units
  std::size_t reuses;          // allocations placed on resident free units
  std::size_t reserved_bytes;  // address space of the arenas
  std::size_t arenas;          // arenas mapped
};
LargeStats GetLargeStats() noexcept;

// For tests: checks the packed units' invariants (large_alloc.cc,
// PackedUnit) against their bit sets, page by page, under the heap lock;
// nullptr if they hold, else what is wrong. O(heap): never on a hot path.
const char* LargeHeapInconsistency() noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_LARGE_ALLOC_H_
