// ThreadHeap and the reentrancy-safe per-thread state of the general
// allocator (the reference's alloc-tls, allocators-rs section 6, with
// tcmalloc/snmalloc-style thread exit).
//
// A ThreadHeap is one thread's front ends: one MagazineCache per size class,
// each created on the class's first use. It lives in bsalloc memory.
//
// The magazines' stacks live side by side in one mapping per heap, the
// stack arena (StackArena below), reserved at the first cache's creation
// and committed by the kernel as the stacks fill. A stack of a class above
// 256 bytes is at most 1.6 KiB (204 objects of 320 B; 16 of 8 KiB), so a
// mapping per stack took a whole page per class and thread; in the arena
// the 44 such stacks fill 3 pages. 1000 threads holding one block of each
// of 26 classes (16 B-32 KiB): 330 -> 294 MiB resident (glibc 100 MiB;
// the rest is mostly each thread's claimed slab of each class). Each stack
// keeps its room for bursts (MagazineStackBytes), so the arena takes as
// much address space as the separate mappings did. The arena starts with
// every class's nursery (magazine_cache.h, "Nursery"), where a cache lives
// until its thread uses the class more than lightly.
//
// The thread's state is a constinit, initial-exec `thread_local` pair
// (trivially destructible, so reading it never allocates or registers a
// destructor) with four values:
//
//   kUninitialized --first use--> kInitializing --heap built--> kInitialized
//        ^                              |                           |
//        |                              +--(out of memory)----------+
//        +-------- ReleaseThreadHeap() (MarkThreadIdle) ------------+
//                                                                   |
//   kDropped <------------- thread exit (key destructor) -----------+
//
// * InitThreadHeap sets kInitializing BEFORE anything that could allocate or
//   re-enter: creating the pthread key, pthread_setspecific (glibc callocs
//   its second-level key array for keys >= 32), bsalloc, mmap. A nested
//   malloc/free on the same thread during that window sees kInitializing and
//   takes the caller's fallback path instead of recursing.
// * One process-wide pthread key carries the heap pointer, which is never
//   null while a heap exists, so its destructor always runs at thread exit.
//   The destructor marks the thread kDropped first (allocations made by later
//   TLS destructors take the fallback path: they must not resurrect a heap
//   that nobody would destroy), then destroys the heap: each MagazineCache
//   returns its cached objects to their slabs and releases its claimed slabs
//   (the slab allocator's release policy: wholly free pages go back to the
//   page allocator, others are listed or float until freed).
// * Retired heaps are pooled (tcmalloc keeps a free list of thread caches
//   for the same reason): at thread exit the heap is trimmed to
//   kRetiredKeepBytes of cached objects per class and, if the pool holds
//   fewer than PoolLimit() heaps (the CPU count, 2..8), kept there with its
//   magazines and claimed slabs; the next thread that needs a heap takes it
//   instead of mapping a magazine per class again and refilling it from the
//   slabs. A program that replaces its threads all the time (a server's
//   worker churn, Larson's benchmark) then pays neither. Otherwise the heap
//   is destroyed as before. Pooled heaps stay in the registry (their
//   counters still add up) and are destroyed by ReleasePooledThreadHeaps()
//   (malloc_trim). Worst case held by the pool: PoolLimit() x classes x
//   kRetiredKeepBytes plus one claimed slab per class and heap (two for
//   the classes of 64 KiB and 2 MiB pages: slab_allocator.h, "The previous
//   slab").
// * Draining (RequestDrain): a thread's claimed slabs are reachable by
//   that thread only, so a slab of a 16..256 KiB class whose objects are
//   all free still pins its whole 2 MiB region (address space under
//   RLIMIT_AS or strict overcommit, and its touched pages) until its owner
//   lets go. When memory runs out (the general allocator's pressure hook)
//   or malloc_trim runs, RequestDrain() bumps a process-wide drain epoch;
//   every heap compares it with the epoch it last drained at on its slow
//   paths (AllocSlow, FreeSlow: never on the fast path) and, when it moved,
//   drains every cache (MagazineCache::Drain: cached objects back to their
//   slabs, claimed slabs released, wholly free ones to the page
//   allocators). A thread whose allocation failed drains at once and tries
//   again (AllocAfterFailure, which the general allocator calls when an
//   allocation returns nullptr), and DrainThreadHeap() drains the calling
//   thread's heap now. Pooled heaps drain at their new thread's first slow
//   path, and are destroyed when an allocation fails
//   (TryReleasePooledThreadHeaps).
//   A heap that is drained keeps its magazines (their mappings): only the
//   memory they cached goes back.
// * ReleaseThreadHeap() destroys a live thread's heap (never pools it: the
//   point is to give its memory back) and returns the thread to
//   kUninitialized (the next allocation builds a fresh heap): for threads
//   going idle, and for tests that must observe the exit path.
//
// * Signal handlers that allocate and free while they interrupt one of the
//   thread's slow paths (a refill, a flush, a drain) would find a magazine
//   or a slab allocator half updated. So the slow paths run in a section
//   (a flag of the heap, set and cleared by the owner) with the magazine
//   they change blocked (MagazineCache::ShadowScope: both fast paths fail),
//   and a slow path that finds the flag set is a handler's: it does not
//   touch the caches. Its free puts the block in the heap's handler stash
//   (kHandlerStashEntries encoded entries; more are leaked, never
//   corrupting anything); its malloc takes a block of the class from the
//   stash (a handler that frees and then allocates gets its own blocks
//   back), else asks the nested-allocation source (SetNestedAllocSource:
//   the general allocator's shared fallback, if its lock is free), else
//   fails. The section hands what the stash holds to the caches before it
//   ends. Handlers that interrupt a fast path (two instructions between
//   its test and its update) and reach a slow path of the same class are
//   not covered. The stash protocol: only handlers add entries (into a
//   slot that reads 0) and set stash_pending_; a handler runs to
//   completion before the code it interrupted resumes, so handlers never
//   interleave with each other; the drain, which a handler may interrupt
//   anywhere, takes each entry with one exchange (one instruction: a
//   handler sees the entry there, and may take it, or gone) and clears
//   stash_pending_ before it scans, so that an entry added behind the scan
//   is found by the next drain.
//
// The fast path is one TLS load: tls_hot, the heap's fast-path states, or
// empty states while the thread has no heap (tls_heap is non-null exactly in
// kInitialized; the slow paths read it).
// Only the owning thread reads or writes its state, so no atomics are needed;
// the heap's objects may be freed by any thread through that thread's own
// heap (remote frees are the slab layer's business).
//
// Never calls malloc; nothing throws.
#ifndef ELFMALLOC_THREAD_CACHE_H_
#define ELFMALLOC_THREAD_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "elfmalloc/magazine_cache.h"
#include "elfmalloc/size_classes.h"
#include "elfmalloc/slab_allocator.h"

namespace elfmalloc {

// Entries of a heap's fast-path array: one per possible slab tag byte.
inline constexpr std::size_t kHotEntries = 256;
// Entries of a heap's handler stash (see "Signal handlers").
inline constexpr std::size_t kHandlerStashEntries = 64;

// Where a signal handler's malloc that its heap's stash cannot serve gets
// an object of class c (see "Signal handlers"): it must not wait for
// anything the interrupted thread may hold. nullptr (the default): such a
// malloc fails.
using NestedAllocSource = void* (*)(SizeClass c) noexcept;
void SetNestedAllocSource(NestedAllocSource source) noexcept;

// One entry of a heap's fast-path array: the magazine's state and the
// alignment mask of the tag's objects (TagAlignMask), which free tests the
// pointer against before it touches the block. Free indexes this entry by
// the pointer's slab tag anyway, so the mask costs a load from a line it
// reads anyway; from a table of its own the test cost one instruction more
// per free (callgrind, pair_latency) and the checks every build makes cost
// 17% instead of 10% of the malloc/free pair's throughput (against the
// unchecked build, 7 interleaved runs). The mask is written once, when the
// array is built (WriteAlignMasks), and never changes.
struct HotSlot {
  MagazineHot hot;
  std::uint64_t align_mask = 0;
  std::uint64_t unused = 0;  // a power-of-two size: indexing is a shift
};
static_assert(sizeof(HotSlot) == 32);

// Gives every entry of a fast-path array its tag's mask.
constexpr void WriteAlignMasks(HotSlot* slots) noexcept {
  for (std::size_t t = 0; t < kHotEntries; ++t) {
    slots[t].align_mask = TagAlignMask(t);
  }
}

class ThreadHeap {
 public:
  // classes: kNumSizeClasses SlabClasses that outlive the heap.
  // drain_epoch: the drain epoch at creation (see "Draining").
  // Writes the fast-path states only: a cache's slot is constructed on
  // the class's first use (see "Slots").
  explicit ThreadHeap(SlabClass* classes,
                      std::uint32_t drain_epoch = 0) noexcept
      : classes_(classes), drain_epoch_(drain_epoch) {
    BuildHotArray();
  }
  ThreadHeap(const ThreadHeap&) = delete;
  ThreadHeap& operator=(const ThreadHeap&) = delete;
  // The caches' destructors return their objects and slabs.
  ~ThreadHeap();

  // An object of class c (nullptr when memory is exhausted). The fast path
  // is the magazine's pop (TryAlloc); the first use of a class creates its
  // cache (AllocSlow).
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Alloc(SizeClass c) noexcept {
    void* p;
    return ABSL_PREDICT_TRUE(TryAlloc(c, &p)) ? p : AllocSlow(c);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryAlloc(SizeClass c, void** p) noexcept {
    return (hot() + 1)[c.index()].hot.TryAlloc(p);
  }
  ABSL_ATTRIBUTE_NOINLINE void* AllocSlow(SizeClass c) noexcept;
  // After Alloc/AllocSlow returned nullptr: drains this heap if a drain was
  // requested (a failed mapping requests one, see "Draining") and tries
  // again, once more after a drain requested meanwhile. Also the slow
  // path's drain.
  ABSL_ATTRIBUTE_NOINLINE void* AllocAfterFailure(SizeClass c) noexcept;
  // Frees an object of class c (allocated by any thread).
  ABSL_ATTRIBUTE_ALWAYS_INLINE void Free(SizeClass c, void* p) noexcept {
    if (ABSL_PREDICT_FALSE(!TryFree(c, p))) FreeSlow(c, p);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryFree(SizeClass c, void* p) noexcept {
    return (hot() + 1)[c.index()].hot.TryFree(p);
  }
  // The fast-path states, indexed by slab tag (class + 1, Slab::TagOf):
  // entry 0 and every entry past the last class stay empty, so a tag that
  // names no class fails TryFree and reaches the slow path, which reports
  // it. 8 KiB, of which the heap writes the entries up to the last class
  // (2 KiB) when it is built; the 195 entries past it are only ever read,
  // for a tag that names no class (no slab writes one: only a corrupted
  // tag table has it), and an empty state with mask 0 is all zero bytes,
  // which a fresh mapping already holds (see BuildHotArray).
  HotSlot* hot() noexcept {
    return std::launder(reinterpret_cast<HotSlot*>(hot_storage_));
  }
  // Free when the magazine is full or not created yet.
  ABSL_ATTRIBUTE_NOINLINE void FreeSlow(SizeClass c, void* p) noexcept;

  // The front end of class c, created on first use.
  MagazineCache& Cache(SizeClass c) noexcept {
    if (ABSL_PREDICT_FALSE(!Constructed(c.index()) ||
                           !SlotOf(c.index()).cache().valid())) {
      CreateCache(c);
    }
    return SlotOf(c.index()).cache();
  }
  // Number of classes whose cache exists (for tests).
  std::size_t CachesCreated() const noexcept;
  // Allocations minus frees of class c made through this heap.
  std::int64_t NetAllocations(std::size_t c) const noexcept {
    return Constructed(c) ? SlotOf(c).cache().net_allocations() : 0;
  }
  // Flushes every cache down to at most `keep_bytes` of cached objects.
  // No-op inside a slow path (a signal handler's call).
  void Trim(std::size_t keep_bytes) noexcept;
  // Drains every cache (MagazineCache::Drain) and notes the drain epoch.
  // No-op inside a slow path (a signal handler's call).
  void Drain() noexcept;
  // Blocks in the handler stash (tests).
  std::size_t StashedForTesting() const noexcept;

  // The handler stash for a caller that tells handlers apart itself (the
  // hardened general allocator's sections, which also guard its
  // quarantine): a handler's free and malloc (see "Signal handlers"), and,
  // when the interrupted operation ends, the stash into the caches.
  void HandlerFree(SizeClass c, void* p) noexcept { NestedFree(c, p); }
  void* HandlerAlloc(SizeClass c) noexcept { return NestedAlloc(c); }
  void DrainHandlerStash() noexcept;
  // Checks the decay rule of each page allocator this heap's caches use
  // (one Tick per page allocator: a clock read each). InitThreadHeap calls
  // it when a thread takes over a pooled heap: the decay rule runs on page
  // traffic, and threads that start, reuse a pooled heap's claimed slabs
  // and exit make none, so a burst freed earlier stayed dirty for good.
  void TickDecay() noexcept;

 private:
  friend class HeapRegistry;
  friend void LeaveInterruptedSlowPathInForkChild() noexcept;
  class Section;
  void CreateCache(SizeClass c) noexcept;
  // The slow paths' work, inside a Section.
  void* AllocInSection(SizeClass c) noexcept;
  void* AllocAfterFailureInSection(SizeClass c) noexcept;
  void FreeInSection(SizeClass c, void* p) noexcept;
  void DrainInSection() noexcept;
  // A signal handler's malloc and free inside a slow path (see "Signal
  // handlers").
  ABSL_ATTRIBUTE_NOINLINE void* NestedAlloc(SizeClass c) noexcept;
  ABSL_ATTRIBUTE_NOINLINE void NestedFree(SizeClass c, void* p) noexcept;
  // The stash into the caches (inside a Section).
  void DrainStash() noexcept;

  // The magazines' stacks, one mapping per heap (see the file comment).
  class StackArena {
   public:
    StackArena() noexcept = default;
    ~StackArena();
    StackArena(const StackArena&) = delete;
    StackArena& operator=(const StackArena&) = delete;
    // The stack of class c: MagazineStackBytes(ClassSize(c)) bytes, or
    // nullptr when the arena cannot be mapped (the cache then maps its own).
    void** StackOf(SizeClass c) noexcept;
    // The nursery of class c (magazine_cache.h, "Nursery"): kNurseryEntries
    // entries, all classes' side by side at the arena's start. Only after
    // StackOf(c) returned non-null.
    void** NurseryOf(SizeClass c) noexcept;

   private:
    void* map_ = nullptr;
  };

  // The fields the constructor writes come first, beside the fast-path
  // states, so that a heap whose thread uses a few classes commits the
  // pages of those and of its used slots only (at the end, they took a
  // page of their own).
  SlabClass* classes_;
  // Links in the registry of heaps (thread_cache.cc), guarded by its lock.
  ThreadHeap* prev_ = nullptr;
  ThreadHeap* next_ = nullptr;
  // The pool of retired heaps (thread_cache.cc), guarded by the same lock.
  ThreadHeap* pool_next_ = nullptr;
  bool pooled_ = false;
  // The drain epoch this heap last drained at (see "Draining" above).
  std::uint32_t drain_epoch_;
  // Inside a slow path, and the handler stash (see "Signal handlers").
  bool in_slow_path_ = false;
  bool stash_pending_ = false;
  // Slots in order of first use (see "Slots"): slot_of_[c] is 1 + the
  // index in caches_ of class c's slot, 0 before its first use.
  std::uint8_t slots_used_ = 0;
  std::uint8_t slot_of_[kNumSizeClasses] = {};
  // 1 + the class whose cache CreateCache is building, else 0 (for a fork
  // child that a signal handler's fork left inside it).
  std::uint8_t creating_ = 0;
  std::uint64_t stash_[kHandlerStashEntries] = {};
  // Storage of the fast-path array (hot()): raw bytes, so that building the
  // heap does not write all of it (a HotSlot member array would be
  // value-initialised whole).
  alignas(64) unsigned char hot_storage_[kHotEntries * sizeof(HotSlot)];
  // Constructs the entries up to the last class with their masks
  // (TagAlignMask) and empty states. The entries past it must read as
  // empty states with mask 0, that is as zero bytes: each is checked and
  // only written if it is not (a recycled block; a heap is larger than
  // bsalloc's cached blocks on 4 KiB pages, so it is a fresh mapping
  // there). Reading a page that was never written maps the
  // kernel's zero page and costs no memory: 200 threads holding one block
  // of each of 8 classes cost 4 KiB less each than with the whole array
  // written (elfc/thread_footprint.cc).
  void BuildHotArray() noexcept;
  // The coalescer table every cache's flush uses (magazine_cache.h, "The
  // Coalescer"), mapped with the first cache. Declared before caches_ so
  // that it is destroyed after them (their destructors flush).
  Coalescer coalescer_;
  // Declared before caches_ for the same reason.
  StackArena stacks_;
  // The bytes of objects this heap's magazines may still grow by in bursts
  // (magazine_cache.h, "Bursts"); before caches_, whose destructors give
  // their share back.
  std::size_t burst_budget_ = kThreadBurstBytes;
  // Slots. The rest of each cache (slow paths only), on its own cache
  // line(s), constructed on the class's first use (CreateCache): a slot is
  // 448 bytes, and constructing all 61 when the heap was built wrote 7
  // pages per thread, most of them for classes the thread never uses. A
  // class takes the next free slot when it is first used, so a thread's
  // slots fill the array from its start: with a slot per class at the
  // class's index, a thread using 7 classes spread from 16 B to 4 KiB
  // touched 5 of the 7 pages, where 7 slots fill one.
  // `constructed_` has bit c set once class c's slot holds a cache (valid or not);
  // the owner sets it after the construction with release order, and
  // statistics on other threads read it with acquire order before they
  // read the cache's counters.
  struct alignas(64) Slot {
    alignas(MagazineCache) unsigned char bytes[sizeof(MagazineCache)];
    MagazineCache& cache() noexcept {
      return *std::launder(reinterpret_cast<MagazineCache*>(bytes));
    }
    const MagazineCache& cache() const noexcept {
      return *std::launder(reinterpret_cast<const MagazineCache*>(bytes));
    }
  };
  static_assert(kNumSizeClasses <= 64, "constructed_ has a bit per class");
  bool Constructed(std::size_t c) const noexcept {
    return (constructed_.load(std::memory_order_acquire) >> c) & 1;
  }
  std::atomic<std::uint64_t> constructed_{0};
  // Class c's slot; c must have one (Constructed(c), or inside CreateCache).
  Slot& SlotOf(std::size_t c) noexcept { return caches_[slot_of_[c] - 1]; }
  const Slot& SlotOf(std::size_t c) const noexcept {
    return caches_[slot_of_[c] - 1];
  }
  Slot caches_[kNumSizeClasses];
};

enum class ThreadState : std::uint8_t {
  kUninitialized,
  kInitializing,
  kInitialized,
  kDropped,
};

namespace internal {
ABSL_CONST_INIT extern thread_local ThreadHeap* tls_heap
    __attribute__((tls_model("initial-exec")));
// tls_heap->hot() while tls_heap is non-null, else kNoHeapHot: empty
// states whose fast paths fail, so that malloc and free index it without
// testing for a heap first (the slow paths do). Set and cleared with
// tls_heap (SetThreadHeap).
ABSL_CONST_INIT extern thread_local HotSlot* tls_hot
    __attribute__((tls_model("initial-exec")));
// Empty states with every tag's mask, constant-initialised.
struct NoHeapHot {
  constexpr NoHeapHot() noexcept { WriteAlignMasks(slots); }
  HotSlot slots[kHotEntries];
};
extern NoHeapHot kNoHeapHot;
ABSL_CONST_INIT extern thread_local ThreadState tls_state
    __attribute__((tls_model("initial-exec")));
}  // namespace internal

// The calling thread's heap if it is kInitialized, else nullptr. The fast
// path of every allocation and free.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline ThreadHeap* CurrentThreadHeap() noexcept {
  return internal::tls_heap;
}

// The calling thread's fast-path states (ThreadHeap::hot()), indexed by
// slab tag: never null; all empty while the thread has no heap.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline HotSlot* CurrentHotStates() noexcept {
  return internal::tls_hot;
}

ThreadState CurrentThreadState() noexcept;

// The calling thread's heap, built now if the thread is kUninitialized.
// nullptr if the thread is kInitializing (a nested call), kDropped (thread
// exit in progress) or memory ran out: the caller must use its fallback.
ThreadHeap* InitThreadHeap(SlabClass* classes) noexcept;

// Destroys the calling thread's heap (returning everything it caches) and
// sets the thread back to kUninitialized. No-op unless kInitialized.
void ReleaseThreadHeap() noexcept;

// hook(h) runs on the calling thread with its heap h just before the thread
// gives h up (thread exit, before the trim; ReleaseThreadHeap, before the
// destruction), while h still takes frees (h->Free): the hardened general
// allocator empties the thread's quarantine into it there, so that blocks
// held by a thread are not leaked when it ends. nullptr (the default): no
// hook. Set it before the first heap is built.
void SetThreadHeapReleaseHook(void (*hook)(ThreadHeap*)) noexcept;
// Asks every thread's heap to drain at its next slow path (see "Draining"
// in the file comment). Lock-free, never allocates; any thread, any time.
void RequestDrain() noexcept;
// Drains the calling thread's heap now (no-op unless kInitialized).
void DrainThreadHeap() noexcept;

// ThreadHeaps attached to threads (for tests and statistics).
std::size_t LiveThreadHeaps() noexcept;
// Retired heaps waiting in the pool for a new thread.
std::size_t PooledThreadHeaps() noexcept;
// Destroys every pooled heap (returning its objects and slabs); returns how
// many there were.
std::size_t ReleasePooledThreadHeaps() noexcept;
// The same when memory ran out: never waits for the registry lock (it stops
// when the lock is taken, by this thread or another), so that it is safe on
// an allocation's failure path whatever locks the caller holds (a fallback
// lock, which fork's prepare handler takes after the registry lock; the
// registry lock itself, in a nested allocation). Returns the heaps
// destroyed.
std::size_t TryReleasePooledThreadHeaps() noexcept;

// Bytes of cached objects per class a retired heap keeps in the pool.
inline constexpr std::size_t kRetiredKeepBytes = std::size_t{32} << 10;

// out[c] += allocations minus frees of class c through every heap, live or
// destroyed: the objects of class c that users hold, except those allocated
// or freed through the general allocator's fallback path (which counts its
// own). Takes the registry lock (never allocates).
void AddNetAllocations(std::int64_t out[kNumSizeClasses]) noexcept;

// out[c] += objects of class c cached in the magazines of every heap, live
// or pooled (statistics). Takes the registry lock (never allocates).
void AddCachedObjects(std::size_t out[kNumSizeClasses]) noexcept;

// fork() support (pthread_atfork handlers of the general allocator).
// PreFork takes the registry lock so that no heap is half-linked at the
// fork; the parent releases it; the child releases it and drops every heap
// but its own thread's from the registry (their threads do not exist in the
// child; their objects stay counted as destroyed heaps' and their cached
// objects and claimed slabs are leaked, bounded by what they held at the
// fork). A fork from a signal handler that interrupted this thread's own
// registry update neither takes nor resets the lock (SpinLock::LockForFork):
// the update keeps it, and the child keeps every heap in the registry.
void ThreadCachePreFork() noexcept;
void ThreadCachePostForkParent() noexcept;
void ThreadCachePostForkChild() noexcept;
// In a fork child: if the forking thread was inside its heap's slow path
// (a signal handler's fork, see "Signal handlers"), the child leaves it,
// so that its own mallocs and frees are not taken for a handler's (their
// stash and fallback may be exactly what the interrupted code holds), and
// the magazine the slow path was changing is unblocked, empty
// (MagazineCache::LeaveShadowInForkChild). A child that returns from the
// handler into the interrupted slow path is not covered (a child that
// allocates in a handler normally exits or execs).
void LeaveInterruptedSlowPathInForkChild() noexcept;

// Test hook: runs fn(arg) while holding the registry lock (to prove that a
// fork during that window leaves the child a usable allocator).
void WithRegistryLockHeldForTesting(void (*fn)(void*), void* arg) noexcept;

}  // namespace elfmalloc

#endif  // ELFMALLOC_THREAD_CACHE_H_
