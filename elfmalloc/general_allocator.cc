// The global general allocator: lazily built shared heap, routing by size and
// by stamp, realloc policy, fallback path. See general_allocator.h.
#include "elfmalloc/general_allocator.h"

#include <pthread.h>
#include <sys/auxv.h>
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "bsalloc/bsalloc.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/large_alloc.h"
#include "elfmalloc/magazine_cache.h"
#include "elfmalloc/options.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/platform.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_allocator.h"
#include "elfmalloc/spin_lock.h"
#include "elfmalloc/thread_cache.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {


// The reference's general allocator parameters (general.rs): cutoff 0.6,
// whole page usable. We use cutoff 0.3: a floating slab is listed for reuse
// once 30% of it is free, so threads refill from partly used slabs before
// touching fresh pages (with 0.6 a slab whose objects sat in another
// thread's magazine or in flight stayed unlisted, and each class in a
// producer-consumer program kept three or four slabs resident; a claim
// still yields at least 30% of a slab, 19 KiB of 64 KiB). Its fixed 16 available queues per class cost a bagpipe
// segment each (26 x 16 x 4 KiB, ~1.7 MiB resident from the first malloc,
// the biggest part of elfc's fixed overhead over glibc); we use 2 per CPU,
// between 2 and 16 (its own TODO: "should depend on num_cpus"). Its eager uncommit of 2 MiB slabs
// and its 1 MiB dirty budget are replaced by the page allocators' decay rule
// (page_alloc.h): eager uncommit made every slab turnover of the 256 KiB..
// 1 MiB classes an madvise plus hundreds of page faults (ring and producer-
// consumer workloads ran at a quarter of glibc's speed), and 1 MiB held not
// even one 2 MiB page.
constexpr double kCutoff = 0.3;
std::size_t AvailableQueues() {
  const std::size_t cpus = AvailableCpus();
  std::size_t q = absl::bit_ceil(2 * cpus);
  return q < 2 ? 2 : (q > 16 ? 16 : q);
}

// Configuration from the options table (options.h: every tunable's
// default, range and environment variable, and why the dirty-page
// thresholds per page size are what they are), read once when the heap is
// built; decay and thresholds may change later (ApplyRuntimeOptions).
PageAlloc::Options Configure(PageAlloc::Options o, OptionId max_dirty_mib) {
  o.decay_ms = GetOption(OptionId::kDecayMs);
  // <= kMaxDirtyMiB (2^20): the shift cannot overflow.
  o.max_dirty_bytes = static_cast<std::size_t>(GetOption(max_dirty_mib)) << 20;
  return o;
}

// The large-block cache's cap and decay period (large_alloc.h, "Reuse"):
// the same decay period as the slab pages.
void ConfigureLargeCache() {
  // <= kMaxDirtyMiB (2^20): the shift cannot overflow.
  SetLargeCacheLimits(
      static_cast<std::size_t>(GetOption(OptionId::kLargeCacheMb)) << 20,
      GetOption(OptionId::kDecayMs));
}

// Double free of a slab block, in every build (same thread or another, at
// once or after any number of other frees, as long as the two frees do not
// race each other): free writes the block's free mark, FreeMark(p) = a
// per-process secret key (from the kernel's AT_RANDOM bytes) xor p, into
// its first word, and a free that finds the mark already there aborts with
// one line naming the pointer and its size class. Every allocation of a
// slab block clears the word (Handout). The block is ours from free to the
// next allocation (the magazines keep their pointers in stacks of their
// own, not in the blocks), so the mark survives the magazine, the flush to
// the slab and any later magazine until the block is handed out again.
// A live block carries its mark only if the program stored that value at
// that address: the key is secret and the mark bound to the address, so
// that takes reading the block's own first word while it was free and
// writing it back after it was reallocated. Before aborting, the slow path
// (FreeMarked) confirms that p is an object start of its class: the
// mark at a position no block starts at is not ours. Cost: a load, a
// compare and a store on the block's first cache line per free, a store
// per allocation (the program is about to write that line anyway): 4
// instructions per malloc/free pair with the frameless free below
// (callgrind: pair_latency 84 -> 88 per pair, +1.8% over the
// single-thread harness rows).
// glibc's tcache key is the same idea (in the second word; its free lists
// live in the blocks).
//
// The checked build (ELFMALLOC_CHECKED, `//elfc:libelfc_checked.so`) adds
// to that:
//   * Interior pointers: p must be an object start of its slab (exact
//     divisibility by the class size, with a precomputed multiplicative
//     inverse: no division) and of a large block (p == base + header).
//   * Foreign pointers: a stamp that is not elfmalloc's already aborts in
//     every build, and so does a slab tag that is not one of our classes.
// It reads nothing but the class's metadata and the block's first word
// (checking the tag against the slab header's metadata as well would read
// a second cache line per free).
// Not detected: a double free of a large block once its region was reused
// or unmapped (while it waits in the large-block cache, every build reports
// it: AllocType::kFreedLarge), and two frees of one block racing each other
// on different threads.
#if defined(ELFMALLOC_CHECKED)
constexpr bool kChecked = true;
#else
constexpr bool kChecked = false;
#endif

// The free key; set once by InitFreeKey before the heap is published (no
// slab block exists before then). Its top bit is set, so no user-space
// address xor the key is 0, the word Handout leaves in live blocks.
ABSL_CONST_INIT std::uint64_t g_free_key = 0;

void InitFreeKey() {
  std::uint64_t k = 0x9E3779B97F4A7C15ull;
  if (const auto* r =
          reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM))) {
    std::memcpy(&k, r + 8, sizeof(k));  // glibc uses bytes 0..7 (canary)
  }
  k ^= reinterpret_cast<std::uintptr_t>(&g_free_key) * 0xBF58476D1CE4E5B9ull;
  g_free_key = k | (std::uint64_t{1} << 63);
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline std::uint64_t FreeMark(const void* p) {
  return g_free_key ^ reinterpret_cast<std::uintptr_t>(p);
}

// Exact-divisibility test by d = 2^shift * odd (Granlund and Montgomery):
// x is a multiple of d iff its low `shift` bits are zero and
// (x >> shift) * inverse(odd) mod 2^64 <= (2^64 - 1) / odd.
struct Divisor {
  unsigned shift = 0;
  std::uint64_t inverse = 0;
  std::uint64_t limit = 0;
  static constexpr Divisor Of(std::uint64_t d) {
    Divisor r;
    while ((d & 1) == 0) {
      d >>= 1;
      ++r.shift;
    }
    std::uint64_t inv = d;  // Newton's iteration: 5 steps give 64 bits
    for (int i = 0; i < 5; ++i) inv *= 2 - d * inv;
    r.inverse = inv;
    r.limit = ~std::uint64_t{0} / d;
    return r;
  }
  constexpr bool Divides(std::uint64_t x) const {
    if ((x & ((std::uint64_t{1} << shift) - 1)) != 0) return false;
    return (x >> shift) * inverse <= limit;
  }
};

// Per class, computed at compile time (a runtime Divisor::Of costs a 64-bit
// division per free).
constexpr std::array<Divisor, kNumSizeClasses> kClassDivisors = [] {
  std::array<Divisor, kNumSizeClasses> d{};
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    d[i] = Divisor::Of(ClassSize(SizeClass(static_cast<std::uint8_t>(i))));
  }
  return d;
}();

// Whether p is an object start of a slab of class c whose metadata is m.
// Everything comes from the class (no read of the slab's header, which
// would be a second cache line per free).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool IsObjectStart(const void* p,
                                                       SizeClass c,
                                                       const SlabMetadata& m) {
  const std::size_t off = reinterpret_cast<std::uintptr_t>(p) &
                          (std::uintptr_t{m.page_size} - 1);
  return off >= m.objects_offset &&
         kClassDivisors[c.index()].Divides(off - m.objects_offset) &&
         off - m.objects_offset < m.n_objects * m.object_size;
}

// The checked free of slab pointer p of class c (from its tag) whose
// class's metadata is m: p must be an object start (the tag is already
// checked to be a class in every build).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CheckedFreeSlab(
    void* p, SizeClass c, const SlabMetadata& m) {
  if (ABSL_PREDICT_FALSE(!IsObjectStart(p, c, m))) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: free(%p): not the start of a block (interior "
                 "pointer, or not from this allocator)",
                 p);
  }
}

void CheckedFreeLarge(void* p) {
  const LargeHeader* h = LargeHeaderOf(p);
  if (static_cast<char*>(h->base) + h->header_space != p) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: free(%p): not the start of a large block "
                 "(interior pointer)",
                 p);
  }
}

// One spin-locked slab allocator per class, for threads without a heap.
struct Fallback {
  SpinLock lock;
  SlabAllocator slabs;
  // Allocations minus frees through this path (written under the lock, read
  // by statistics without it).
  std::atomic<std::int64_t> net{0};
};

// The shared heap. Built once in mmap_alloc memory and never destroyed:
// objects may be freed by any thread until the process ends.
class Heap {
 public:
  Heap() noexcept
      : small_(Configure(PageAlloc::SmallPages(), OptionId::kMaxDirtySmallMb)),
        mid_(Configure(PageAlloc::MidPages(), OptionId::kMaxDirtyMidMb)),
        medium_(Configure(PageAlloc::MediumPages(),
                          OptionId::kMaxDirtyMediumMb)) {}

  bool Init() noexcept {
    if (!small_.valid() || !mid_.valid() || !medium_.valid()) return false;
    const std::size_t queues = AvailableQueues();
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      const SizeClass c(static_cast<std::uint8_t>(i));
      SlabClass::Options o;
      o.object_size = ClassSize(c);
      o.cutoff = kCutoff;
      o.available_queues = queues;
      // Slab::TagOf gives class + 1 (0, what untagged fresh memory reads,
      // is no class).
      o.tag = static_cast<std::uint8_t>(i + 1);
      PageAlloc* pa = ClassPageSize(c) == kSmallPageSize ? &small_
                      : ClassPageSize(c) == kMidPageSize ? &mid_
                                                         : &medium_;
      SlabClass* cls = ::new (&classes_[i]) SlabClass(pa, o);
      if (!cls->valid()) return false;  // leaked: the heap is unusable anyway
      ::new (&fallback_[i]) Fallback();
      fallback(c).slabs = SlabAllocator(cls);
    }
    return true;
  }

  SlabClass* classes() noexcept {
    return std::launder(reinterpret_cast<SlabClass*>(&classes_[0]));
  }
  SlabClass& cls(SizeClass c) noexcept { return classes()[c.index()]; }
  Fallback& fallback(SizeClass c) noexcept {
    return *std::launder(reinterpret_cast<Fallback*>(&fallback_[c.index()]));
  }

  PageAlloc& small() noexcept { return small_; }
  PageAlloc& mid() noexcept { return mid_; }
  PageAlloc& medium() noexcept { return medium_; }

  // pthread_atfork handlers: every lock of the heap is taken before fork()
  // and released after it in both processes, so that the child never
  // inherits a lock held by a thread that does not exist there. Order:
  // the init lock, the thread-heap registry, then the fallback locks in
  // class order (no path holds two of them at once except this one). A
  // lock the forking thread itself holds (fork from a signal handler that
  // interrupted its section) is left to that section (spin_lock.h).
  void LockAll() noexcept {
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      fallback(SizeClass(static_cast<std::uint8_t>(i))).lock.LockForFork();
    }
  }
  void UnlockAll() noexcept {
    for (std::size_t i = kNumSizeClasses; i-- > 0;) {
      fallback(SizeClass(static_cast<std::uint8_t>(i))).lock.UnlockAfterFork();
    }
  }

 private:
  PageAlloc small_;
  PageAlloc mid_;
  PageAlloc medium_;
  alignas(SlabClass) unsigned char classes_[kNumSizeClasses][sizeof(SlabClass)];
  alignas(Fallback) unsigned char fallback_[kNumSizeClasses][sizeof(Fallback)];
};

ABSL_CONST_INIT SpinLock g_init_lock;
// Whether StartBackgroundDecay started the decay thread in this process.
ABSL_CONST_INIT std::atomic<bool> g_decay_thread_started{false};
// Published with release after the heap is fully built.
ABSL_CONST_INIT std::atomic<Heap*> g_heap{nullptr};
ABSL_CONST_INIT bool g_init_failed = false;  // guarded by g_init_lock

// The options hook (SetOption, e.g. elfc_set_option): pushes the run-time
// settable options into the live page allocators.
void ApplyRuntimeOptions() {
  Heap* h = g_heap.load(std::memory_order_acquire);
  if (h == nullptr) return;  // the heap reads them when it is built
  const struct {
    PageAlloc* pa;
    OptionId max_dirty_mib;
  } targets[] = {{&h->small(), OptionId::kMaxDirtySmallMb},
                 {&h->mid(), OptionId::kMaxDirtyMidMb},
                 {&h->medium(), OptionId::kMaxDirtyMediumMb}};
  for (const auto& t : targets) {
    const PageAlloc::Options o = Configure(PageAlloc::Options(), t.max_dirty_mib);
    t.pa->set_max_dirty_bytes(o.max_dirty_bytes);
    if (t.pa->decay_ms() != o.decay_ms) t.pa->set_decay_ms(o.decay_ms);
    // A lowered cap applies now, not only to the next free: cached dirty
    // pages above it go back to the OS.
    const std::size_t cap = o.max_dirty_bytes / t.pa->page_size();
    const std::size_t dirty = t.pa->GetStats().dirty_pages;
    if (dirty > cap) {
      PageAlloc::Handle handle = t.pa->NewHandle();
      if (handle.valid()) handle.ReleaseDirty(dirty - cap);
    }
  }
  ConfigureLargeCache();
}

// A page refill could not map memory (PageAlloc::SetPressureHook): return
// what every cache holds, so that the refill's second try can use it.
// Every thread heap is asked to drain (thread_cache.h, "Draining": their
// claimed slabs and cached objects go back at their next slow path, the
// failing thread's own at once, by ThreadHeap::AllocAfterFailure), so
// that a later pressure call finds their pages free. The current heap is
// not drained here: the hook runs inside one of its slab allocators'
// refills. Pooled thread heaps are left alone here (the hook runs inside a
// refill, possibly under a fallback lock); the failing allocation releases
// them (ThreadHeap::AllocAfterFailure, AllocLarge).
void OnMemoryPressure() {
  RequestDrain();
  LargeCacheRelease();
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return;
  for (PageAlloc* pa : {&heap->small(), &heap->mid(), &heap->medium()}) {
    PageAlloc::Handle h = pa->NewHandle();
    if (h.valid()) {
      h.ReleaseDirty(SIZE_MAX);
      h.UnmapFreeRegions();
    }
  }
}

ABSL_ATTRIBUTE_NOINLINE Heap* InitHeapSlow() {
  SpinLockHolder l(&g_init_lock);
  Heap* h = g_heap.load(std::memory_order_acquire);
  if (h != nullptr || g_init_failed) return h;
  void* mem = mmap_alloc::Map(sizeof(Heap));
  if (mem != nullptr) {
    h = ::new (mem) Heap();
    if (!h->Init()) {
      h = nullptr;  // its memory is leaked; the process is out of memory
    }
  }
  if (h == nullptr) {
    g_init_failed = true;  // do not retry on every call
    errno = ENOMEM;
    return nullptr;
  }
  ConfigureLargeCache();
  PageAlloc::SetPressureHook(&OnMemoryPressure);
  InitFreeKey();
  g_heap.store(h, std::memory_order_release);
  SetOptionsApplyHook(&ApplyRuntimeOptions);
  return h;
}

// The handlers may run in a signal handler that interrupted this thread
// inside any of the sections these locks guard: each lock is taken only if
// this thread does not hold it, and released only by the fork that took it
// (SpinLock::LockForFork). A section left locked that way is the
// interrupted code's, in both processes: it finishes and unlocks if the
// signal handler returns.
void PreFork() {
  EnterForkHandlers();
  g_init_lock.LockForFork();
  ThreadCachePreFork();
  if (Heap* h = g_heap.load(std::memory_order_acquire)) h->LockAll();
  LargeCachePreFork();
}

void PostForkParent() {
  LargeCachePostFork();
  if (Heap* h = g_heap.load(std::memory_order_acquire)) h->UnlockAll();
  ThreadCachePostForkParent();
  g_init_lock.UnlockAfterFork();
  LeaveForkHandlers();
}

// Lock-free structures need no repair in the child: an operation cut short
// by the fork (a dead thread's push, pop or slab transition) at worst leaks
// the item it was moving. Thread-owned state (other threads' heaps, their
// claimed slabs, their epoch records) is released as far as it is safe in
// ThreadCachePostForkChild and bagpipe::epoch::AfterForkInChild.
void PostForkChild() {
  // The background decay thread was not copied (general_allocator.h,
  // "Background decay"): StartBackgroundDecay may start one again.
  g_decay_thread_started.store(false, std::memory_order_relaxed);
  LargeCachePostFork();
  if (Heap* h = g_heap.load(std::memory_order_acquire)) h->UnlockAll();
  ThreadCachePostForkChild();
  g_init_lock.UnlockAfterFork();
  LeaveForkHandlers();
}

// Registered once, by the thread that built the heap, after publishing it
// and outside g_init_lock: glibc's pthread_atfork keeps its first 48
// handlers in static storage, and if it ever allocates, the nested malloc
// finds the heap ready instead of deadlocking on the init lock.
ABSL_CONST_INIT std::atomic<bool> g_atfork_registered{false};
void RegisterForkHandlers() {
  if (!g_atfork_registered.exchange(true, std::memory_order_acq_rel)) {
    if (pthread_atfork(&PreFork, &PostForkParent, &PostForkChild) != 0) {
      ABSL_RAW_LOG(ERROR, "elfmalloc: pthread_atfork failed; fork() while "
                          "other threads allocate may deadlock the child");
    }
  }
}

ABSL_ATTRIBUTE_NOINLINE Heap* InitHeapAndForkHandlers() {
  Heap* h = InitHeapSlow();
  if (h != nullptr) RegisterForkHandlers();
  return h;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline Heap* GetHeap() {
  Heap* h = g_heap.load(std::memory_order_acquire);
  return ABSL_PREDICT_TRUE(h != nullptr) ? h : InitHeapAndForkHandlers();
}

void* FallbackAlloc(Heap* heap, SizeClass c) {
  Fallback& f = heap->fallback(c);
  SpinLockHolder l(&f.lock);
  void* p = f.slabs.Alloc();
  if (p != nullptr) {
    f.net.store(f.net.load(std::memory_order_relaxed) + 1,
                std::memory_order_relaxed);
  }
  return p;
}

// A live block never carries its free mark (see FreeMark). The fast path
// knows p is not null.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* HandoutNonNull(void* p) {
  *static_cast<std::uint64_t*>(p) = 0;
  return p;
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* Handout(void* p) {
  return p == nullptr ? p : HandoutNonNull(p);
}

// No heap for this thread yet (or none possible).
ABSL_ATTRIBUTE_NOINLINE void* AllocClassSlow(SizeClass c) {
  Heap* heap = GetHeap();
  if (heap == nullptr) {
    // Every call after a failed heap build fails the same way (only the
    // build itself used to set errno).
    errno = ENOMEM;
    return nullptr;
  }
  void* p;
  if (ThreadHeap* th = InitThreadHeap(heap->classes())) {
    p = th->Alloc(c);
    if (p == nullptr) p = th->AllocAfterFailure(c);
  } else {
    p = FallbackAlloc(heap, c);
  }
  if (p == nullptr) errno = ENOMEM;
  return Handout(p);
}

// The magazine of class c is empty.
ABSL_ATTRIBUTE_NOINLINE void* AllocClassRefill(ThreadHeap* th, SizeClass c) {
  // Large blocks cached for a whole period go back even when the program
  // now allocates only small ones (large_alloc.h, "Reuse").
  LargeCacheDecay();
  void* p = th->AllocSlow(c);
  if (ABSL_PREDICT_FALSE(p == nullptr)) {
    // The refill's pressure hook may have asked for a drain: this thread's
    // own claimed slabs go back first (thread_cache.h, "Draining").
    p = th->AllocAfterFailure(c);
    if (p == nullptr) errno = ENOMEM;
  }
  return Handout(p);
}

// The fast path is the magazine pop; both slow paths are tail calls, so it
// needs no stack frame of its own.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void* AllocClass(SizeClass c) {
  ThreadHeap* th = CurrentThreadHeap();
  if (ABSL_PREDICT_FALSE(th == nullptr)) return AllocClassSlow(c);
  void* p;
  if (ABSL_PREDICT_FALSE(!th->TryAlloc(c, &p))) return AllocClassRefill(th, c);
  return HandoutNonNull(p);
}

[[noreturn]] ABSL_ATTRIBUTE_NOINLINE ABSL_ATTRIBUTE_COLD void DieNotOurs(
    const void* p) {
  if (ReadAllocType(p) == AllocType::kFreedLarge) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: double free of %p (a large block, already freed "
                 "and cached for reuse)",
                 p);
  }
  ABSL_RAW_LOG(FATAL, "elfmalloc: %p was not allocated by elfmalloc", p);
  std::abort();  // not reached: FATAL aborts
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool IsSlabType(AllocType t) {
  static_assert(static_cast<int>(AllocType::kSmallSlab) == 1 &&
                static_cast<int>(AllocType::kMediumSlab) == 2);
  return static_cast<std::uint64_t>(t) - 1 < 2;
}

// The class of a slab pointer, from its slab's tag (Slab::TagOf: the same
// cache line as the stamp; the tag is class + 1). A tag that is not a class
// (0: an untagged slab of some other allocator) aborts.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline SizeClass TagClass(const void* p) {
  const unsigned c = static_cast<unsigned>(Slab::TagOf(p)) - 1u;
  if (ABSL_PREDICT_FALSE(c >= kNumSizeClasses)) DieNotOurs(p);
  return SizeClass(static_cast<std::uint8_t>(c));
}

// The checked build's slab checks (CheckedFreeSlab) for a pointer whose tag
// says class c.
inline void CheckedFreeSlabOfClass(void* p, SizeClass c) {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (ABSL_PREDICT_FALSE(heap == nullptr)) {
    ABSL_RAW_LOG(FATAL, "elfmalloc: %p freed before any allocation", p);
  }
  CheckedFreeSlab(p, c, heap->cls(c).metadata());
}

// Deallocate's slow paths are noexcept, like Deallocate: the fast path
// then reaches them by a jump and needs no stack frame (a noexcept caller
// must call a function that may throw, to catch the exception and
// terminate: 2 instructions per free).
ABSL_ATTRIBUTE_NOINLINE void FreeSlow(SizeClass c, void* p) noexcept {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) DieNotOurs(p);  // a tag, but no heap: not ours
  if (ThreadHeap* th = InitThreadHeap(heap->classes())) {
    th->Free(c, p);
    return;
  }
  Fallback& f = heap->fallback(c);
  SpinLockHolder l(&f.lock);
  f.net.store(f.net.load(std::memory_order_relaxed) - 1,
              std::memory_order_relaxed);
  f.slabs.Free(p);
}

// The rest of a slab free after the mark check: the magazine push, else
// its slow paths.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void PushFreed(SizeClass c,
                                                   void* p) noexcept {
  ThreadHeap* th = CurrentThreadHeap();
  if (ABSL_PREDICT_FALSE(th == nullptr)) return FreeSlow(c, p);
  if (ABSL_PREDICT_FALSE(!th->TryFree(c, p))) return th->FreeSlow(c, p);
}

// The first word of p is p's free mark: aborts with "elfmalloc: <what>
// <p> (size class ...)" if p is an object start of class c (the mark is
// ours: the block is free), else returns.
ABSL_ATTRIBUTE_NOINLINE void DieIfMarkIsOurs(const char* what, SizeClass c,
                                             const void* p) noexcept {
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr || IsObjectStart(p, c, heap->cls(c).metadata())) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: %s %p (size class %u: %zu-byte blocks); the "
                 "block was freed before and not allocated since",
                 what, p, static_cast<unsigned>(c.index()), ClassSize(c));
  }
}

// A free found p's free mark in its first word. Aborts (naming the error,
// the pointer and the size class) unless p is no object start of its class,
// in which case the word is not a mark of ours and the free goes on. Not
// [[noreturn]], so that the fast path reaches it by a jump and keeps no
// registers across it.
ABSL_ATTRIBUTE_NOINLINE void FreeMarked(SizeClass c, void* p) noexcept {
  DieIfMarkIsOurs("double free of", c, p);
  PushFreed(c, p);
}

// DieNotOurs reached by a jump from the fast path (see FreeMarked).
ABSL_ATTRIBUTE_NOINLINE void FreeNotOurs(const void* p) noexcept {
  DieNotOurs(p);
}

bool IsPow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Large blocks. The heap is built first, as for every other allocation, so
// that the options (the large cache's limits among them) are in force.
ABSL_ATTRIBUTE_NOINLINE void* AllocLarge(std::size_t n, std::size_t align,
                                         bool zero) {
  if (ABSL_PREDICT_FALSE(GetHeap() == nullptr)) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = zero ? LargeAllocZeroed(n) : LargeAlloc(n, align);
  if (ABSL_PREDICT_FALSE(p == nullptr) && errno == ENOMEM) {
    // Free slab regions may be exactly the address space that is missing;
    // this thread's claimed slabs and retired threads' pooled heaps go back
    // first, so that the regions they pinned can be unmapped now.
    DrainThreadHeap();
    TryReleasePooledThreadHeaps();
    OnMemoryPressure();
    p = zero ? LargeAllocZeroed(n) : LargeAlloc(n, align);
  }
  return p;
}

}  // namespace

void* Allocate(std::size_t n) noexcept {
  if (ABSL_PREDICT_TRUE(IsSlabSize(n))) return AllocClass(SizeToClass(n));
  return AllocLarge(n, 0, false);
}

void* AllocateZeroed(std::size_t n) noexcept {
  if (IsSlabSize(n)) {
    void* p = AllocClass(SizeToClass(n));
    if (ABSL_PREDICT_TRUE(p != nullptr)) std::memset(p, 0, n);
    return p;
  }
  // Fresh large mappings are not written: sparse calloc arrays cost only
  // the pages the program touches.
  return AllocLarge(n, 0, true);
}

void* Allocate(std::size_t n, std::size_t align) noexcept {
  if (align <= 8) return Allocate(n);
  if (!IsPow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  if (IsSlabSize(n)) {
    const SizeClass c = SizeToClass(n);
    if (ClassAlignment(c) >= align) return AllocClass(c);
    const std::size_t m = absl::bit_ceil(n > align ? n : align);
    // Every power of two from 16 to 256 KiB is a class aligned to its size.
    if (IsSlabSize(m)) return AllocClass(SizeToClass(m));
  }
  return AllocLarge(n, align, false);
}

void Deallocate(void* p) noexcept {
  if (p == nullptr) return;
  // One cache line classifies p: the stamp and the tag table of its 2 MiB
  // region (alloc_type.h, slab.h "Tags").
  const AllocType t = ReadAllocType(p);
  if (ABSL_PREDICT_TRUE(IsSlabType(t))) {
    // TagClass, with its failure reached by a jump.
    const unsigned ci = static_cast<unsigned>(Slab::TagOf(p)) - 1u;
    if (ABSL_PREDICT_FALSE(ci >= kNumSizeClasses)) {
      return FreeNotOurs(p);
    }
    const SizeClass c(static_cast<std::uint8_t>(ci));
    if (kChecked) CheckedFreeSlabOfClass(p, c);
    // The free mark (see FreeMark), then the magazine push. Every slow path
    // is a tail call: the fast path needs no stack frame.
    std::uint64_t* word = static_cast<std::uint64_t*>(p);
    const std::uint64_t mark = FreeMark(p);
    if (ABSL_PREDICT_FALSE(*word == mark)) return FreeMarked(c, p);
    *word = mark;
    return PushFreed(c, p);
  }
  if (t != AllocType::kLarge) return FreeNotOurs(p);
  if (kChecked) CheckedFreeLarge(p);
  LargeFree(p);
}

std::size_t UsableSize(const void* p) noexcept {
  if (p == nullptr) return 0;
  const AllocType t = ReadAllocType(p);
  if (IsSlabType(t)) return ClassSize(TagClass(p));
  if (t != AllocType::kLarge) DieNotOurs(p);
  return LargeUsableSize(p);
}

void* Reallocate(void* p, std::size_t n) noexcept {
  if (p == nullptr) return Allocate(n);
  const AllocType t = ReadAllocType(p);
  if (IsSlabType(t)) {
    const SizeClass c = TagClass(p);
    // A freed block (its free mark, see FreeMark): the same report as a
    // double free, also when the block would be kept in place.
    if (ABSL_PREDICT_FALSE(*static_cast<const std::uint64_t*>(p) ==
                           FreeMark(p))) {
      DieIfMarkIsOurs("realloc of freed block", c, p);
    }
    const std::size_t old = ClassSize(c);
    if (n <= old) {
      // Shrink only when it saves at least half the block.
      const std::size_t now = ClassSize(SizeToClass(n));
      if (now > old / 2) return p;
    }
  } else {
    if (t != AllocType::kLarge) DieNotOurs(p);
    // Large: a size that fits a class moves to a slab (a whole mapping for
    // <= 256 KiB is wasteful); otherwise mremap, which grows or shrinks.
    if (!IsSlabSize(n)) return LargeRealloc(p, n);
  }
  void* q = Allocate(n);
  if (q == nullptr) return nullptr;
  const std::size_t old_usable = UsableSize(p);
  std::memcpy(q, p, old_usable < n ? old_usable : n);
  Deallocate(p);
  return q;
}

void MarkThreadIdle() noexcept { ReleaseThreadHeap(); }

namespace {

// The background decay thread (general_allocator.h, "Background decay").
void* DecayThreadMain(void*) {
  Heap* heap = GetHeap();
  if (heap == nullptr) return nullptr;
  PageAlloc::Handle handles[] = {heap->small().NewHandle(),
                                 heap->mid().NewHandle(),
                                 heap->medium().NewHandle()};
  for (;;) {
    // Never keep the process alive: glibc ends it when its last thread
    // exits, and this thread counts. Once main has left by pthread_exit,
    // the program's own threads decide when the process ends, so stop.
    if (MainThreadExited()) return nullptr;
    const std::uint64_t decay_ms = GetOption(OptionId::kDecayMs);
    std::uint64_t sleep_ms = decay_ms / 4;
    if (decay_ms == 0 || sleep_ms > 1000) sleep_ms = 1000;
    if (sleep_ms < 10) sleep_ms = 10;
    SleepMs(sleep_ms);
    if (decay_ms == 0) continue;  // disabled (it may be enabled later)
    for (PageAlloc::Handle& h : handles) {
      if (h.valid()) h.Tick();
    }
    LargeCacheDecay();
  }
}

}  // namespace

bool StartBackgroundDecay() noexcept {
  if (GetOption(OptionId::kBackgroundDecay) == 0) return false;
  if (g_decay_thread_started.exchange(true, std::memory_order_acq_rel)) {
    return true;
  }
  // The heap first, on this thread: the new thread then only looks it up.
  if (GetHeap() == nullptr || !StartDetachedThread(&DecayThreadMain, nullptr)) {
    g_decay_thread_started.store(false, std::memory_order_release);
    return false;
  }
  return true;
}

std::size_t ReleaseFreeMemory() noexcept {
  std::size_t bytes = LargeCacheRelease();
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return bytes;
  // Retired threads' heaps first, and this thread's claimed slabs and
  // cached objects: they may be what keeps pages from being free. Other
  // threads drain theirs at their next slow path (thread_cache.h,
  // "Draining").
  ReleasePooledThreadHeaps();
  RequestDrain();
  DrainThreadHeap();
  for (PageAlloc* pa : {&heap->small(), &heap->mid(), &heap->medium()}) {
    // A temporary handle (bagpipe handles are cheap, bsalloc-backed).
    PageAlloc::Handle h = pa->NewHandle();
    if (h.valid()) {
      bytes += h.ReleaseDirty(SIZE_MAX) * pa->page_size();
      h.UnmapFreeRegions();
    }
  }
  return bytes;
}

Stats GetStats() noexcept {
  Stats s;
  const LargeStats large = GetLargeStats();
  s.large_bytes = large.mapped_bytes;
  s.large_allocations = large.allocations;
  s.thread_heaps = LiveThreadHeaps();
  s.mapped_bytes = large.mapped_bytes + large.cached_bytes;
  s.large_cached_bytes = large.cached_bytes;
  s.active_bytes = large.mapped_bytes;
  s.allocated_bytes = large.mapped_bytes;
  Heap* heap = g_heap.load(std::memory_order_acquire);
  if (heap == nullptr) return s;
  for (const PageAlloc* pa : {&heap->small(), &heap->mid(), &heap->medium()}) {
    const PageAlloc::Stats ps = pa->GetStats();
    s.mapped_bytes += ps.mapped_bytes;
    s.dirty_bytes += ps.dirty_pages * pa->page_size();
    s.returned_bytes += ps.clean_pages * pa->page_size();
  }
  std::int64_t net[kNumSizeClasses] = {};
  AddNetAllocations(net);
  AddCachedObjects(s.class_cached_objects);
  s.pooled_thread_heaps = PooledThreadHeaps();
  s.metadata_bytes = bsalloc::GetStats().mapped_bytes + sizeof(Heap);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    const SizeClass c(static_cast<std::uint8_t>(i));
    const std::size_t pages = heap->cls(c).pages_in_use();
    s.class_pages_in_use[i] = pages;
    s.active_bytes += pages * ClassPageSize(c);
    const std::int64_t n =
        net[i] + heap->fallback(c).net.load(std::memory_order_relaxed);
    // Transiently negative while another thread's free is counted before
    // its allocation is (relaxed counters): report 0.
    s.class_allocated_objects[i] = n > 0 ? static_cast<std::size_t>(n) : 0;
    s.allocated_bytes += s.class_allocated_objects[i] * ClassSize(c);
  }
  s.resident_bytes = s.active_bytes + s.dirty_bytes + s.metadata_bytes;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0) {
    s.peak_resident_bytes = static_cast<std::size_t>(ru.ru_maxrss) * 1024;
  }
  return s;
}

}  // namespace elfmalloc
