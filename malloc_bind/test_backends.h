// Backends that malloc_bind's own tests bind: two real allocators and one
// instrumented fake.
//
//  * BsallocBackend: bsalloc, which needs the block size on free and aligns
//    everything to a page, behind a 16-byte header recording the mapping
//    (so free needs no size and blocks are 16-aligned like glibc's). A
//    minimal backend: only the required members, so every default path of
//    Api (memset calloc, copying realloc, unsized free) runs over it.
//  * ElfBackend: elfmalloc's general allocator, as //elfc binds it (with its
//    Reallocate and ReleaseFreeMemory).
//  * RecordingBackend<kFull>: a fake over glibc's malloc that counts every
//    call, can be told to fail the next N allocations (deterministic
//    new-handler and out-of-memory tests), aborts if a sized free names a
//    size or alignment the block was not allocated with, and hands out dirty
//    memory (so a missing memset in calloc
//    shows). With kFull it also has every optional member (AllocateZeroed,
//    Reallocate, DeallocateSized, DeallocateAlignedSized,
//    ReleaseFreeMemory), so both sides of each `if constexpr` in Api are
//    tested.
//
// Test-only: the fake allocates with glibc, which a real backend must never
// do.
#ifndef MALLOC_BIND_TEST_BACKENDS_H_
#define MALLOC_BIND_TEST_BACKENDS_H_

#include <errno.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bsalloc/bsalloc.h"
#include "elfmalloc/general_allocator.h"
#include "malloc_bind/malloc_bind.h"

namespace malloc_bind::backends {

// ---------------------------------------------------------------- bsalloc

// Layout of a block: [base .. p-16) padding (aligned blocks only),
// [p-16 .. p) the header, [p .. base+total) the caller's bytes. bsalloc
// blocks are page-aligned, so p = base + 16 is 16-aligned, and an aligned
// block is the first multiple of `a` at or after base + 16, which lies within
// base + a because base is a multiple of 16 (total = n + a suffices).
// UsableSize is what bsalloc really gives for `total` minus the offset: the
// slack of bsalloc's 4 KiB / 32 KiB / page-rounded blocks is usable.
struct BsallocBackend {
  static constexpr std::size_t kDefaultAlignment = 16;

  static void* Allocate(std::size_t n) noexcept {
    return Place(n + kHeaderSize, kHeaderSize);
  }
  static void* AllocateAligned(std::size_t n, std::size_t a) noexcept {
    return Place(n + a, a);
  }
  static void Deallocate(void* p) noexcept {
    const Header* h = HeaderOf(p);
    bsalloc::Deallocate(h->base, h->total);
  }
  static std::size_t UsableSize(const void* p) noexcept {
    const Header* h = HeaderOf(p);
    return bsalloc::UsableSize(h->total) -
           static_cast<std::size_t>(static_cast<const char*>(p) -
                                    static_cast<const char*>(h->base));
  }

 private:
  struct Header {
    void* base;         // what bsalloc returned
    std::size_t total;  // what bsalloc was asked for (routes the free)
  };
  static constexpr std::size_t kHeaderSize = 16;
  static_assert(sizeof(Header) == kHeaderSize);

  // Callers guarantee total <= PTRDIFF_MAX + 16 (the binding caps n + a at
  // PTRDIFF_MAX); bsalloc fails anything above its kMaxSize with ENOMEM.
  static void* Place(std::size_t total, std::size_t align) noexcept {
    void* base = bsalloc::Allocate(total);
    if (base == nullptr) return nullptr;  // errno = ENOMEM from bsalloc
    const std::uintptr_t b = reinterpret_cast<std::uintptr_t>(base);
    const std::uintptr_t p = (b + kHeaderSize + align - 1) & ~(align - 1);
    Header* h = reinterpret_cast<Header*>(p - kHeaderSize);
    h->base = base;
    h->total = total;
    return reinterpret_cast<void*>(p);
  }
  static const Header* HeaderOf(const void* p) noexcept {
    return reinterpret_cast<const Header*>(static_cast<const char*>(p) -
                                           kHeaderSize);
  }
};

// ---------------------------------------------------------------- elfmalloc

// elfmalloc's own backend (elfmalloc/general_allocator.h), as //elfc binds
// it.
using ElfBackend = elfmalloc::MallocBackend;

// ------------------------------------------------------- recording fake

// Counters of one RecordingBackend instantiation. Relaxed atomics: tests read
// them after the calls they check, on the same thread, or after joining.
struct Counters {
  std::atomic<std::int64_t> allocate{0};           // Allocate calls
  std::atomic<std::int64_t> allocate_or{0};        // AllocateOr calls
  std::atomic<std::int64_t> allocate_aligned{0};   // AllocateAligned calls
  std::atomic<std::int64_t> allocate_zeroed{0};    // AllocateZeroed calls
  std::atomic<std::int64_t> reallocate{0};         // Reallocate calls
  std::atomic<std::int64_t> deallocate{0};         // Deallocate calls
  std::atomic<std::int64_t> deallocate_sized{0};   // DeallocateSized calls
  std::atomic<std::int64_t> deallocate_aligned_sized{0};
  std::atomic<std::int64_t> release{0};            // ReleaseFreeMemory calls
  std::atomic<std::int64_t> failures{0};           // injected failures
  std::atomic<std::int64_t> live{0};               // blocks not yet freed
  std::atomic<std::size_t> last_sized_free{0};     // n of the last sized free
  std::atomic<std::size_t> last_aligned_free{0};   // a of the last aligned one

  void Reset() {
    for (auto* c : {&allocate, &allocate_or, &allocate_aligned,
                    &allocate_zeroed,
                    &reallocate, &deallocate, &deallocate_sized,
                    &deallocate_aligned_sized, &release, &failures, &live}) {
      c->store(0, std::memory_order_relaxed);
    }
    last_sized_free.store(0, std::memory_order_relaxed);
    last_aligned_free.store(0, std::memory_order_relaxed);
  }
};

// kFull: whether the optional members exist. kDefaultAlignment is 16.
// Usable size = request rounded up to 16, so realloc within the slack is
// observable. Requests above kLimit fail with ENOMEM without calling malloc
// (keeps sanitizer runtimes, which abort on absurd sizes, out of it).
template <bool kFull>
class RecordingBackend {
 public:
  static constexpr std::size_t kDefaultAlignment = 16;
  static constexpr std::size_t kLimit = std::size_t{1} << 40;
  static constexpr unsigned char kDirt = 0xA5;  // fill of fresh blocks

  static Counters& counters() {
    static Counters c;  // constant-initialised (atomics' constexpr ctor)
    return c;
  }
  // The next n allocation attempts (any Allocate*, Reallocate) fail.
  static void FailNext(int n) {
    fail_next().store(n, std::memory_order_relaxed);
  }

  static void* Allocate(std::size_t n) noexcept {
    counters().allocate.fetch_add(1, std::memory_order_relaxed);
    return Make(n, kDefaultAlignment, /*zero=*/false);
  }
  static void* AllocateAligned(std::size_t n, std::size_t a) noexcept {
    counters().allocate_aligned.fetch_add(1, std::memory_order_relaxed);
    if (a <= kDefaultAlignment || (a & (a - 1)) != 0 || n + a > kMaxSize) {
      std::abort();  // the binding broke its promise to the backend
    }
    return Make(n, a, /*zero=*/false);
  }
  static void Deallocate(void* p) noexcept {
    counters().deallocate.fetch_add(1, std::memory_order_relaxed);
    Destroy(p);
  }
  static std::size_t UsableSize(const void* p) noexcept {
    return RoundUp16(HeaderOf(p)->requested);
  }

  // Optional members.
  // Allocate, counted as an AllocateOr call too, then on_failure.
  static void* AllocateOr(std::size_t n, void* (*on_failure)(std::size_t))
    requires kFull
  {
    counters().allocate_or.fetch_add(1, std::memory_order_relaxed);
    void* p = Allocate(n);
    return p != nullptr ? p : on_failure(n);
  }
  static void* AllocateZeroed(std::size_t n) noexcept
    requires kFull
  {
    counters().allocate_zeroed.fetch_add(1, std::memory_order_relaxed);
    return Make(n, kDefaultAlignment, /*zero=*/true);
  }
  static void* Reallocate(void* p, std::size_t n) noexcept
    requires kFull
  {
    counters().reallocate.fetch_add(1, std::memory_order_relaxed);
    if (p == nullptr || n == 0) std::abort();  // Api handles these itself
    void* q = Make(n, kDefaultAlignment, /*zero=*/false);
    if (q == nullptr) return nullptr;
    const std::size_t old = UsableSize(p);
    std::memcpy(q, p, old < n ? old : n);
    Destroy(p);
    return q;
  }
  static void DeallocateSized(void* p, std::size_t n) noexcept
    requires kFull
  {
    counters().deallocate_sized.fetch_add(1, std::memory_order_relaxed);
    counters().last_sized_free.store(n, std::memory_order_relaxed);
    const Header* h = HeaderOf(p);
    if (h->requested != n || h->align != kDefaultAlignment) {
      DieOfMismatch("DeallocateSized", p, n, kDefaultAlignment, h);
    }
    Destroy(p);
  }
  static void DeallocateAlignedSized(void* p, std::size_t n,
                                     std::size_t a) noexcept
    requires kFull
  {
    counters().deallocate_aligned_sized.fetch_add(1,
                                                  std::memory_order_relaxed);
    counters().last_sized_free.store(n, std::memory_order_relaxed);
    counters().last_aligned_free.store(a, std::memory_order_relaxed);
    const Header* h = HeaderOf(p);
    if (h->requested != n || h->align != a) {
      DieOfMismatch("DeallocateAlignedSized", p, n, a, h);
    }
    Destroy(p);
  }
  // Returns the number of frees since the previous call (0: nothing to
  // release), standing in for "bytes released".
  static std::size_t ReleaseFreeMemory() noexcept
    requires kFull
  {
    counters().release.fetch_add(1, std::memory_order_relaxed);
    return static_cast<std::size_t>(
        frees_since_release().exchange(0, std::memory_order_relaxed));
  }

 private:
  struct Header {
    std::uint64_t magic;
    std::size_t requested;
    std::size_t align;
    void* base;
  };
  static_assert(sizeof(Header) == 32);
  static constexpr std::uint64_t kMagic = 0x6d625f7265636f72;  // "mb_recor"

  static std::atomic<int>& fail_next() {
    static std::atomic<int> f{0};
    return f;
  }
  static std::atomic<std::int64_t>& frees_since_release() {
    static std::atomic<std::int64_t> f{0};
    return f;
  }
  static std::size_t RoundUp16(std::size_t n) { return (n + 15) & ~15ul; }

  // A sized free whose size or alignment is not the allocation's is a
  // binding bug (the promise in the Backend concept): fail loudly, whichever
  // test it happens in.
  [[noreturn]] static void DieOfMismatch(const char* what, const void* p,
                                         std::size_t n, std::size_t a,
                                         const Header* h) {
    std::fprintf(stderr,
                 "RecordingBackend: %s(%p, n=%zu, a=%zu) of a block "
                 "allocated with n=%zu, a=%zu\n",
                 what, p, n, a, h->requested, h->align);
    std::abort();
  }

  static bool ConsumeFailure() {
    int f = fail_next().load(std::memory_order_relaxed);
    while (f > 0) {
      if (fail_next().compare_exchange_weak(f, f - 1,
                                            std::memory_order_relaxed)) {
        counters().failures.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    return false;
  }

  static void* Make(std::size_t n, std::size_t a, bool zero) noexcept {
    if (ConsumeFailure() || n > kLimit || a > kLimit) {
      errno = ENOMEM;
      return nullptr;
    }
    const std::size_t usable = RoundUp16(n);
    // malloc is 16-aligned; room for the header plus the alignment shift.
    const std::size_t total = usable + sizeof(Header) + a;
    void* base = std::malloc(total);
    if (base == nullptr) return nullptr;  // errno = ENOMEM from malloc
    const std::uintptr_t b = reinterpret_cast<std::uintptr_t>(base);
    const std::uintptr_t p = (b + sizeof(Header) + a - 1) & ~(a - 1);
    Header* h = reinterpret_cast<Header*>(p - sizeof(Header));
    *h = Header{kMagic, n, a, base};
    std::memset(reinterpret_cast<void*>(p), zero ? 0 : kDirt, usable);
    counters().live.fetch_add(1, std::memory_order_relaxed);
    return reinterpret_cast<void*>(p);
  }

  static void Destroy(void* p) noexcept {
    Header* h = const_cast<Header*>(HeaderOf(p));
    if (h->magic != kMagic) std::abort();  // not ours, or freed twice
    h->magic = 0;
    void* base = h->base;
    counters().live.fetch_sub(1, std::memory_order_relaxed);
    frees_since_release().fetch_add(1, std::memory_order_relaxed);
    const int saved = errno;  // glibc's free keeps errno; be explicit
    std::free(base);
    errno = saved;
  }

  static const Header* HeaderOf(const void* p) noexcept {
    return reinterpret_cast<const Header*>(static_cast<const char*>(p) -
                                           sizeof(Header));
  }
};

using FullBackend = RecordingBackend<true>;
using MinimalBackend = RecordingBackend<false>;

static_assert(Backend<BsallocBackend>);
static_assert(Backend<ElfBackend> && HasReallocate<ElfBackend> &&
              HasReleaseFreeMemory<ElfBackend>);
static_assert(Backend<FullBackend> && Backend<MinimalBackend>);
static_assert(HasReallocate<FullBackend> && !HasReallocate<MinimalBackend>);
static_assert(HasAllocateZeroed<FullBackend> &&
              HasDeallocateSized<FullBackend> &&
              HasDeallocateAlignedSized<FullBackend> &&
              HasReleaseFreeMemory<FullBackend>);
static_assert(!HasAllocateZeroed<MinimalBackend> &&
              !HasDeallocateSized<MinimalBackend> &&
              !HasDeallocateAlignedSized<MinimalBackend> &&
              !HasReleaseFreeMemory<MinimalBackend>);

}  // namespace malloc_bind::backends

#endif  // MALLOC_BIND_TEST_BACKENDS_H_
