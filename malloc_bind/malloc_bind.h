// malloc_bind: the whole C and C++ allocation API, bound to any allocator.
//
// An allocator that can allocate, allocate aligned, free and report a block's
// usable size (a `Backend`, below) becomes malloc, free, calloc, realloc,
// reallocarray, posix_memalign, aligned_alloc, memalign, valloc, pvalloc,
// malloc_usable_size, cfree, free_sized, free_aligned_sized, malloc_trim,
// mallopt and all twenty replaceable operator new / delete forms, with glibc
// 2.36's semantics (errno values, overflow checks, what zero sizes return).
// README.md has the full table; the short version:
//
//  * Sizes above PTRDIFF_MAX, and sizes whose arithmetic (calloc's n * m,
//    pvalloc's page rounding, an alignment plus a size) would exceed it,
//    fail with ENOMEM before the backend is asked. Nothing ever wraps.
//  * Zero sizes give unique blocks (malloc(0), calloc(0, n), memalign(a, 0),
//    posix_memalign(.., 0), valloc(0), pvalloc(0) = one page, new(0)).
//  * realloc(p, 0) frees p and returns NULL (glibc); a failed realloc or
//    reallocarray leaves the old block intact.
//  * posix_memalign returns EINVAL (touching neither errno nor *memptr)
//    unless the alignment is a power-of-two multiple of sizeof(void*), and
//    ENOMEM (errno = ENOMEM too, as glibc) with *memptr untouched.
//  * aligned_alloc fails with EINVAL unless the alignment is a power of two
//    (C17 DR 460, glibc 2.38); memalign rounds a non-power-of-two alignment
//    up (all glibc versions) and fails with EINVAL above SIZE_MAX / 2 + 1.
//  * A successful call never changes errno; a failing one sets exactly the
//    errno documented for it.
//  * operator new loops on std::get_new_handler() and then throws
//    std::bad_alloc; the nothrow forms return nullptr instead, also when the
//    handler throws (as libstdc++ does). Both reach the C++ runtime only
//    through weak references (cxx_runtime.h), so a shared object built from
//    this header needs no libstdc++: without a C++ runtime in the process,
//    the throwing forms abort with a message instead of throwing.
//
// Two layers, as in tcmalloc (tcmalloc.cc + libc_override.h):
//
//  1. `malloc_bind::Api<Backend>`: one static function per C function and per
//     operator form. Header-only, so every call inlines into the caller: the
//     fast paths of Malloc, Free, OperatorNew and OperatorDelete are a size
//     or null check and a direct call of the backend; failure handling lives
//     in separate cold, non-inlined functions.
//  2. Macros that define the exported entry points from an Api:
//       MALLOC_BIND_DEFINE_C_API(PREFIX, Backend)   // PREFIX##malloc ...
//       MALLOC_BIND_DEFINE_CXX_OPERATORS(Backend)   // operator new/delete
//     With an empty PREFIX they define the real `malloc` & co. (a malloc
//     replacement, e.g. //elfc); with a prefix (`mb_test_`) they define
//     `mb_test_malloc` & co. only, so a test binary keeps running on glibc
//     while it calls the bound functions. Use both macros at global scope, in
//     exactly one translation unit per binary.
//
// Nothing here allocates, locks or uses thread-local storage; everything is
// noexcept except the throwing operator new forms. Linux/glibc only (the
// signatures are glibc's; valloc/pvalloc/memalign/cfree are glibc names).
#ifndef MALLOC_BIND_MALLOC_BIND_H_
#define MALLOC_BIND_MALLOC_BIND_H_

#include <errno.h>
#include <unistd.h>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "malloc_bind/cxx_runtime.h"

namespace malloc_bind {

// The largest size any call can succeed with: no C or C++ object may be
// larger than PTRDIFF_MAX bytes (pointer differences inside it must be
// representable), and glibc fails bigger requests with ENOMEM too.
inline constexpr std::size_t kMaxSize =
    static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());

// The largest power of two a size_t holds (SIZE_MAX / 2 + 1). memalign and
// aligned_alloc fail with EINVAL above it: such an alignment cannot be a
// power of two, nor be rounded up to one (glibc's rule).
inline constexpr std::size_t kMaxAlignment =
    std::numeric_limits<std::size_t>::max() / 2 + 1;

// What an allocator must provide to be bound. All members are static and
// noexcept (so the binding needs no instance and can run before main, inside
// other allocators, in signal handlers if the backend allows it):
//
//   static void* Allocate(std::size_t n) noexcept;
//     At least n bytes aligned to kDefaultAlignment, or nullptr with errno =
//     ENOMEM. n == 0 must give a unique block (or nullptr on failure). The
//     binding only calls it with n <= kMaxSize.
//   static void* AllocateAligned(std::size_t n, std::size_t a) noexcept;
//     At least n bytes aligned to a, or nullptr with errno = ENOMEM. The
//     binding only calls it with a power of two a > kDefaultAlignment and
//     n + a <= kMaxSize (so `n + a` never overflows in the backend). Must
//     work for alignments up to at least 4 MiB (tests check that).
//   static void Deallocate(void* p) noexcept;
//     Frees any block from the calls above (never called with nullptr).
//   static std::size_t UsableSize(const void* p) noexcept;
//     The bytes writable at p (>= what was asked for; never called with
//     nullptr). realloc copies min(UsableSize(p), new size) bytes.
//   static constexpr std::size_t kDefaultAlignment;
//     The alignment of *every* Allocate(n) result, whatever n (a power of two
//     >= sizeof(void*)). Alignment requests up to it are served by Allocate,
//     larger ones by AllocateAligned. An allocator that aligns tiny blocks
//     less (elfmalloc: 8-byte blocks are 8-aligned, the rest 16) must state
//     the smallest guarantee (8), which costs nothing: memalign(16, n) is
//     then AllocateAligned(n, 16).
//
// Success must leave errno unchanged; Deallocate never changes errno. The
// binding relies on this instead of saving and restoring errno on every call.
//
// Optional members, used when present (detected with `requires`):
//
//   static void* AllocateOr(std::size_t n, void* (*on_failure)(std::size_t));
//     Allocate(n), or on_failure(n) where that would fail (not noexcept:
//     on_failure may throw through it). operator new then passes its
//     handler loop and needs no test of the result and no stack frame of
//     its own: its entry point is a jump to AllocateOr. Called with the
//     same n as Allocate (n <= kMaxSize unless kAllocatesAnySize).
//   static void* AllocateZeroed(std::size_t n) noexcept;
//     Like Allocate with the first n bytes zero; calloc uses it (a backend
//     that knows fresh memory is zero skips the memset). Default:
//     Allocate + memset.
//   static void* Reallocate(void* p, std::size_t n) noexcept;
//     realloc for p != nullptr and 0 < n <= kMaxSize: a block of >= n bytes
//     holding the first min(UsableSize(p), n) bytes of p, or nullptr with
//     errno = ENOMEM and p untouched. Default: keep p if n fits and is at
//     least half its usable size, else Allocate + memcpy + Deallocate.
//   static void DeallocateSized(void* p, std::size_t n) noexcept;
//     Deallocate, told the size: n is exactly the size most recently
//     requested for p from Allocate, AllocateZeroed or Reallocate (free_sized,
//     sized operator delete). When a backend has DeallocateSized but no
//     Reallocate, realloc always moves the block, so that this stays true.
//   static void DeallocateAlignedSized(void* p, std::size_t n,
//                                      std::size_t a) noexcept;
//     Likewise for a block from AllocateAligned(n, a) (free_aligned_sized,
//     aligned sized operator delete).
//   static std::size_t ReleaseFreeMemory() noexcept;
//     Returns cached free memory to the OS; returns the bytes released.
//     malloc_trim calls it (and returns 1 iff it released something).
//   static constexpr bool kDeallocatesNull = true;
//     Deallocate(nullptr) is a no-op: free calls Deallocate without a test
//     of its own (two instructions less on every free).
//   static constexpr bool kAllocatesAnySize = true;
//     Allocate(n) fails with ENOMEM for every n > kMaxSize itself: malloc
//     calls it without a compare of its own.
template <class B>
concept Backend = requires(void* p, const void* cp, std::size_t n) {
  { B::Allocate(n) } noexcept -> std::same_as<void*>;
  { B::AllocateAligned(n, n) } noexcept -> std::same_as<void*>;
  { B::Deallocate(p) } noexcept -> std::same_as<void>;
  { B::UsableSize(cp) } noexcept -> std::same_as<std::size_t>;
  { B::kDefaultAlignment } -> std::convertible_to<std::size_t>;
  requires absl::has_single_bit(std::size_t{B::kDefaultAlignment});
  requires B::kDefaultAlignment >= sizeof(void*);
};

template <class B>
concept HasAllocateOr = requires(std::size_t n, void* (*f)(std::size_t)) {
  { B::AllocateOr(n, f) } -> std::same_as<void*>;
};
template <class B>
concept HasAllocateZeroed = requires(std::size_t n) {
  { B::AllocateZeroed(n) } noexcept -> std::same_as<void*>;
};
template <class B>
concept HasReallocate = requires(void* p, std::size_t n) {
  { B::Reallocate(p, n) } noexcept -> std::same_as<void*>;
};
template <class B>
concept HasDeallocateSized = requires(void* p, std::size_t n) {
  { B::DeallocateSized(p, n) } noexcept -> std::same_as<void>;
};
template <class B>
concept HasDeallocateAlignedSized = requires(void* p, std::size_t n) {
  { B::DeallocateAlignedSized(p, n, n) } noexcept -> std::same_as<void>;
};
template <class B>
concept DeallocatesNull = requires {
  requires B::kDeallocatesNull;
};
template <class B>
concept AllocatesAnySize = requires {
  requires B::kAllocatesAnySize;
};
template <class B>
concept HasReleaseFreeMemory = requires {
  { B::ReleaseFreeMemory() } noexcept -> std::convertible_to<std::size_t>;
};

namespace internal {

// Failure helpers, out of line and cold so that the fast paths that call
// them stay a compare and a call.
ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD inline void* FailWithErrno(
    int e) noexcept {
  errno = e;
  return nullptr;
}
ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD inline void* FailNoMem() noexcept {
  return FailWithErrno(ENOMEM);
}

// The system page size for valloc / pvalloc. sysconf(_SC_PAGESIZE) reads a
// value the dynamic loader stored at startup: no system call, no
// allocation, errno untouched.
inline std::size_t PageSize() noexcept {
  return static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace internal

template <Backend B>
class Api {
 public:
  static constexpr std::size_t kDefaultAlignment = B::kDefaultAlignment;

  // ---------------------------------------------------------------- C API

  // malloc: a unique block for n == 0; NULL + ENOMEM for n > kMaxSize.
  ABSL_ATTRIBUTE_ALWAYS_INLINE static void* Malloc(std::size_t n) noexcept {
    if constexpr (!AllocatesAnySize<B>) {
      if (ABSL_PREDICT_FALSE(n > kMaxSize)) return internal::FailNoMem();
    }
    return B::Allocate(n);
  }

  // True when Malloc(n) is B::Allocate(n) and nothing else (the backend
  // refuses oversized requests itself), and likewise Free(p) and
  // B::Deallocate(p): a shared object may then make its malloc and free
  // symbols the backend's functions themselves at link time (elfc/BUILD),
  // which saves a jump on every call. Kept next to Malloc and Free: a
  // change to either must change these too.
  static constexpr bool kMallocIsAllocate = AllocatesAnySize<B>;
  static constexpr bool kFreeIsDeallocate = DeallocatesNull<B>;

  // free / cfree: NULL is a no-op; never changes errno.
  ABSL_ATTRIBUTE_ALWAYS_INLINE static void Free(void* p) noexcept {
    if constexpr (DeallocatesNull<B>) {
      B::Deallocate(p);
    } else {
      if (ABSL_PREDICT_TRUE(p != nullptr)) B::Deallocate(p);
    }
  }
  static void Cfree(void* p) noexcept { Free(p); }

  // calloc: n * m zero bytes; NULL + ENOMEM if the product overflows or
  // exceeds kMaxSize (either argument order). calloc(0, m) is a unique block.
  static void* Calloc(std::size_t n, std::size_t m) noexcept {
    std::size_t total;
    if (ABSL_PREDICT_FALSE(__builtin_mul_overflow(n, m, &total) ||
                           total > kMaxSize)) {
      return internal::FailNoMem();
    }
    if constexpr (HasAllocateZeroed<B>) {
      return B::AllocateZeroed(total);
    } else {
      void* p = B::Allocate(total);
      if (ABSL_PREDICT_TRUE(p != nullptr)) std::memset(p, 0, total);
      return p;
    }
  }

  // realloc (glibc): NULL -> malloc(n); n == 0 frees p and returns NULL with
  // errno untouched; n > kMaxSize -> NULL + ENOMEM, p untouched. Otherwise a
  // block holding the first min(UsableSize(p), n) bytes of p, or NULL +
  // ENOMEM with p untouched.
  static void* Realloc(void* p, std::size_t n) noexcept {
    if (p == nullptr) return Malloc(n);
    if (n == 0) {
      B::Deallocate(p);
      return nullptr;
    }
    if (ABSL_PREDICT_FALSE(n > kMaxSize)) return internal::FailNoMem();
    if constexpr (HasReallocate<B>) {
      return B::Reallocate(p, n);
    } else {
      return ReallocByCopy(p, n);
    }
  }

  // reallocarray: realloc(p, n * m), or NULL + ENOMEM with p untouched if the
  // product overflows. Like glibc, a zero product frees p (it is realloc).
  static void* ReallocArray(void* p, std::size_t n, std::size_t m) noexcept {
    std::size_t total;
    if (ABSL_PREDICT_FALSE(__builtin_mul_overflow(n, m, &total))) {
      return internal::FailNoMem();
    }
    return Realloc(p, total);
  }

  // posix_memalign: EINVAL unless align is a power-of-two multiple of
  // sizeof(void*) (errno and *memptr untouched); ENOMEM on failure (*memptr
  // untouched; errno = ENOMEM as well, as glibc does); else 0 and *memptr.
  // Size 0 gives a unique block.
  static int PosixMemalign(void** memptr, std::size_t align,
                           std::size_t n) noexcept {
    if (ABSL_PREDICT_FALSE(align % sizeof(void*) != 0 ||
                           !absl::has_single_bit(align / sizeof(void*)))) {
      return EINVAL;
    }
    void* p = align <= kDefaultAlignment ? Malloc(n) : AllocAligned(n, align);
    if (ABSL_PREDICT_FALSE(p == nullptr)) return ENOMEM;
    *memptr = p;
    return 0;
  }

  // memalign (glibc 2.36): align <= kDefaultAlignment is malloc; align >
  // kMaxAlignment -> NULL + EINVAL; a non-power-of-two align is rounded up
  // to the next power of two; NULL + ENOMEM if the block cannot exist.
  static void* Memalign(std::size_t align, std::size_t n) noexcept {
    if (align <= kDefaultAlignment) return Malloc(n);
    if (ABSL_PREDICT_FALSE(align > kMaxAlignment)) {
      return internal::FailWithErrno(EINVAL);
    }
    return AllocAligned(n, absl::bit_ceil(align));
  }

  // aligned_alloc: NULL + EINVAL unless align is a power of two (0 is not);
  // otherwise memalign (any size: C17 dropped C11's multiple-of-the-alignment
  // rule). C17's DR 460 makes an unsupported alignment a failure, not
  // undefined behaviour, and glibc 2.38 rejects exactly these; a program that
  // passes 24 almost certainly computed the alignment wrongly, and failing
  // says so where rounding up would hide it.
  static void* AlignedAlloc(std::size_t align, std::size_t n) noexcept {
    if (ABSL_PREDICT_FALSE(!absl::has_single_bit(align))) {
      return internal::FailWithErrno(EINVAL);
    }
    return Memalign(align, n);
  }

  // valloc: memalign(page size, n).
  static void* Valloc(std::size_t n) noexcept {
    return Memalign(internal::PageSize(), n);
  }

  // pvalloc: n rounded up to a whole number of pages (at least one page, so
  // pvalloc(0) is a page: glibc 2.36 returns a 1-byte block there because of
  // a wrong rounding mask), page-aligned; NULL + ENOMEM if rounding
  // overflows.
  static void* Pvalloc(std::size_t n) noexcept {
    const std::size_t page = internal::PageSize();
    if (ABSL_PREDICT_FALSE(n > kMaxSize)) return internal::FailNoMem();
    const std::size_t rounded = n == 0 ? page : (n + page - 1) & ~(page - 1);
    return Memalign(page, rounded);
  }

  // malloc_usable_size: 0 for NULL.
  static std::size_t MallocUsableSize(const void* p) noexcept {
    return p == nullptr ? 0 : B::UsableSize(p);
  }

  // free_sized (C23): p must come from malloc/calloc/realloc with size n.
  static void FreeSized(void* p, std::size_t n) noexcept {
    if (p == nullptr) return;
    if constexpr (HasDeallocateSized<B>) {
      B::DeallocateSized(p, n);
    } else {
      B::Deallocate(p);
    }
  }

  // free_aligned_sized (C23): p must come from aligned_alloc(align, n).
  static void FreeAlignedSized(void* p, std::size_t align,
                               std::size_t n) noexcept {
    if (p == nullptr) return;
    // aligned_alloc served align <= kDefaultAlignment by Allocate(n), and
    // any other (power-of-two) alignment by AllocateAligned(n, align); a
    // wrong, non-power-of-two align is rounded up as memalign would.
    if (align <= kDefaultAlignment) {
      FreeSized(p, n);
    } else if constexpr (HasDeallocateAlignedSized<B>) {
      if (ABSL_PREDICT_TRUE(align <= kMaxAlignment)) {
        B::DeallocateAlignedSized(p, n, absl::bit_ceil(align));
      } else {
        B::Deallocate(p);  // cannot have come from aligned_alloc
      }
    } else {
      B::Deallocate(p);
    }
  }

  // malloc_trim: 1 if the backend released memory to the system, else 0.
  // `pad` is ignored (glibc's meaning, "keep this much at the heap top",
  // has no equivalent in a backend without a single heap top).
  static int MallocTrim(std::size_t /*pad*/) noexcept {
    if constexpr (HasReleaseFreeMemory<B>) {
      return B::ReleaseFreeMemory() != 0 ? 1 : 0;
    } else {
      return 0;
    }
  }

  // mallopt: accepted and ignored; returns 1 ("success"), as tcmalloc does.
  // glibc's parameters tune glibc's own heap (arenas, mmap threshold, trim
  // threshold, perturbation) and mean nothing to another allocator; every
  // one of them is a hint that cannot change a program's correctness, so
  // reporting failure would only make programs print warnings.
  static int Mallopt(int /*param*/, int /*value*/) noexcept { return 1; }

  // ------------------------------------------------- C++ operator new/delete
  // Arrays use the same functions (operator new[] is operator new).

  // operator new(n): on failure, calls std::get_new_handler() until it is
  // null, retrying after each call, then throws std::bad_alloc. A handler's
  // exception propagates. new(0) is a unique block.
  ABSL_ATTRIBUTE_ALWAYS_INLINE static void* OperatorNew(std::size_t n) {
    // A backend that refuses oversized requests itself needs no compare
    // here: its failure reaches the same slow path.
    if (AllocatesAnySize<B> || ABSL_PREDICT_TRUE(n <= kMaxSize)) {
      if constexpr (HasAllocateOr<B>) {
        return B::AllocateOr(n, &NewSlowDefault);
      } else {
        void* p = B::Allocate(n);
        if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
      }
    }
    return NewSlow(n, kDefaultAlignment);
  }

  // operator new(n, nothrow): the same loop, but nullptr instead of
  // bad_alloc, and nullptr if the handler throws (libstdc++ implements it
  // as try { return operator new(n); } catch (...) { return nullptr; }).
  // Not through AllocateOr: a noexcept function's call of one that may
  // throw carries a terminate handler, which needs the C++ runtime's
  // personality routine (a shared object built on this must load without
  // the runtime: elfc).
  ABSL_ATTRIBUTE_ALWAYS_INLINE static void* OperatorNewNothrow(
      std::size_t n) noexcept {
    if (AllocatesAnySize<B> || ABSL_PREDICT_TRUE(n <= kMaxSize)) {
      void* p = B::Allocate(n);
      if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
    }
    return NewNothrowSlow(n, kDefaultAlignment);
  }

  // operator new(n, align_val_t): any power-of-two alignment. An alignment
  // that is not a power of two violates the operator's precondition; like
  // libstdc++ we treat it as a failure and throw bad_alloc at once (no
  // handler: no amount of freed memory would make it valid).
  static void* OperatorNewAligned(std::size_t n, std::align_val_t al) {
    const std::size_t a = static_cast<std::size_t>(al);
    if (ABSL_PREDICT_FALSE(!absl::has_single_bit(a))) internal::ThrowBadAlloc();
    void* p = TryAllocate(n, a);
    if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
    return NewSlow(n, a);
  }

  static void* OperatorNewAlignedNothrow(std::size_t n,
                                         std::align_val_t al) noexcept {
    const std::size_t a = static_cast<std::size_t>(al);
    if (ABSL_PREDICT_FALSE(!absl::has_single_bit(a))) return nullptr;
    void* p = TryAllocate(n, a);
    if (ABSL_PREDICT_TRUE(p != nullptr)) return p;
    return NewNothrowSlow(n, a);
  }

  // operator delete (also the nothrow form): nullptr is a no-op.
  ABSL_ATTRIBUTE_ALWAYS_INLINE static void OperatorDelete(void* p) noexcept {
    Free(p);
  }

  // Sized delete: n is the size given to operator new.
  ABSL_ATTRIBUTE_ALWAYS_INLINE static void OperatorDeleteSized(
      void* p, std::size_t n) noexcept {
    if constexpr (HasDeallocateSized<B>) {
      if (ABSL_PREDICT_FALSE(p == nullptr)) return;
      B::DeallocateSized(p, n);
    } else {
      Free(p);
    }
  }

  // True when operator delete, plain or sized, single or array, is
  // B::Deallocate(p) and nothing else (as kFreeIsDeallocate for free).
  static constexpr bool kOperatorDeleteIsDeallocate =
      DeallocatesNull<B> && !HasDeallocateSized<B>;

  // Aligned delete (also the aligned nothrow form).
  static void OperatorDeleteAligned(void* p, std::align_val_t) noexcept {
    Free(p);
  }

  static void OperatorDeleteAlignedSized(void* p, std::size_t n,
                                         std::align_val_t al) noexcept {
    if (ABSL_PREDICT_FALSE(p == nullptr)) return;
    const std::size_t a = static_cast<std::size_t>(al);
    // Mirrors TryAllocate: small alignments were served by Allocate(n).
    if (a <= kDefaultAlignment) {
      OperatorDeleteSized(p, n);
    } else if constexpr (HasDeallocateAlignedSized<B>) {
      B::DeallocateAlignedSized(p, n, a);
    } else {
      B::Deallocate(p);
    }
  }

 private:
  // A block of n bytes aligned to the power of two `align` > the default,
  // or NULL + ENOMEM. Checks n + align <= kMaxSize, the promise the Backend
  // concept makes to AllocateAligned.
  static void* AllocAligned(std::size_t n, std::size_t align) noexcept {
    if (ABSL_PREDICT_FALSE(n > kMaxSize || align > kMaxSize - n)) {
      return internal::FailNoMem();
    }
    return B::AllocateAligned(n, align);
  }

  // One allocation attempt for operator new: any power-of-two alignment.
  static void* TryAllocate(std::size_t n, std::size_t align) noexcept {
    if (align <= kDefaultAlignment) {
      return ABSL_PREDICT_TRUE(n <= kMaxSize) ? B::Allocate(n) : nullptr;
    }
    return AllocAligned(n, align);
  }

  ABSL_ATTRIBUTE_NOINLINE static void* ReallocByCopy(void* p,
                                                     std::size_t n) noexcept {
    const std::size_t usable = B::UsableSize(p);
    // Keeping p when it fits (and would not waste more than half of it)
    // makes shrinking and growing within the slack free. Not with a sized
    // backend: free_sized(p, n) would then pass a size p was never
    // allocated with, which the backend may route to a different class.
    if constexpr (!HasDeallocateSized<B>) {
      if (n <= usable && n >= usable / 2) return p;
    }
    void* q = B::Allocate(n);
    if (ABSL_PREDICT_FALSE(q == nullptr)) return nullptr;
    std::memcpy(q, p, usable < n ? usable : n);
    B::Deallocate(p);
    return q;
  }

  // The new-handler loop of the throwing forms (after a failed attempt).
  ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD static void* NewSlow(
      std::size_t n, std::size_t align) {
    for (;;) {
      // Read the handler afresh each time: it may have replaced itself.
      const std::new_handler handler = internal::GetNewHandler();
      if (handler == nullptr) internal::ThrowBadAlloc();
      handler();  // may throw; the exception propagates to the caller
      if (void* p = TryAllocate(n, align); p != nullptr) return p;
    }
  }

  // NewSlow at the default alignment: operator new's failure handler for
  // a backend with AllocateOr.
  ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD static void* NewSlowDefault(
      std::size_t n) {
    return NewSlow(n, kDefaultAlignment);
  }

  ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD static void* NewNothrowSlow(
      std::size_t n, std::size_t align) noexcept {
    for (;;) {
      const std::new_handler handler = internal::GetNewHandler();
      if (handler == nullptr) return nullptr;
      if (!internal::CallNewHandlerNothrow(handler)) return nullptr;
      if (void* p = TryAllocate(n, align); p != nullptr) return p;
    }
  }
};

}  // namespace malloc_bind

// ------------------------------------------------------------ entry points

// Exported even from a shared object built with -fvisibility=hidden (elfc
// hides everything except the allocation API).
#define MALLOC_BIND_EXPORT __attribute__((visibility("default")))

// Declares the C API with the given prefix (empty: the real names, which then
// match glibc's <stdlib.h> / <malloc.h> declarations exactly, `noexcept`
// being glibc's __THROW in C++). Use it in a header or test that calls
// prefixed functions defined in another translation unit.
#define MALLOC_BIND_DECLARE_C_API(PREFIX)                                    \
  extern "C" {                                                               \
  MALLOC_BIND_EXPORT void* PREFIX##malloc(std::size_t n) noexcept;           \
  MALLOC_BIND_EXPORT void PREFIX##free(void* p) noexcept;                    \
  MALLOC_BIND_EXPORT void PREFIX##cfree(void* p) noexcept;                   \
  MALLOC_BIND_EXPORT void* PREFIX##calloc(std::size_t n,                     \
                                          std::size_t m) noexcept;           \
  MALLOC_BIND_EXPORT void* PREFIX##realloc(void* p, std::size_t n) noexcept; \
  MALLOC_BIND_EXPORT void* PREFIX##reallocarray(void* p, std::size_t n,      \
                                                std::size_t m) noexcept;     \
  MALLOC_BIND_EXPORT int PREFIX##posix_memalign(                             \
      void** memptr, std::size_t align, std::size_t n) noexcept;             \
  MALLOC_BIND_EXPORT void* PREFIX##aligned_alloc(std::size_t align,          \
                                                 std::size_t n) noexcept;    \
  MALLOC_BIND_EXPORT void* PREFIX##memalign(std::size_t align,               \
                                            std::size_t n) noexcept;         \
  MALLOC_BIND_EXPORT void* PREFIX##valloc(std::size_t n) noexcept;           \
  MALLOC_BIND_EXPORT void* PREFIX##pvalloc(std::size_t n) noexcept;          \
  MALLOC_BIND_EXPORT std::size_t PREFIX##malloc_usable_size(void* p)         \
      noexcept;                                                              \
  MALLOC_BIND_EXPORT void PREFIX##free_sized(void* p, std::size_t n)         \
      noexcept;                                                              \
  MALLOC_BIND_EXPORT void PREFIX##free_aligned_sized(                        \
      void* p, std::size_t align, std::size_t n) noexcept;                   \
  MALLOC_BIND_EXPORT int PREFIX##malloc_trim(std::size_t pad) noexcept;      \
  MALLOC_BIND_EXPORT int PREFIX##mallopt(int param, int value) noexcept;     \
  }

// Defines the C API over Api<Backend>: PREFIX##malloc, free, cfree, calloc,
// realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
// pvalloc, malloc_usable_size, free_sized, free_aligned_sized, malloc_trim
// and mallopt. Not defined (so with an empty prefix glibc's versions remain,
// describing glibc's own, unused heap): mallinfo, mallinfo2, malloc_stats,
// malloc_info, and the __libc_* / __posix_memalign aliases; a fully static
// (-static) link that references one of those would pull glibc's malloc.o
// and clash with these definitions.
#define MALLOC_BIND_DEFINE_C_API(PREFIX, Backend)                             \
  MALLOC_BIND_DECLARE_C_API(PREFIX)                                           \
  extern "C" {                                                                \
  MALLOC_BIND_EXPORT void* PREFIX##malloc(std::size_t n) noexcept {           \
    return ::malloc_bind::Api<Backend>::Malloc(n);                            \
  }                                                                           \
  MALLOC_BIND_EXPORT void PREFIX##free(void* p) noexcept {                    \
    ::malloc_bind::Api<Backend>::Free(p);                                     \
  }                                                                           \
  MALLOC_BIND_EXPORT void PREFIX##cfree(void* p) noexcept {                   \
    ::malloc_bind::Api<Backend>::Cfree(p);                                    \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##calloc(std::size_t n,                      \
                                          std::size_t m) noexcept {           \
    return ::malloc_bind::Api<Backend>::Calloc(n, m);                         \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##realloc(void* p, std::size_t n) noexcept { \
    return ::malloc_bind::Api<Backend>::Realloc(p, n);                        \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##reallocarray(void* p, std::size_t n,       \
                                                std::size_t m) noexcept {     \
    return ::malloc_bind::Api<Backend>::ReallocArray(p, n, m);                \
  }                                                                           \
  MALLOC_BIND_EXPORT int PREFIX##posix_memalign(                              \
      void** memptr, std::size_t align, std::size_t n) noexcept {             \
    return ::malloc_bind::Api<Backend>::PosixMemalign(memptr, align, n);      \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##aligned_alloc(std::size_t align,           \
                                                 std::size_t n) noexcept {    \
    return ::malloc_bind::Api<Backend>::AlignedAlloc(align, n);               \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##memalign(std::size_t align,                \
                                            std::size_t n) noexcept {         \
    return ::malloc_bind::Api<Backend>::Memalign(align, n);                   \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##valloc(std::size_t n) noexcept {           \
    return ::malloc_bind::Api<Backend>::Valloc(n);                            \
  }                                                                           \
  MALLOC_BIND_EXPORT void* PREFIX##pvalloc(std::size_t n) noexcept {          \
    return ::malloc_bind::Api<Backend>::Pvalloc(n);                           \
  }                                                                           \
  MALLOC_BIND_EXPORT std::size_t PREFIX##malloc_usable_size(void* p)          \
      noexcept {                                                              \
    return ::malloc_bind::Api<Backend>::MallocUsableSize(p);                  \
  }                                                                           \
  MALLOC_BIND_EXPORT void PREFIX##free_sized(void* p, std::size_t n)          \
      noexcept {                                                              \
    ::malloc_bind::Api<Backend>::FreeSized(p, n);                             \
  }                                                                           \
  MALLOC_BIND_EXPORT void PREFIX##free_aligned_sized(                         \
      void* p, std::size_t align, std::size_t n) noexcept {                   \
    ::malloc_bind::Api<Backend>::FreeAlignedSized(p, align, n);               \
  }                                                                           \
  MALLOC_BIND_EXPORT int PREFIX##malloc_trim(std::size_t pad) noexcept {      \
    return ::malloc_bind::Api<Backend>::MallocTrim(pad);                      \
  }                                                                           \
  MALLOC_BIND_EXPORT int PREFIX##mallopt(int param, int value) noexcept {     \
    return ::malloc_bind::Api<Backend>::Mallopt(param, value);                \
  }                                                                           \
  }

// Defines all twenty replaceable global operator new / delete forms (C++17:
// plain, nothrow, aligned, aligned nothrow new, scalar and array; plain,
// sized, aligned, sized aligned, nothrow and aligned nothrow delete, scalar
// and array) over Api<Backend>. There is no prefixed variant: operators
// cannot be renamed; test Api<Backend>::Operator* directly instead.
#define MALLOC_BIND_DEFINE_CXX_OPERATORS(Backend)                              \
  MALLOC_BIND_EXPORT void* operator new(std::size_t n) {                       \
    return ::malloc_bind::Api<Backend>::OperatorNew(n);                        \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new[](std::size_t n) {                     \
    return ::malloc_bind::Api<Backend>::OperatorNew(n);                        \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new(std::size_t n,                         \
                                        const std::nothrow_t&) noexcept {      \
    return ::malloc_bind::Api<Backend>::OperatorNewNothrow(n);                 \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new[](std::size_t n,                       \
                                          const std::nothrow_t&) noexcept {    \
    return ::malloc_bind::Api<Backend>::OperatorNewNothrow(n);                 \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new(std::size_t n, std::align_val_t al) {  \
    return ::malloc_bind::Api<Backend>::OperatorNewAligned(n, al);             \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new[](std::size_t n,                       \
                                          std::align_val_t al) {               \
    return ::malloc_bind::Api<Backend>::OperatorNewAligned(n, al);             \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new(                                       \
      std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {    \
    return ::malloc_bind::Api<Backend>::OperatorNewAlignedNothrow(n, al);      \
  }                                                                            \
  MALLOC_BIND_EXPORT void* operator new[](                                     \
      std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {    \
    return ::malloc_bind::Api<Backend>::OperatorNewAlignedNothrow(n, al);      \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete(void* p) noexcept {                  \
    ::malloc_bind::Api<Backend>::OperatorDelete(p);                            \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete[](void* p) noexcept {                \
    ::malloc_bind::Api<Backend>::OperatorDelete(p);                            \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete(void* p,                             \
                                          const std::nothrow_t&) noexcept {    \
    ::malloc_bind::Api<Backend>::OperatorDelete(p);                            \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete[](void* p,                           \
                                            const std::nothrow_t&) noexcept {  \
    ::malloc_bind::Api<Backend>::OperatorDelete(p);                            \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete(void* p, std::size_t n) noexcept {   \
    ::malloc_bind::Api<Backend>::OperatorDeleteSized(p, n);                    \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete[](void* p, std::size_t n) noexcept { \
    ::malloc_bind::Api<Backend>::OperatorDeleteSized(p, n);                    \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete(void* p,                             \
                                          std::align_val_t al) noexcept {      \
    ::malloc_bind::Api<Backend>::OperatorDeleteAligned(p, al);                 \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete[](void* p,                           \
                                            std::align_val_t al) noexcept {    \
    ::malloc_bind::Api<Backend>::OperatorDeleteAligned(p, al);                 \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete(                                     \
      void* p, std::align_val_t al, const std::nothrow_t&) noexcept {          \
    ::malloc_bind::Api<Backend>::OperatorDeleteAligned(p, al);                 \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete[](                                   \
      void* p, std::align_val_t al, const std::nothrow_t&) noexcept {          \
    ::malloc_bind::Api<Backend>::OperatorDeleteAligned(p, al);                 \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete(void* p, std::size_t n,              \
                                          std::align_val_t al) noexcept {      \
    ::malloc_bind::Api<Backend>::OperatorDeleteAlignedSized(p, n, al);         \
  }                                                                            \
  MALLOC_BIND_EXPORT void operator delete[](void* p, std::size_t n,            \
                                            std::align_val_t al) noexcept {    \
    ::malloc_bind::Api<Backend>::OperatorDeleteAlignedSized(p, n, al);         \
  }

#endif  // MALLOC_BIND_MALLOC_BIND_H_
