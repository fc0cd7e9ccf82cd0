// mmap_alloc: implementation of the page-level primitives in mmap_alloc.h.
//
// Every function here is a thin, allocation-free wrapper around one or two
// system calls plus argument checking. Two rules shape the code:
//
//  * errno discipline (snmalloc's KeepErrno): each public entry point creates
//    an ErrnoGuard first. On success the guard restores the caller's errno, so
//    a recovered internal failure (say MADV_FREE unsupported, falling back to
//    MADV_DONTNEED) is invisible. On failure the code calls guard.Fail(err)
//    with the errno of the call that mattered, *before* any cleanup syscalls,
//    so a failing munmap during cleanup cannot overwrite the reported cause.
//  * no malloc, no exceptions, no stdio: this layer sits beneath bsalloc and
//    elfmalloc, which must never recurse into the C heap.
#include "mmap_alloc/mmap_alloc.h"

#include <errno.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"

// Values from the Linux UAPI headers, for building against older libc headers.
// The kernel returns EINVAL for advice or prctl options it does not know, and
// every use below has a fallback for that.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif
#ifndef PR_SET_VMA_ANON_NAME
#define PR_SET_VMA_ANON_NAME 0
#endif

namespace mmap_alloc {
namespace internal {
ABSL_CONST_INIT std::atomic<std::atomic<std::uint64_t>*>
    g_registry_leaves[kRegistryLeaves] = {};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_registry_epoch{0};
}  // namespace internal
namespace {

// ---- The mapping registry (see mmap_alloc.h) ----
// Two levels, so that a process pays address space only for the parts of
// the address space it maps in (a program started under a small ulimit -v
// must not lose 8 MiB to it): 128 leaves of 64 KiB, each one bit per
// boundary of 1 TiB, mapped on first use (a raw mmap: Map itself marks the
// registry). Bit b of word w of leaf l is the boundary
// ((l << kLeafBits) + w * 64 + b) * kRegistryGranule.
using internal::g_registry_leaves;
using internal::kRegistryBits;
constexpr unsigned kLeafBits = internal::kRegistryLeafBits;
constexpr std::size_t kLeafBytes = (std::size_t{1} << kLeafBits) / 8;

// The leaf of boundary index i, mapped now if `make`; nullptr if it is not
// mapped (or cannot be: then nothing in it is marked, and IsMappedBoundary
// says false there).
std::atomic<std::uint64_t>* Leaf(std::size_t i, bool make) noexcept {
  std::atomic<std::atomic<std::uint64_t>*>& slot =
      g_registry_leaves[i >> kLeafBits];
  std::atomic<std::uint64_t>* r = slot.load(std::memory_order_acquire);
  if (ABSL_PREDICT_TRUE(r != nullptr) || !make) return r;
  const int saved = errno;
  void* m = mmap(nullptr, kLeafBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  if (m == MAP_FAILED) return nullptr;
  auto* fresh = static_cast<std::atomic<std::uint64_t>*>(m);
  if (!slot.compare_exchange_strong(r, fresh, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
    munmap(m, kLeafBytes);  // another thread's won; r holds it
    return r;
  }
  return fresh;
}

// Sets (mapped) or clears the bits of every boundary in [p, p + len).
void MarkRange(const void* p, std::size_t len, bool mapped) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first =
      (a + kRegistryGranule - 1) & ~(kRegistryGranule - 1);
  const std::uintptr_t end = a + len;
  if (!mapped && first < end && first != 0) {
    // Before any bit goes (see RegistryEpoch).
    internal::g_registry_epoch.fetch_add(1, std::memory_order_acq_rel);
  }
  for (std::uintptr_t b = first; b < end && b != 0; b += kRegistryGranule) {
    const std::size_t i = b / kRegistryGranule;
    if (i >= kRegistryBits) break;
    std::atomic<std::uint64_t>* leaf = Leaf(i, mapped);
    if (leaf == nullptr) continue;
    const std::size_t bit = i & ((std::size_t{1} << kLeafBits) - 1);
    const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
    if (mapped) {
      leaf[bit / 64].fetch_or(mask, std::memory_order_release);
    } else {
      leaf[bit / 64].fetch_and(~mask, std::memory_order_release);
    }
  }
}

// Restores the caller's errno when the enclosing entry point returns, unless
// Fail() recorded a failure, in which case that failure's errno is what the
// caller sees. Nested guards compose: an inner entry point's failure errno is
// read by the outer one (Fail(errno) right after the call) before anything
// else can clobber it.
class ErrnoGuard {
 public:
  ErrnoGuard() noexcept : errno_(errno) {}
  ErrnoGuard(const ErrnoGuard&) = delete;
  ErrnoGuard& operator=(const ErrnoGuard&) = delete;
  ~ErrnoGuard() { errno = errno_; }

  void Fail(int err) noexcept { errno_ = err; }

 private:
  int errno_;
};

// The largest mapping we ask the kernel for. No object may exceed PTRDIFF_MAX
// bytes in C++, and no 64-bit Linux address space comes near it, so anything
// bigger is reported as ENOMEM without a system call.
constexpr std::size_t kMaxMapSize = static_cast<std::size_t>(PTRDIFF_MAX);

constexpr int kMapFlags = MAP_PRIVATE | MAP_ANONYMOUS;

bool IsPowerOfTwo(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

bool IsPageAligned(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & (PageSize() - 1)) == 0;
}

// Validates an existing range [p, p + size) for the range operations (Unmap,
// Commit, Protect, ...) and stores its page-rounded length in *len. EINVAL for
// a null or unaligned p, size 0, or a size so large it cannot describe a
// mapping; the guard records it.
bool CheckRange(ErrnoGuard& guard, const void* p, std::size_t size,
                std::size_t* len) {
  if (ABSL_PREDICT_FALSE(p == nullptr || !IsPageAligned(p) || size == 0 ||
                         !RoundUpToPage(size, len) || *len > kMaxMapSize)) {
    guard.Fail(EINVAL);
    return false;
  }
  return true;
}

// Best-effort prefault of [p, p + len) with the strongest advice that the
// region's permissions allow. Returns false with errno when the kernel refused
// even the MADV_WILLNEED fallback. `perm` is a hint: if it is unknown (Commit
// on a region of unknown permissions) pass kRead | kWrite and the EINVAL
// fallbacks walk down to what the region supports.
bool Populate(void* p, std::size_t len, Perm perm) {
  if (HasAll(perm, Perm::kWrite)) {
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0) return true;
    // EINVAL: kernel older than 5.14, or the region is not writable after all.
    if (errno != EINVAL) return false;
  }
  if (HasAll(perm, Perm::kRead) || HasAll(perm, Perm::kWrite)) {
    if (madvise(p, len, MADV_POPULATE_READ) == 0) return true;
    if (errno != EINVAL) return false;
  }
  // PROT_NONE memory or an old kernel: the hint is all that is left.
  return madvise(p, len, MADV_WILLNEED) == 0;
}

}  // namespace

std::size_t PageSize() noexcept {
  // Racing first calls store the same value; relaxed is enough because the
  // value is the only thing communicated.
  static std::atomic<std::size_t> cached{0};
  std::size_t page = cached.load(std::memory_order_relaxed);
  if (ABSL_PREDICT_FALSE(page == 0)) {
    const int saved = errno;
    // The kernel's auxiliary vector first: sysconf lies in a part of the C
    // library that a program calling malloc rarely runs otherwise, and the
    // fault that maps it maps its 64 KiB neighbourhood (fault-around) into
    // the process's resident set.
    long v = static_cast<long>(getauxval(AT_PAGESZ));
    if (v <= 0) v = sysconf(_SC_PAGESIZE);
    errno = saved;
    ABSL_RAW_CHECK(v > 0 && IsPowerOfTwo(static_cast<std::size_t>(v)),
                   "the page size is not a power of two");
    page = static_cast<std::size_t>(v);
    cached.store(page, std::memory_order_relaxed);
  }
  return page;
}

bool RoundUpToPage(std::size_t size, std::size_t* out) noexcept {
  const std::size_t mask = PageSize() - 1;
  if (size > SIZE_MAX - mask) return false;
  *out = (size + mask) & ~mask;
  return true;
}

int ToProt(Perm perm) noexcept {
  int prot = PROT_NONE;
  if (HasAll(perm, Perm::kRead)) prot |= PROT_READ;
  if (HasAll(perm, Perm::kWrite)) prot |= PROT_WRITE;
  if (HasAll(perm, Perm::kExec)) prot |= PROT_EXEC;
  return prot;
}

void* Map(std::size_t size, const MapOptions& options) noexcept {
  ErrnoGuard guard;
  const std::size_t page = PageSize();
  if (ABSL_PREDICT_FALSE(size == 0)) {
    guard.Fail(EINVAL);
    return nullptr;
  }
  std::size_t align = options.align == 0 ? page : options.align;
  if (ABSL_PREDICT_FALSE(!IsPowerOfTwo(align))) {
    guard.Fail(EINVAL);
    return nullptr;
  }
  if (align < page) align = page;
  std::size_t len;
  if (ABSL_PREDICT_FALSE(!RoundUpToPage(size, &len) || len > kMaxMapSize ||
                         align > kMaxMapSize)) {
    guard.Fail(ENOMEM);
    return nullptr;
  }
  // Over-mapping by (align - page) bytes always leaves an aligned start with
  // len bytes after it, because the kernel hands out page-aligned addresses.
  const std::size_t extra = align - page;
  if (ABSL_PREDICT_FALSE(len > kMaxMapSize - extra)) {
    guard.Fail(ENOMEM);
    return nullptr;
  }
  const int prot = ToProt(options.perm);

  // Fast path, one system call: no trimming, and MAP_POPULATE can do the
  // populating. With huge pages requested, populating must wait until after
  // the MADV_HUGEPAGE hint, or the region would be faulted in with small pages.
  const bool fast = extra == 0 && !(options.populate && options.huge_pages);
  const int flags = kMapFlags | (fast && options.populate ? MAP_POPULATE : 0) |
                    (options.noreserve ? MAP_NORESERVE : 0);
  void* raw = mmap(nullptr, len + extra, prot, flags, -1, 0);
  if (ABSL_PREDICT_FALSE(raw == MAP_FAILED)) {
    guard.Fail(errno);
    return nullptr;
  }
  char* base = static_cast<char*>(raw);
  if (extra != 0) {
    const std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(base);
    const std::size_t head = ((addr + align - 1) & ~(align - 1)) - addr;
    const std::size_t tail = extra - head;
    // Trimming can fail only if splitting the mapping would exceed
    // vm.max_map_count; then give everything back and report ENOMEM.
    if ((head != 0 && munmap(base, head) != 0) ||
        (tail != 0 && munmap(base + head + len, tail) != 0)) {
      guard.Fail(errno);
      // Unmapping already-unmapped parts is harmless, so one call covers
      // whichever trims succeeded.
      munmap(base, len + extra);
      return nullptr;
    }
    base += head;
  }
  // Hints below are best effort; the guard hides any errno they leave.
  if (options.huge_pages) madvise(base, len, MADV_HUGEPAGE);
  if (options.populate && !fast) Populate(base, len, options.perm);
  if (options.name != nullptr) {
    prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, base, len, options.name);
  }
  if (HasAll(options.perm, Perm::kRead)) MarkRange(base, len, true);
  return base;
}

bool Unmap(void* p, std::size_t size) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  MarkRange(p, len, false);
  if (ABSL_PREDICT_FALSE(munmap(p, len) != 0)) {
    guard.Fail(errno);
    return false;
  }
  return true;
}

bool Commit(void* p, std::size_t size) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  if (!Populate(p, len, Perm::kRead | Perm::kWrite)) {
    guard.Fail(errno);
    return false;
  }
  return true;
}

bool Uncommit(void* p, std::size_t size, UncommitMode mode) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  if (mode == UncommitMode::kFree) {
    if (madvise(p, len, MADV_FREE) == 0) return true;
    // EINVAL: a kernel before 4.5. Anything else (ENOMEM: not mapped) is real.
    if (errno != EINVAL) {
      guard.Fail(errno);
      return false;
    }
  }
  if (ABSL_PREDICT_FALSE(madvise(p, len, MADV_DONTNEED) != 0)) {
    guard.Fail(errno);
    return false;
  }
  return true;
}

bool Protect(void* p, std::size_t size, Perm perm) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  const bool readable = HasAll(perm, Perm::kRead);
  if (!readable) MarkRange(p, len, false);
  if (ABSL_PREDICT_FALSE(mprotect(p, len, ToProt(perm)) != 0)) {
    guard.Fail(errno);
    return false;
  }
  if (readable) MarkRange(p, len, true);
  return true;
}

namespace {

// How Guard guards (see mmap_alloc.h): with markers until the kernel
// refuses them once (EINVAL), then with mprotect. A range does not
// remember which way it was guarded, so Unguard undoes every way that any
// Guard has used: each "used" flag only ever goes from false to true, set
// before the system call of its kind, and a range reaches Unguard only
// after its Guard returned and the range was handed on (a lock or an
// acquire/release pair in the caller), which orders the flag's store
// before Unguard's load; relaxed is therefore enough.
ABSL_CONST_INIT std::atomic<bool> g_guard_try_markers{true};
ABSL_CONST_INIT std::atomic<bool> g_guard_markers_used{false};
ABSL_CONST_INIT std::atomic<bool> g_guard_protect_used{false};

}  // namespace

namespace internal {
void UseGuardFallbackForTesting() noexcept {
  g_guard_try_markers.store(false, std::memory_order_relaxed);
}
}  // namespace internal

bool Guard(void* p, std::size_t size) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  MarkRange(p, len, false);
  if (g_guard_try_markers.load(std::memory_order_relaxed)) {
    g_guard_markers_used.store(true, std::memory_order_relaxed);
    if (madvise(p, len, MADV_GUARD_INSTALL) == 0) return true;
    if (errno != EINVAL) {
      guard.Fail(errno);
      MarkRange(p, len, true);
      return false;
    }
    // A kernel before 6.13, or a mapping it will not mark (locked, huge
    // pages): mprotect from now on.
    g_guard_try_markers.store(false, std::memory_order_relaxed);
  }
  g_guard_protect_used.store(true, std::memory_order_relaxed);
  if (ABSL_PREDICT_FALSE(mprotect(p, len, PROT_NONE) != 0)) {
    guard.Fail(errno);
    MarkRange(p, len, true);
    return false;
  }
  return true;
}

bool Unguard(void* p, std::size_t size) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  // Removing markers from a range that has none is a no-op, and so is
  // restoring the permissions of a range that kept them.
  if (g_guard_markers_used.load(std::memory_order_relaxed) &&
      madvise(p, len, MADV_GUARD_REMOVE) != 0 && errno != EINVAL) {
    guard.Fail(errno);
    return false;
  }
  if (g_guard_protect_used.load(std::memory_order_relaxed) &&
      mprotect(p, len, PROT_READ | PROT_WRITE) != 0) {
    guard.Fail(errno);
    return false;
  }
  MarkRange(p, len, true);
  return true;
}

void* Remap(void* p, std::size_t old_size, std::size_t new_size,
            std::size_t align) noexcept {
  ErrnoGuard guard;
  const std::size_t page = PageSize();
  std::size_t old_len;
  if (!CheckRange(guard, p, old_size, &old_len)) return nullptr;
  if (ABSL_PREDICT_FALSE(new_size == 0)) {
    guard.Fail(EINVAL);
    return nullptr;
  }
  if (align == 0) align = page;
  if (ABSL_PREDICT_FALSE(!IsPowerOfTwo(align))) {
    guard.Fail(EINVAL);
    return nullptr;
  }
  std::size_t new_len;
  if (ABSL_PREDICT_FALSE(!RoundUpToPage(new_size, &new_len) ||
                         new_len > kMaxMapSize)) {
    guard.Fail(ENOMEM);
    return nullptr;
  }
  const bool aligned =
      (reinterpret_cast<std::uintptr_t>(p) & (align - 1)) == 0;
  if (old_len == new_len && aligned) return p;

  if (align <= page) {
    void* q = mremap(p, old_len, new_len, MREMAP_MAYMOVE);
    if (ABSL_PREDICT_FALSE(q == MAP_FAILED)) {
      guard.Fail(errno);
      return nullptr;
    }
    MarkRange(p, old_len, false);
    MarkRange(q, new_len, true);
    return q;
  }

  // Over-aligned: plain MREMAP_MAYMOVE would pick a page-aligned address, so
  // keep the block where it is if we can, and otherwise move it into a
  // reservation that Map has already aligned (MREMAP_FIXED replaces it).
  if (aligned) {
    if (new_len < old_len) {
      MarkRange(static_cast<char*>(p) + new_len, old_len - new_len, false);
      if (munmap(static_cast<char*>(p) + new_len, old_len - new_len) != 0) {
        guard.Fail(errno);
        MarkRange(p, old_len, true);
        return nullptr;
      }
      return p;
    }
    if (mremap(p, old_len, new_len, 0) != MAP_FAILED) {
      MarkRange(static_cast<char*>(p) + old_len, new_len - old_len, true);
      return p;
    }
    // ENOMEM: the pages after the block are taken; fall through and move.
    // Anything else (EFAULT: not one mapping) would fail the move too.
    if (errno != ENOMEM) {
      guard.Fail(errno);
      return nullptr;
    }
  }
  MapOptions reserve;
  reserve.perm = Perm::kNone;  // PROT_NONE costs no commit charge.
  reserve.align = align;
  void* target = Map(new_len, reserve);
  if (ABSL_PREDICT_FALSE(target == nullptr)) {
    guard.Fail(errno);
    return nullptr;
  }
  void* q = mremap(p, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  if (ABSL_PREDICT_FALSE(q == MAP_FAILED)) {
    guard.Fail(errno);
    munmap(target, new_len);
    return nullptr;
  }
  MarkRange(p, old_len, false);
  MarkRange(q, new_len, true);
  return q;
}

bool MoveTo(void* p, std::size_t size, void* to, bool keep_source) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  if (ABSL_PREDICT_FALSE((reinterpret_cast<std::uintptr_t>(to) &
                          (PageSize() - 1)) != 0)) {
    guard.Fail(EINVAL);
    return false;
  }
  const int flags = MREMAP_MAYMOVE | MREMAP_FIXED |
                    (keep_source ? MREMAP_DONTUNMAP : 0);
  if (ABSL_PREDICT_FALSE(mremap(p, len, len, flags, to) == MAP_FAILED)) {
    guard.Fail(errno);
    return false;
  }
  // The source stays mapped (and readable) with keep_source.
  if (!keep_source) MarkRange(p, len, false);
  MarkRange(to, len, true);
  return true;
}

bool GrowInPlace(void* p, std::size_t old_size, std::size_t new_size) noexcept {
  ErrnoGuard guard;
  std::size_t old_len;
  std::size_t new_len;
  if (!CheckRange(guard, p, old_size, &old_len)) return false;
  if (ABSL_PREDICT_FALSE(!RoundUpToPage(new_size, &new_len) ||
                         new_len > kMaxMapSize)) {
    guard.Fail(ENOMEM);
    return false;
  }
  if (ABSL_PREDICT_FALSE(new_len < old_len)) {
    guard.Fail(EINVAL);
    return false;
  }
  if (new_len == old_len) return true;
  // Without MREMAP_MAYMOVE the kernel either extends the mapping where it is
  // or fails with ENOMEM; it never returns a different address.
  if (ABSL_PREDICT_FALSE(mremap(p, old_len, new_len, 0) == MAP_FAILED)) {
    guard.Fail(errno);
    return false;
  }
  MarkRange(static_cast<char*>(p) + old_len, new_len - old_len, true);
  return true;
}

bool ShrinkInPlace(void* p, std::size_t old_size,
                   std::size_t new_size) noexcept {
  ErrnoGuard guard;
  std::size_t old_len;
  std::size_t new_len;
  if (!CheckRange(guard, p, old_size, &old_len)) return false;
  if (ABSL_PREDICT_FALSE(new_size == 0 || !RoundUpToPage(new_size, &new_len) ||
                         new_len > old_len)) {
    guard.Fail(EINVAL);
    return false;
  }
  if (new_len == old_len) return true;
  MarkRange(static_cast<char*>(p) + new_len, old_len - new_len, false);
  if (ABSL_PREDICT_FALSE(
          munmap(static_cast<char*>(p) + new_len, old_len - new_len) != 0)) {
    guard.Fail(errno);
    MarkRange(p, old_len, true);
    return false;
  }
  return true;
}

bool AdviseHugePages(void* p, std::size_t size) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  if (madvise(p, len, MADV_HUGEPAGE) != 0) {
    guard.Fail(errno);
    return false;
  }
  return true;
}

bool NameRegion(void* p, std::size_t size, const char* name) noexcept {
  ErrnoGuard guard;
  std::size_t len;
  if (!CheckRange(guard, p, size, &len)) return false;
  if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, p, len, name) != 0) {
    guard.Fail(errno);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// MapAlloc

std::size_t MapAlloc::UsableSize(std::size_t size) noexcept {
  std::size_t len;
  return RoundUpToPage(size, &len) ? len : 0;
}

std::size_t MapAlloc::EffectiveAlign(std::size_t align) const noexcept {
  // A bad alignment is passed through unchanged so that Map reports EINVAL.
  if (align == 0 || (options_.align > align && IsPowerOfTwo(align))) {
    return options_.align;
  }
  return align;
}

void* MapAlloc::Allocate(std::size_t size, std::size_t align) const noexcept {
  MapOptions options = options_;
  options.align = EffectiveAlign(align);
  return Map(size, options);
}

bool MapAlloc::Deallocate(void* p, std::size_t size) const noexcept {
  return Unmap(p, size);
}

void* MapAlloc::Reallocate(void* p, std::size_t old_size, std::size_t new_size,
                           std::size_t align) const noexcept {
  ErrnoGuard guard;
  if (p == nullptr) {
    void* q = Allocate(new_size, align);
    if (q == nullptr) guard.Fail(errno);
    return q;
  }
  const std::size_t effective_align = EffectiveAlign(align);
  void* q = Remap(p, old_size, new_size, effective_align);
  if (q != nullptr) return q;
  // mremap cannot resize a range that spans several kernel mappings (for
  // example after Protect changed part of the block). Copying still works,
  // provided the whole range is mapped: msync(MS_ASYNC) is a no-op on
  // anonymous memory that fails with ENOMEM on any unmapped page, which tells
  // "several mappings" (copyable) apart from "caller passed a bad range".
  if (errno != EFAULT) {
    guard.Fail(errno);
    return nullptr;
  }
  std::size_t old_len;
  if (!RoundUpToPage(old_size, &old_len) || msync(p, old_len, MS_ASYNC) != 0) {
    guard.Fail(EFAULT);
    return nullptr;
  }
  q = internal::ReallocateByCopy(*this, p, old_size, new_size, effective_align);
  if (q == nullptr) guard.Fail(errno);
  return q;
}

namespace internal {

void* ReallocateByCopy(const MapAlloc& alloc, void* p, std::size_t old_size,
                       std::size_t new_size, std::size_t align) noexcept {
  ErrnoGuard guard;
  std::size_t old_len;
  if (!CheckRange(guard, p, old_size, &old_len)) return nullptr;
  if (new_size == 0) {
    guard.Fail(EINVAL);
    return nullptr;
  }
  void* q = alloc.Allocate(new_size, align);
  if (q == nullptr) {
    guard.Fail(errno);
    return nullptr;
  }
  const std::size_t new_len = MapAlloc::UsableSize(new_size);
  const Perm perm = alloc.options().perm;
  const bool unwritable = !HasAll(perm, Perm::kWrite);
  // The old block is about to be unmapped, so granting read on all of it is
  // safe; doing it unconditionally also covers a block whose pages were
  // partly protected to PROT_NONE after allocation (the reason Reallocate
  // ends up here). If anything fails after this point the old block gets the
  // allocator's configured permissions back.
  const bool grant_read = mprotect(p, old_len, ToProt(perm | Perm::kRead)) == 0;
  if (!grant_read ||
      (unwritable && mprotect(q, new_len, PROT_READ | PROT_WRITE) != 0)) {
    guard.Fail(errno);
    if (grant_read) mprotect(p, old_len, ToProt(perm));
    munmap(q, new_len);
    return nullptr;
  }
  const std::size_t copy = old_len < new_len ? old_len : new_len;
  std::memcpy(q, p, copy);
  if ((unwritable && mprotect(q, new_len, ToProt(perm)) != 0) ||
      munmap(p, old_len) != 0) {
    guard.Fail(errno);
    mprotect(p, old_len, ToProt(perm));
    munmap(q, new_len);
    return nullptr;
  }
  if (HasAll(perm, Perm::kExec)) {
    // Code written through the data cache must become visible to instruction
    // fetch (a no-op on x86, required on arm64).
    __builtin___clear_cache(static_cast<char*>(q), static_cast<char*>(q) + copy);
  }
  return q;
}

}  // namespace internal

// ---------------------------------------------------------------------------
// PageObjectAlloc

PageObjectAlloc::PageObjectAlloc() noexcept : PageObjectAlloc(PageSize()) {}

PageObjectAlloc::PageObjectAlloc(std::size_t size, std::size_t align,
                                 Perm perm, bool populate) noexcept {
  ABSL_RAW_CHECK(IsValidConfig(size, align),
                 "PageObjectAlloc: size must be a non-zero multiple of the "
                 "page size and align 0 or a power of two >= the page size "
                 "that divides size");
  if (align == 0) align = PageSize();
  layout_ = object_alloc::Layout{size, align};
  options_.perm = perm;
  options_.populate = populate;
  options_.align = align;
}

bool PageObjectAlloc::IsValidConfig(std::size_t size,
                                    std::size_t align) noexcept {
  const std::size_t page = PageSize();
  if (align == 0) align = page;
  return size != 0 && size % page == 0 && size <= kMaxMapSize &&
         IsPowerOfTwo(align) && align >= page && size % align == 0;
}

void* PageObjectAlloc::Allocate() noexcept {
  return Map(layout_.size, options_);
}

void PageObjectAlloc::Deallocate(void* p) noexcept {
  if (p == nullptr) return;
  ErrnoGuard guard;
  // EINVAL means p did not come from Allocate: a caller bug worth a crash.
  // ENOMEM (splitting a merged mapping would exceed vm.max_map_count) leaves
  // the object mapped; there is no way to report it through this interface,
  // so the pages leak rather than the process dying.
  ABSL_RAW_CHECK(IsPageAligned(p) && reinterpret_cast<std::uintptr_t>(p) %
                                             layout_.align ==
                                         0,
                 "PageObjectAlloc::Deallocate: pointer not from Allocate");
  munmap(p, layout_.size);
}

}  // namespace mmap_alloc
