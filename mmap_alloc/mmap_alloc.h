// mmap_alloc: pages straight from the kernel.
//
// This is the platform layer (in the spirit of snmalloc's `pal/`) that every
// other allocator in this repository stands on. It exposes small, all-noexcept
// primitives over mmap(2), munmap(2), madvise(2), mprotect(2) and mremap(2):
//
//   Map / Unmap          reserve (and optionally commit) zero-filled pages,
//                        with any power-of-two alignment (over-map and trim);
//   Commit / Uncommit    make pages resident now / hand them back to the kernel
//                        (MADV_DONTNEED: reads as zero afterwards; MADV_FREE:
//                        contents unspecified until written, cheaper);
//   Protect              change read/write/exec permissions;
//   Guard / Unguard      make a stretch of a mapping fault on any access
//                        (a guard page next to a block) and undo it;
//   Remap / GrowInPlace / ShrinkInPlace
//                        resize with mremap, moving pages instead of copying;
//   AdviseHugePages      the MADV_HUGEPAGE hint for transparent huge pages;
//   NameRegion           label a region in /proc/<pid>/maps (best effort).
//
// On top of those sit `MapAlloc`, a configurable allocator (sizes, alignment,
// reallocation) and `PageObjectAlloc`, a fixed-size object allocator that
// satisfies `object_alloc::UntypedObjectAlloc`.
//
// Error contract (the same everywhere in this file): nothing throws and nothing
// calls malloc. Failure is a value (nullptr or false) with errno set to the
// cause: ENOMEM when the kernel cannot satisfy a request or a size overflows
// when rounded up, EINVAL for arguments that can never be valid (size 0, a
// pointer that is not page-aligned, an alignment that is not a power of two).
// On success errno is left exactly as the caller had it, even when an internal
// fallback path made (and recovered from) a failing system call; on failure the
// errno the caller sees is the one of the failure that mattered, not that of a
// cleanup call made afterwards.
//
// Linux only: the code uses mremap, MADV_FREE, MADV_HUGEPAGE, MAP_POPULATE and
// prctl(PR_SET_VMA), and the whole repository targets Linux.
//
// All functions are thread-safe in the sense that the kernel serialises the
// underlying system calls; the usual rule applies that two threads must not
// unmap or remap the same range concurrently with using it.
#ifndef MMAP_ALLOC_MMAP_ALLOC_H_
#define MMAP_ALLOC_MMAP_ALLOC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "object_alloc/object_alloc.h"

namespace mmap_alloc {

// The kernel's base page size, sysconf(_SC_PAGESIZE), read once and cached.
std::size_t PageSize() noexcept;

// Rounds size up to a multiple of PageSize(). Returns false (and leaves *out
// unchanged) if the result would not fit in a size_t.
bool RoundUpToPage(std::size_t size, std::size_t* out) noexcept;

// Memory permissions. Any combination is accepted; the kernel may grant more
// than asked (on x86, write implies read in hardware) but /proc/self/maps and
// the PROT_* bits always reflect exactly what was requested.
enum class Perm : unsigned { kNone = 0, kRead = 1, kWrite = 2, kExec = 4 };

constexpr Perm operator|(Perm a, Perm b) noexcept {
  return static_cast<Perm>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr Perm operator&(Perm a, Perm b) noexcept {
  return static_cast<Perm>(static_cast<unsigned>(a) & static_cast<unsigned>(b));
}
constexpr Perm& operator|=(Perm& a, Perm b) noexcept { return a = a | b; }
constexpr Perm& operator&=(Perm& a, Perm b) noexcept { return a = a & b; }
// True if every permission in `bits` is present in `set`.
constexpr bool HasAll(Perm set, Perm bits) noexcept { return (set & bits) == bits; }

// The PROT_* value for a permission set.
int ToProt(Perm perm) noexcept;

struct MapOptions {
  Perm perm = Perm::kRead | Perm::kWrite;
  // Commit eagerly: the pages are faulted in before Map returns (MAP_POPULATE,
  // or MADV_POPULATE_* for over-aligned / huge-page regions). Best effort, as
  // MAP_POPULATE itself is: if the kernel cannot populate, Map still succeeds
  // and pages are faulted in on first touch.
  bool populate = false;
  // MADV_HUGEPAGE hint (transparent huge pages). Best effort: Map does not fail
  // if the kernel has no THP support. Combine with align = 2 MiB so that the
  // region can actually be backed by huge pages.
  bool huge_pages = false;
  // MAP_NORESERVE: with vm.overcommit_memory 0 or 1 (the defaults) the
  // region is left out of the commit charge (Committed_AS); touched pages
  // still cost memory. Strict accounting (mode 2) ignores the flag. For
  // large regions whose pages are used piecemeal (slab regions).
  bool noreserve = false;
  // 0 = page size. Larger powers of two: the region is over-mapped by
  // (align - page size) bytes and the misaligned head and tail are unmapped,
  // so no address space is wasted once Map returns.
  std::size_t align = 0;
  // If non-null, the region is named "[anon:<name>]" in /proc/<pid>/maps via
  // prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) where the kernel supports it
  // (Linux 5.17+ with CONFIG_ANON_VMA_NAME). Failure is ignored. The string
  // must outlive nothing: the kernel copies it. At most 79 characters, no
  // '[', ']', '\\', '$', '`' or non-printable characters.
  const char* name = nullptr;
};

// Maps size bytes (rounded up to PageSize()), zero-filled. nullptr on failure
// with errno set (ENOMEM for sizes the kernel can't satisfy or that overflow
// when rounded; EINVAL for size 0 / a non-power-of-two align).
void* Map(std::size_t size, const MapOptions& options = {}) noexcept;

// Unmaps [p, p + size rounded up to a page). false with errno on failure (p not
// page-aligned, size 0). Unmapping a range that is already (partly) unmapped is
// not an error, exactly as for munmap(2).
bool Unmap(void* p, std::size_t size) noexcept;

// Makes [p, p + size) resident now (size rounded up to a page). Uses
// MADV_POPULATE_WRITE for writable memory and MADV_POPULATE_READ for read-only
// memory (Linux 5.14+), falling back to the MADV_WILLNEED hint on older kernels
// or for PROT_NONE memory (a range mixing writable and read-only mappings is
// populated for reading). Committing twice is a no-op. Fails (EINVAL) for an
// unaligned p or size 0, and ENOMEM if the kernel cannot supply the memory or
// the range is not mapped.
bool Commit(void* p, std::size_t size) noexcept;

enum class UncommitMode {
  // MADV_DONTNEED: residency drops at once and the pages read as zero after.
  kDontNeed,
  // MADV_FREE (Linux 4.5+): the kernel reclaims the pages lazily, only under
  // memory pressure. Until the next write to a page its contents are
  // unspecified (old data or zeros). Cheaper when the memory is reused soon.
  // Falls back to kDontNeed where MADV_FREE is unsupported.
  kFree,
};

// Returns the physical memory behind [p, p + size) to the kernel. The range
// stays mapped with its permissions; touching it again faults in fresh pages.
// Idempotent. Fails (EINVAL) for an unaligned p or size 0, ENOMEM if the range
// is not mapped.
bool Uncommit(void* p, std::size_t size,
              UncommitMode mode = UncommitMode::kDontNeed) noexcept;

// mprotect(2) over [p, p + size rounded up). EINVAL for unaligned p / size 0,
// ENOMEM if the range is not mapped, EACCES if the kernel refuses (e.g. exec).
bool Protect(void* p, std::size_t size, Perm perm) noexcept;

// Guard pages. Guard makes every access to [p, p + size rounded up) fault
// (SIGSEGV) until Unguard; the range must lie in a private anonymous
// read/write mapping made here. Its contents are discarded: after Unguard
// it reads as zero, or, where the fallback below was taken, as it was.
//
// Guard installs the kernel's guard markers (MADV_GUARD_INSTALL, Linux
// 6.13): page-table entries that fault, set under the mapping lock taken
// for reading, with the mapping left one VMA. mprotect(PROT_NONE) splits
// the mapping in three and takes the lock for writing, and undoing it
// flushes the TLBs of every CPU running the process: two threads that each
// allocate and free guarded 256 KiB-2 MiB blocks spent most of their time
// in the kernel waiting for each other's mprotect. Once the kernel refuses
// the markers (EINVAL: before 6.13, or a locked or huge-page mapping),
// Guard uses mprotect for the rest of the process, and Unguard undoes both
// kinds (a range does not remember which way it was guarded). The registry
// below counts a guarded range as unmapped. false with errno set (EINVAL:
// unaligned p or size 0; ENOMEM: the range is not mapped, or the kernel's
// limit on mappings is reached).
bool Guard(void* p, std::size_t size) noexcept;
bool Unguard(void* p, std::size_t size) noexcept;

// Resizes the mapping [p, p + old_size) to new_size (both rounded up to pages),
// keeping contents (up to the smaller size) and permissions. The region may
// move; pages are moved by the kernel, never copied. If align (0 = page size)
// is larger than a page the result is aligned to it: the region is grown in
// place if possible, otherwise moved to a freshly reserved aligned range.
// Returns the new address, or nullptr with errno set, in which case the old
// mapping is untouched. The old range must lie inside one mapping with uniform
// attributes (a single VMA); otherwise the kernel reports EFAULT (MapAlloc's
// Reallocate falls back to copying in that case).
void* Remap(void* p, std::size_t old_size, std::size_t new_size,
            std::size_t align = 0) noexcept;

// Moves the pages of [p, p + size) to [to, to + size) (mremap with
// MREMAP_FIXED: page tables move, contents are not copied, committed pages
// stay committed), replacing whatever was mapped at the target. The source
// range is unmapped afterwards, or, with keep_source, stays mapped and
// empty: it reads as zero and holds no memory (MREMAP_DONTUNMAP, Linux 5.7
// for private anonymous mappings; EINVAL before that or for other
// mappings), so a range carved out of a larger reservation leaves no hole
// another mapping could take. p and to page-aligned. false with errno set
// (EFAULT: the source is not one mapping with uniform attributes), in which
// case neither range changed. For gathering several regions into one
// reservation made by Map, or moving a block out of one.
bool MoveTo(void* p, std::size_t size, void* to,
            bool keep_source = false) noexcept;

// Grows [p, p + old_size) to new_size without moving it. false with ENOMEM if
// the pages after the region are in use (or the kernel cannot supply them),
// EINVAL if new_size < old_size (after rounding) or p is unaligned. Growing to
// the same page-rounded size succeeds trivially.
bool GrowInPlace(void* p, std::size_t old_size, std::size_t new_size) noexcept;

// Shrinks [p, p + old_size) to new_size by unmapping the tail. EINVAL if
// new_size is 0 or larger than old_size (after rounding), or p is unaligned.
bool ShrinkInPlace(void* p, std::size_t old_size,
                   std::size_t new_size) noexcept;

// MADV_HUGEPAGE over [p, p + size rounded up). false with EINVAL if the kernel
// has no transparent-huge-page support. Only a hint: the kernel backs a range
// with huge pages when it is 2 MiB-aligned, 2 MiB long and memory allows.
bool AdviseHugePages(void* p, std::size_t size) noexcept;

// Names [p, p + size rounded up) in /proc/<pid>/maps (see MapOptions::name).
// false with errno (EINVAL where unsupported) on failure; harmless to ignore.
bool NameRegion(void* p, std::size_t size, const char* name) noexcept;

// The mapping registry. Every readable mapping made through this file marks
// the 2 MiB-aligned addresses it covers, and Unmap, Protect (to PROT_NONE),
// Guard, Remap, MoveTo and ShrinkInPlace clear the ones they take away, so
// IsMappedBoundary answers, without a system call and without touching the
// address, whether the page at a 2 MiB boundary is mapped readable by this
// library: one bit per 2 MiB of the 47-bit user address space, in 64 KiB
// leaves (one per TiB) mapped when a mapping first covers their range (a
// process whose mappings lie in two TiB-ranges pays 128 KiB of address
// space, and touches 4 KiB of it per 64 GiB it maps).
// elfmalloc's checked and hardened builds ask it before they read the
// region header of a pointer handed to free or realloc, so a pointer that
// was never allocated (a static array, a forged chunk) is reported instead
// of faulting on memory nobody mapped. The bits are set after the system
// call that maps and cleared before the one that unmaps, so a set bit
// means mapped except while another thread unmaps that very range, which
// only a pointer into memory being given back can race with.
inline constexpr std::size_t kRegistryGranule = std::size_t{2} << 20;

namespace internal {
// The registry's layout (mmap_alloc.cc): 2^kRegistryLeafBits boundaries
// per leaf, one pointer per leaf (nullptr until a mapping covers it).
inline constexpr unsigned kRegistryAddressBits = 47;
inline constexpr std::size_t kRegistryBits =
    (std::size_t{1} << kRegistryAddressBits) / kRegistryGranule;
inline constexpr unsigned kRegistryLeafBits = 19;
inline constexpr std::size_t kRegistryLeaves =
    kRegistryBits >> kRegistryLeafBits;
extern std::atomic<std::atomic<std::uint64_t>*>
    g_registry_leaves[kRegistryLeaves];
extern std::atomic<std::uint64_t> g_registry_epoch;
}  // namespace internal

// The registry's epoch: every call that clears bits (takes a mapping away)
// increments it before it clears them, and so before its system call. A
// caller that read epoch e, then found a boundary mapped, may take the
// boundary as still mapped for as long as RegistryEpoch() returns e: the
// same guarantee as asking IsMappedBoundary again (a set bit means mapped
// except while another thread takes that very range away), for one load.
// elfmalloc's checked build keeps its last such answer per thread, so that
// a free into the region it last checked skips the two-level lookup.
inline std::uint64_t RegistryEpoch() noexcept {
  return internal::g_registry_epoch.load(std::memory_order_acquire);
}

// True iff the page at `boundary` (kRegistryGranule-aligned) lies in a
// readable mapping made by this library that is still mapped. Inline: a
// shift, two loads and a bit test, for callers on a free path.
inline bool IsMappedBoundary(const void* boundary) noexcept {
  const std::size_t i =
      reinterpret_cast<std::uintptr_t>(boundary) / kRegistryGranule;
  if (i >= internal::kRegistryBits) return false;
  const std::atomic<std::uint64_t>* leaf =
      internal::g_registry_leaves[i >> internal::kRegistryLeafBits].load(
          std::memory_order_acquire);
  if (leaf == nullptr) return false;
  const std::size_t bit =
      i & ((std::size_t{1} << internal::kRegistryLeafBits) - 1);
  return (leaf[bit / 64].load(std::memory_order_acquire) >> (bit % 64)) & 1;
}

// A configurable page allocator: a MapOptions bundle plus size-aware
// Allocate / Deallocate / Reallocate. Cheap to copy; all members are
// thread-safe (it holds no mutable state).
//
// Sizes are rounded up to whole pages (UsableSize); every allocation is
// zero-filled. Alignments up to a page are free; larger ones over-map and trim.
class MapAlloc {
 public:
  static constexpr bool kThreadSafe = true;

  // Read + write, lazily committed, page-aligned.
  constexpr MapAlloc() noexcept = default;
  // options.align is the default alignment for Allocate(size) calls that pass
  // align = 0; options.name, if given, must be a string literal or otherwise
  // outlive the allocator (it is passed to the kernel on every Allocate).
  constexpr explicit MapAlloc(const MapOptions& options) noexcept
      : options_(options) {}

  const MapOptions& options() const noexcept { return options_; }

  // The number of bytes an allocation of `size` really provides (size rounded
  // up to a page), or 0 if that overflows.
  static std::size_t UsableSize(std::size_t size) noexcept;

  // Maps at least size bytes aligned to max(align, options().align, page).
  // nullptr with errno on failure, see Map.
  void* Allocate(std::size_t size, std::size_t align = 0) const noexcept;

  // Unmaps an allocation of `size` bytes (the size passed to Allocate or any
  // size that rounds to the same number of pages). false with errno only on
  // misuse (EINVAL) or if the kernel cannot split a mapping (ENOMEM).
  bool Deallocate(void* p, std::size_t size) const noexcept;

  // Resizes an allocation, keeping min(old_size, new_size) bytes of contents.
  // Returns p itself when the page-rounded sizes are equal. Otherwise moves the
  // pages with mremap (keeping alignment align, 0 = options().align), and only
  // if that is impossible (the block spans several kernel mappings, e.g. after
  // a partial Protect) allocates a new block, copies and frees the old one.
  // For allocators configured without read or write permission that copy
  // temporarily grants read on the old block and write on the new one, as the
  // reference implementation did, and restores the configured permissions
  // before returning. On failure returns nullptr with errno set, and the old
  // block is still valid with its contents (and its permissions, except that
  // a failure in the middle of the copy path resets them to the configured
  // ones). p == nullptr behaves as Allocate(new_size, align); new_size == 0
  // fails with EINVAL (use Deallocate to free). A range that is not fully
  // mapped fails with EFAULT.
  void* Reallocate(void* p, std::size_t old_size, std::size_t new_size,
                   std::size_t align = 0) const noexcept;

  // As the free functions, for symmetry with the reference API.
  bool GrowInPlace(void* p, std::size_t old_size,
                   std::size_t new_size) const noexcept {
    return mmap_alloc::GrowInPlace(p, old_size, new_size);
  }
  bool ShrinkInPlace(void* p, std::size_t old_size,
                     std::size_t new_size) const noexcept {
    return mmap_alloc::ShrinkInPlace(p, old_size, new_size);
  }
  bool Commit(void* p, std::size_t size) const noexcept {
    return mmap_alloc::Commit(p, size);
  }
  bool Uncommit(void* p, std::size_t size,
                UncommitMode mode = UncommitMode::kDontNeed) const noexcept {
    return mmap_alloc::Uncommit(p, size, mode);
  }

 private:
  std::size_t EffectiveAlign(std::size_t align) const noexcept;

  MapOptions options_;
};

// The fixed-size object view: every Allocate() maps one object of `size`
// bytes (a multiple of the page size) aligned to `align` (a power of two, at
// least a page, dividing size), zero-filled, with the configured permissions.
// Deallocate unmaps it. Holds no state beyond its configuration, so it is
// thread-safe and objects may be freed from any thread.
class PageObjectAlloc {
 public:
  static constexpr bool kThreadSafe = true;

  // One page, page-aligned, read + write.
  PageObjectAlloc() noexcept;
  // REQUIRES: IsValidConfig(size, align) (checked; a violation is a
  // programming error and aborts with a message). align = 0 means one page.
  explicit PageObjectAlloc(std::size_t size, std::size_t align = 0,
                           Perm perm = Perm::kRead | Perm::kWrite,
                           bool populate = false) noexcept;

  // True if (size, align) describes a valid page object: size > 0 and a
  // multiple of the page size, align 0 or a power of two >= the page size that
  // divides size.
  static bool IsValidConfig(std::size_t size, std::size_t align) noexcept;

  object_alloc::Layout layout() const noexcept { return layout_; }
  Perm perm() const noexcept { return options_.perm; }

  // A fresh zero-filled object, or nullptr with errno (ENOMEM) on exhaustion.
  void* Allocate() noexcept;
  // REQUIRES: p came from Allocate() on an allocator with the same layout.
  void Deallocate(void* p) noexcept;

 private:
  object_alloc::Layout layout_;
  MapOptions options_;
};

static_assert(object_alloc::UntypedObjectAlloc<PageObjectAlloc>);
static_assert(object_alloc::IsThreadSafe<PageObjectAlloc>());

namespace internal {

// Reallocate's copy path, exposed for tests: allocates a new block with
// `alloc`'s options, copies min(old, new) bytes, unmaps the old block. Grants
// temporary read/write as described at MapAlloc::Reallocate.
void* ReallocateByCopy(const MapAlloc& alloc, void* p, std::size_t old_size,
                       std::size_t new_size, std::size_t align) noexcept;

// Makes Guard take its mprotect fallback from now on, as on a kernel
// without guard markers (for tests of that path).
void UseGuardFallbackForTesting() noexcept;

}  // namespace internal

}  // namespace mmap_alloc

#endif  // MMAP_ALLOC_MMAP_ALLOC_H_
