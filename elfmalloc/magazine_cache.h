// MagazineCache: elfmalloc's default per-thread, per-class front end (the
// reference's MagazineCache, allocators-rs elfmalloc frontends.rs).
//
// A stack of free object pointers in front of a SlabAllocator. Alloc pops the
// stack, else takes an object from the slab allocator. Free pushes; when the
// stack is full it first flushes its upper half back to the slabs through the
// Coalescer, which batches the frees by bit-set word so that each touched word
// costs one BulkFree (one fetch_or and one count update) instead of one free
// per object.
//
// Capacity by object size (MagazineCapacity, a constexpr function):
//   <= 64 B        kSmallMagazineCapacity = 1024 objects
//   65 B - 8 KiB   kMagazineBytes (64 KiB) / size, at least 16  (1008 .. 16)
//   > 8 KiB        max(1, kLargeMagazineBytes (256 KiB) / size)  (25 .. 1)
// The last rule was 1 MiB / size above 32 KiB (16 above 8 KiB): a thread
// could then cache 1 MiB of every class from 32 KiB up, and idle threads
// that had freed blocks of 8 KiB..1 MiB held ~8x glibc's memory; blocks
// that big are cheap to take from a slab (one bit-set update per block,
// against a memory touch of kilobytes), so a small budget costs little.
// The middle rule was 512 KiB / size (1024 objects up to 512 B): a thread
// that only frees (a consumer) then held up to 1024 objects of every class,
// up to 256 KiB per class, which kept their slabs below the reuse cutoff;
// with a producer-consumer pair over 13 small classes that was 2.5-3.4x
// glibc's peak RSS. A 64 KiB budget costs no throughput in the harness.
// QUIRK fixed: the reference wrote `512 << 10 / size` and `1 << 20 / size`,
// which Rust parses as 512 << (10 / size) = 512 and 1 << (20 / size) = 1, so
// its effective capacities were 65536 / 512 / 1. We use the intended values
// (MagazineCacheTest.CapacitiesAreTheIntendedOnes), with the smaller byte
// budget above. For small objects the reference's 65536 is replaced by
// 1024 (64 KiB of 64-byte objects, where the middle rule takes over
// continuously): the stack is 8 KiB and the coalescer table 12 KiB of
// virtual memory per class per thread, committed on first use. (65536
// meant a 512 KiB stack plus a 3 MiB coalescer per class per thread.) The
// 16-object floor lets the 8..32 KiB classes cache 128..512 KiB. Flushing
// half a magazine of 512 objects still batches well: objects freed close
// together in time mostly share bit-set words.
//
// The Coalescer: an open hash table of min(bit_ceil(2 * capacity), 512)
// cells keyed by (slab, bit-set word), each accumulating the mask of objects
// to free in that word. An entry whose cell holds a different word is freed
// at once (no probing: a collision only costs a single free). The touched
// cells are then bulk-freed and cleared. The table relies on fresh mmap
// memory being zero. Its cells are touched where the hash sends them, so
// the whole table becomes resident after a few flushes: at 2048 cells
// (48 KiB) per class per thread, a consumer thread freeing 17 small classes
// held ~0.8 MiB of tables alone. 512 cells (12 KiB) suffice because runs of
// objects in one bit-set word are merged before they reach the table (the
// common case: objects freed in about the order they were allocated).
// A table is only in use while a flush runs, and a flush leaves it empty,
// so a ThreadHeap gives all its classes' caches one shared table of 512
// cells instead of one each: a consumer of 17 small classes then holds
// 14 KiB of tables instead of ~240 KiB (prodcons peak RSS 5.7 -> 5.5 MiB
// with one pair of threads, 7.5 -> 7.1 MiB with two; the other harness
// rows unchanged, and no throughput change beyond the noise). A flush that
// finds the table busy (a signal handler's free overflowing a magazine
// while the interrupted code was flushing another) frees its runs directly:
// slower, never wrong. A cache built alone (tests, LocalAllocator users)
// maps a table of its own.
//
// Adaptive capacity: a thread that only frees objects of a class (the
// consumer of a producer-consumer pair, a thread draining a queue) never
// reuses what its magazine caches, so caching up to the full budget only
// holds memory: with 16 small classes a consumer kept ~1 MiB of freed
// objects out of their slabs, most of the 1.7x peak RSS gap to glibc in
// producer-consumer runs. So when the stack overflows and no refill
// happened since the previous overflow, the capacity halves (down to
// min(max, max(8, 8 KiB / size)) objects); a refill restores the maximum
// above at once. A thread that allocates and frees keeps the full
// magazine; a free-only thread settles at the minimum within a few
// flushes. Only classes up to kAdaptiveMaxSize (256 B) adapt: a thread
// that frees a batch it allocated itself looks free-only too, and with
// 2 KiB blocks (32 per magazine, flushed 4 at a time once shrunk) such
// bursts cost 21% more instructions (threadtest 2 KiB), where a 64-byte
// class pays 4% (flushes of 64 objects); small classes are also where a
// consumer held the most (up to 64 KiB in each of 17 classes).
//
// Bursts: a thread that allocates thousands of objects of a class and then
// frees them all (threadtest's rounds; a parser building and dropping a
// tree) overflows the magazine again and again while freeing, each flush a
// bit-set round trip per object, and refills it again while allocating.
// So the adaptive classes also grow: the refills seen at recent overflows
// (activity: halved at each overflow, plus the refills since the previous
// one) measure how much the thread allocated from the slabs; at 4 (a whole
// magazine's worth) or more, an overflow doubles the capacity, up to
// kBurstMagazineBytes (1 MiB) of objects and kBurstMagazineCapacity
// objects, and a free-only thread (activity 0) still shrinks. A refill takes
// a quarter of the default capacity whatever the grown one. The magazines of
// one thread grow by at most kThreadBurstBytes (1 MiB) of objects together
// (a budget their ThreadHeap shares out): threads whose objects cross to
// other threads in batches (each batch a run of frees) met the burst rule
// in many classes at once (xthread_churn, 2 threads: 0.7-6.9 MiB of small
// objects cached at the same point of otherwise equal runs; 1.7-1.9 MiB
// with the budget). Rounds of
// 10,000 64-byte blocks then run out of the magazine from the third round
// on: 159 -> 112 instructions per object, the workload's own included
// (callgrind; mimalloc 104), peak RSS unchanged (the blocks are the round's
// live set anyway).
//
// Nursery: a ThreadHeap gives each cache a second, small stack of
// kNurseryEntries (32) entries, packed with the other classes' nurseries
// at the start of its stack arena (thread_cache.h), 16 classes to a page,
// and the cache starts there, with that capacity and refills of at most
// that many objects. A thread that uses a class lightly (a few live
// objects, as in a pool of many threads each holding a handful of blocks)
// never leaves it; the first overflow, or the refill after the nursery
// took 2 KiB of objects ("Shared refills"), moves the
// cached objects to the full stack (Graduate) and the cache goes on as
// above: at the default capacity, or, when the overflow comes before the
// thread took anything of the class from the slabs (it only frees what
// others allocated), at the free-only minimum. A consumer that left its
// nurseries at the default held up to 64 KiB of each class until its
// overflows halved it, and meanwhile its producer, short of those
// objects, claimed a second slab in every class and touched both: alone
// this rule takes a producer-consumer pair's peak RSS from 5.9 to 5.6 MiB,
// with low-first 64 KiB slabs (slab.h) to 5.2 MiB.
//
// The full stacks of the classes up to 256 B are sized for bursts (up to
// 128 KiB of address space each), so each began on a page of its own: a thread that touched 8 small classes committed 8 stack pages, 32 of
// the ~98 KiB that a thread holding one block of each of 8 classes cost
// (elfc/thread_footprint.cc; with the nurseries and the heap's lazily
// built slots, thread_cache.h, ~64 KiB). Graduating copies at most 32
// pointers, once per class and thread; instructions per operation of the
// single-thread harness rows are unchanged (callgrind).
//
// Shared refills: a cache in its nursery (only a thread's heap gives
// one) takes its refills from a source shared by every thread, when one is
// set (SetSharedRefill: the general allocator's per-class fallback
// allocator, whose slab threads without a heap use too, for the classes of
// 64 and 256 KiB slabs, while 8 or more threads have heaps), instead of
// claiming a slab of its own, until it has taken kSharedRefillBudgetBytes
// (2 KiB) of objects; the refill after that graduates it ("Nursery") and
// claims its own slab.
// Each shared refill takes at most kSharedRefillBytes (512 B) of objects
// (at least one), so that consecutive threads' objects share pages: with a
// nursery's 32 objects, each thread's first 512-byte object lay 16 KiB
// after the previous thread's, on a page of its own.
// A thread that holds a few objects of a class then touches no page of a
// slab of its own for it: threads that each hold a handful of blocks share
// their classes' slabs, as they do in allocators with central free lists.
// 200 threads each holding one block of each of 8 classes (16-787 B):
// ~64 -> ~50 KiB per thread with one shared refill of up to 2 KiB for the
// classes of 64 KiB slabs; ~25 with refills of up to 512 B until 2 KiB
// were taken (a thread holding one block of a class took 2 KiB of its
// objects, and those pages filled with other threads' blocks) and the
// classes of 256 KiB slabs shared too (elfc/thread_footprint.cc). Why
// only from 8 threads on: general_allocator.cc, SharedNurseryRefill. A
// source that cannot serve (out of memory, fewer threads, or its lock held
// by the code a signal handler interrupted on this thread) returns 0 and
// the cache claims a slab as before.
//
// No shared depot. Between the magazines and the slabs there is no
// per-class pool that one thread's overflow fills and another's refill
// empties (Bonwick's depot, tcmalloc's transfer cache). Measured with one
// for the classes above 4 KiB (a stack of up to 2 MiB of objects per
// class, a lock per push or pop, a refill taking a whole magazine from
// it): the peak RSS of mixed sizes handed between two threads falls
// 12-13% (mstress 8 B-2 KiB, 1 in 64 up to 64 KiB: 28.4 -> 24.9 MiB;
// xthread_churn 16 B-16 KiB: 23.0 -> 20.9), of a long-running server 8%
// and of realloc_growth 17-24%, with the other harness rows unchanged;
// but two threads allocating and freeing rounds of 8 or 20 KiB blocks
// (threadtest) run 15-55% slower, because every flush and refill then
// touches cache lines the other core writes (about 50 transfers per
// 1,000 operations, at 45 ns per operation). Sharded (a shard per
// thread, stealing from the others when one's own is empty) it still
// costs 15-37%; stealing only surplus, or only when the slab iterator is
// exhausted, keeps the speed and loses the memory gain (per-thread shards
// are only bigger magazines: mstress 31 MiB). With the classes from 256 B
// up it reaches glibc's peak (mstress 20.8 MiB) but halves threadtest at
// 2 KiB. A pop that gives up on a busy lock instead of waiting lets the
// depot fill to its cap (pushes succeed more often than pops), which cost
// shbench 64 B-4 KiB 30% more memory. The gap it closes is the objects
// rarely used large classes park in each thread's magazine (about half a
// magazine each, 128 KiB per class per thread above 8 KiB); lowering the
// slab cutoff for those classes does not close it (mstress unchanged at
// a cutoff of one object).
//
// Decay: a flush does not check the page allocator's decay rule. Measured
// with a check on every overflow flush (a coarse clock read): 400 MiB of
// small blocks freed, then bursts of 200 allocations and frees every 50 ms
// kept 55 MiB resident instead of 70 (the background decay thread,
// general_allocator.h, brings that to 6 MiB), for 9% more instructions in a
// 64 KiB allocate-then-free churn (callgrind, threadtest --size=65536,
// whose small magazines flush every second free) and 2.5% at 2 KiB.
//
// Memory: the stack and the coalescer each come from an mmap_alloc mapping,
// committed lazily by the kernel; never malloc. If the stack's mapping fails
// the cache has capacity 0 and frees go straight to the slabs; without a
// table, flushes free each run of objects at once.
//
// Thread-safety: one MagazineCache per thread; it is not thread-safe itself.
// Objects may be freed through any thread's cache of the same SlabClass.
#ifndef ELFMALLOC_MAGAZINE_CACHE_H_
#define ELFMALLOC_MAGAZINE_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "absl/base/config.h"
#include "absl/base/optimization.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_allocator.h"

namespace elfmalloc {

inline constexpr std::size_t kSmallMagazineCapacity = 1024;
inline constexpr std::size_t kMagazineBytes = std::size_t{64} << 10;
inline constexpr std::size_t kLargeMagazineBytes = std::size_t{256} << 10;
// The largest object size whose magazine capacity adapts (see "Adaptive
// capacity").
inline constexpr std::size_t kAdaptiveMaxSize = 256;
// A source of objects for the refills of a cache in its nursery (see
// "Shared refills"): up to n objects of class cls into out, in the order of
// SlabAllocator::AllocBatch, returning how many; 0 (busy, or out of
// memory) sends the cache to its own slab. It must not wait for a lock
// the calling thread holds (a signal handler may refill).
using SharedRefill = std::size_t (*)(SlabClass* cls, void** out,
                                     std::size_t n) noexcept;
// Sets the source (nullptr: none, the default). Set it before the caches
// that should use it refill; any thread may call it.
void SetSharedRefill(SharedRefill refill) noexcept;

// The most bytes of objects one shared refill takes, and the bytes of
// objects a nursery takes from the shared source before it graduates (see
// "Shared refills").
inline constexpr std::size_t kSharedRefillBytes = 512;
inline constexpr std::size_t kSharedRefillBudgetBytes = 2048;
// Entries of a cache's nursery stack (see "Nursery").
inline constexpr std::size_t kNurseryEntries = 32;
// The coalescer's largest table (see "The Coalescer").
inline constexpr std::size_t kMaxCoalescerCells = 512;
// The most a burst may grow an adaptive magazine to, in bytes of objects
// and in objects (see "Bursts").
inline constexpr std::size_t kBurstMagazineBytes = std::size_t{1} << 20;
inline constexpr std::size_t kBurstMagazineCapacity = 16384;
// The most the magazines sharing a burst budget (a thread's) may grow by
// together, in bytes of objects (see "Bursts").
inline constexpr std::size_t kThreadBurstBytes = std::size_t{1} << 20;

// Stack capacity for objects of object_size bytes (see the file comment).
constexpr std::size_t MagazineCapacity(std::size_t object_size) noexcept {
  if (object_size <= (std::size_t{8} << 10)) {
    const std::size_t n = kMagazineBytes / object_size;
    return n > kSmallMagazineCapacity ? kSmallMagazineCapacity
                                      : (n < 16 ? 16 : n);
  }
  const std::size_t n = kLargeMagazineBytes / object_size;
  return n == 0 ? 1 : n;
}

// The largest capacity a burst may grow a magazine of object_size bytes to
// (see "Bursts"): the adaptive classes' burst budget, else the capacity.
constexpr std::size_t MagazineBurstCapacity(std::size_t object_size) noexcept {
  const std::size_t capacity = MagazineCapacity(object_size);
  if (object_size == 0 || object_size > kAdaptiveMaxSize) return capacity;
  std::size_t burst = kBurstMagazineBytes / object_size;
  if (burst > kBurstMagazineCapacity) burst = kBurstMagazineCapacity;
  return burst < capacity ? capacity : burst;
}

// The bytes of the stack of a magazine of object_size bytes at its default
// capacity, sized for bursts: what a ThreadHeap reserves for it (its
// stack arena, thread_cache.h).
constexpr std::size_t MagazineStackBytes(std::size_t object_size) noexcept {
  return MagazineBurstCapacity(object_size) * sizeof(void*);
}

// The fast-path state of one magazine, 16 bytes: where the next free goes
// (cur, one past the top entry) and the low 32 bits of the stack's first
// entry (`empty`) and of the entry past the current capacity (`full`).
// It lives apart from the rest of the cache so that a ThreadHeap keeps its
// classes' states in one dense array indexed by slab tag (thread_cache.h):
// free finds its magazine with a shift instead of a multiply by the cache's
// size and a range check of the tag. A zero state (a cache not created
// yet, or an unused tag) fails both fast paths, sending the caller to its
// slow path.
//
// Why a pointer and not an index (a stack base, a top index and a
// capacity): a malloc/free pair whose block feeds the next pair forwards the
// free's stores of the top and the entry to the malloc's loads of them.
// With the top an index, the pop's entry address is computed from a loaded
// value (base + top * 8), and on an Intel Xeon the chain of forwarded
// loads costs about twice as much as with the top a pointer the entry is
// loaded through: 6.7 against 1.8 ns per pair in a loop that models the
// two fast paths alone, 7.3 against 2.7 ns for the unchecked build's
// malloc/free pair (pair_latency), for the same instruction count. The
// empty and full tests compare the low 32 bits only (a stack spans far
// less than 4 GiB, so no other entry has the same low bits), which keeps
// the state at 16 bytes and each test one compare with memory.
//
// Invariant (the owner keeps it): stack <= cur <= stack + capacity, so the
// equality tests are exact; a capacity is only lowered once the top is at
// or below it (MagazineCache::FreeSlow flushes first).
//
// Only the owner writes the state, always atomically (relaxed: plain
// moves on x86), because statistics read it from other threads, which may
// see the fields of different moments (CachedApprox). `empty` and `full`
// are plain fields written through std::atomic_ref, so that the owner's
// fast paths can read them plainly: GCC never folds an atomic load into
// another instruction, and with a plain field the empty or full test is
// one compare with memory instead of a load and a compare (one
// instruction on every malloc and every free, callgrind pair_latency).
// An owner's plain read races with nothing (only the owner writes), and
// the fast paths' signal fences keep the compiler from reusing a value
// read before one (see "Signal handlers").
//
// Signal handlers. A handler runs on its thread between two instructions
// of whatever it interrupted, so what it must never see is a state half
// written, or a slow path's work half done. Set writes the whole state
// with one 16-byte store (one instruction: a handler sees the old state or
// the new one; other threads, which only count, may see a mix), and a
// slow path works on a copy while the state itself is blocked
// (MagazineCache::ShadowScope: empty == full == the top, so both fast
// paths fail and a handler's malloc or free reaches its slow path, which
// its thread heap diverts, thread_cache.h "Signal handlers"), then
// publishes the copy with one Set. Without the shadow, a handler freeing
// and allocating 8 blocks every 20 us while the thread allocated and freed
// bursts of 3,000 blocks had a block handed out twice in 4 runs of 10
// (elfc/signal_handler_malloc.cc): its push landed on an entry a refill
// had just written below the top it had not yet raised.
struct alignas(16) MagazineHot {
  std::atomic<void**> cur{nullptr};
  std::uint32_t empty = 0;
  std::uint32_t full = 0;

  static std::uint32_t Low(void** q) noexcept {
    return static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(q));
  }
  // Owner-only reads.
  std::uint32_t top() const noexcept {
    return (Low(cur.load(std::memory_order_relaxed)) - empty) /
           sizeof(void*);
  }
  std::uint32_t capacity() const noexcept {
    return (full - empty) / sizeof(void*);
  }
  void** stack() const noexcept {
    return cur.load(std::memory_order_relaxed) - top();
  }
  // The cached objects as another thread sees them (statistics): the top,
  // or 0 when the fields it read belong to different moments.
  std::uint32_t CachedApprox() const noexcept {
    const std::uint32_t e = LoadShared(empty);
    const std::uint32_t t =
        (Low(cur.load(std::memory_order_relaxed)) - e) / sizeof(void*);
    const std::uint32_t c = (LoadShared(full) - e) / sizeof(void*);
    return t <= c ? t : 0;
  }
  // Owner-only writes. Set: the whole state (stack nullptr: empty), in
  // one store (see "Signal handlers").
  void Set(void** stack, std::uint32_t top, std::uint32_t capacity) noexcept {
    Store(stack + top, Low(stack), Low(stack + capacity));
  }
  // Both fast paths fail until the next Set (see "Signal handlers"); the
  // statistics see an empty magazine meanwhile.
  void Block() noexcept {
    void** const c = cur.load(std::memory_order_relaxed);
    Store(c, Low(c), Low(c));
  }
  // The state of o, field by field (owner-only: o is this thread's).
  void CopyFrom(const MagazineHot& o) noexcept {
    cur.store(o.cur.load(std::memory_order_relaxed),
              std::memory_order_relaxed);
    StoreShared(empty, o.empty);
    StoreShared(full, o.full);
  }
  // o's state in one store.
  void Publish(const MagazineHot& o) noexcept {
    Store(o.cur.load(std::memory_order_relaxed), o.empty, o.full);
  }
  void SetTop(std::uint32_t top) noexcept {
    cur.store(stack() + top, std::memory_order_relaxed);
  }
  void SetCapacity(std::uint32_t capacity) noexcept {
    StoreShared(full, Low(stack() + capacity));
  }

  // The pop reads its entry before it moves the top down, and the push
  // moves the top up before it writes its entry (signal fences: program
  // order, which is what a signal handler on this thread sees, at no
  // instruction's cost). A handler that interrupts either between its two
  // steps and frees and allocates as many blocks as it allocates and frees
  // (the usual shape of a handler's work: a buffer taken and given back)
  // then pushes and pops above the interrupted operation's entry and
  // leaves the stack as it found it. In the other order its push
  // overwrote the entry the interrupted operation was about to read or had
  // just written, and one block went to two callers: a timer handler
  // freeing and reallocating 8 blocks every 20 us corrupted a malloc/free
  // loop within 30 interruptions, where glibc, jemalloc and tcmalloc ran
  // 20,000 (elfc/signal_handler_malloc.cc). A handler whose allocations and
  // frees do not balance still races the interrupted operation, as in
  // every allocator here: malloc and free are not async-signal-safe.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryAlloc(void** p) noexcept {
    void** c = cur.load(std::memory_order_relaxed);
    if (ABSL_PREDICT_FALSE(Low(c) == empty)) {
      return false;
    }
    --c;
    *p = *c;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    cur.store(c, std::memory_order_relaxed);
    return true;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryFree(void* p) noexcept {
    void** c = cur.load(std::memory_order_relaxed);
    if (ABSL_PREDICT_FALSE(Low(c) == full)) {
      return false;
    }
    cur.store(c + 1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    *c = p;
    return true;
  }

 private:
  // All three fields in one instruction where the target has one (a
  // 16-byte SSE store; the state is 16-byte aligned). ThreadSanitizer does
  // not see vector stores as writes of the atomics other threads read, so
  // its builds store the fields one by one (they check threads, not
  // signal handlers). Elsewhere too: there a handler may see a mix.
  void Store(void** c, std::uint32_t e, std::uint32_t f) noexcept {
#if defined(__SSE2__) && !defined(ABSL_HAVE_THREAD_SANITIZER)
    using V = long long __attribute__((vector_size(16), may_alias));
    std::atomic_signal_fence(std::memory_order_seq_cst);
    *reinterpret_cast<V*>(this) =
        V{static_cast<long long>(reinterpret_cast<std::uintptr_t>(c)),
          static_cast<long long>(std::uint64_t{e} | std::uint64_t{f} << 32)};
    std::atomic_signal_fence(std::memory_order_seq_cst);
#else
    StoreShared(empty, e);
    StoreShared(full, f);
    cur.store(c, std::memory_order_relaxed);
#endif
  }
  // Accesses of `empty` and `full` that other threads may overlap.
  static std::uint32_t LoadShared(const std::uint32_t& v) noexcept {
    return std::atomic_ref<std::uint32_t>(const_cast<std::uint32_t&>(v))
        .load(std::memory_order_relaxed);
  }
  static void StoreShared(std::uint32_t& v, std::uint32_t x) noexcept {
    std::atomic_ref<std::uint32_t>(v).store(x, std::memory_order_relaxed);
  }
};
static_assert(sizeof(MagazineHot) == 16);
static_assert(offsetof(MagazineHot, empty) == 8 &&
              offsetof(MagazineHot, full) == 12);

namespace internal {
class CoalescerTestPeer;
}  // namespace internal

// The coalescer's table (see "The Coalescer" above): `cells` cells and as
// many touched indices in one mapping, committed as the hash touches it.
// Owned by one thread: by a ThreadHeap for all its caches, or by a cache
// built alone. Movable (the mapping moves); not thread-safe.
class Coalescer {
 public:
  Coalescer() noexcept = default;  // no table: flushes free runs directly
  ~Coalescer() { Reset(); }
  Coalescer(Coalescer&& o) noexcept { *this = static_cast<Coalescer&&>(o); }
  Coalescer& operator=(Coalescer&& o) noexcept;
  Coalescer(const Coalescer&) = delete;
  Coalescer& operator=(const Coalescer&) = delete;

  // Maps a table of `cells` cells (a power of two, at most
  // kMaxCoalescerCells); false if the mapping failed (then it has none).
  // Only on a coalescer without a table.
  bool Init(std::size_t cells) noexcept;
  bool has_table() const noexcept { return cells_ != nullptr; }

 private:
  friend class MagazineCache;
  friend class internal::CoalescerTestPeer;
  struct Cell {
    Slab* slab;  // null: empty
    std::size_t word;
    std::uint64_t mask;
  };
  void Reset() noexcept;

  Cell* cells_ = nullptr;
  std::uint32_t* touched_ = nullptr;  // one index per cell at most
  std::size_t table_shift_ = 0;       // 64 - log2(cells)
  // Set while a flush uses the table: a nested flush (from a signal
  // handler) must not, since it would clear the outer flush's cells.
  bool busy_ = false;
  std::size_t map_bytes_ = 0;
  void* map_ = nullptr;
};

class MagazineCache {
 public:
  MagazineCache() noexcept = default;  // invalid
  // capacity 0: MagazineCapacity(object size of the class). shared: the
  // coalescer its flushes use (it must outlive the cache; a ThreadHeap's),
  // or nullptr for a table of the cache's own. stack: with capacity 0,
  // MagazineStackBytes(object size) bytes, aligned to 8, that outlive the
  // cache (a ThreadHeap's stack arena), or nullptr for a mapping of the
  // cache's own.
  // burst_budget: bytes of objects the magazines sharing it may still grow
  // by in bursts, all together (a ThreadHeap's; see "Bursts"), or nullptr
  // for no limit but the cache's own.
  // nursery: with a stack given, kNurseryEntries entries, aligned to 8,
  // that outlive the cache, where it starts (see "Nursery"); ignored when
  // the default capacity is no larger, or without a stack.
  explicit MagazineCache(SlabClass* cls, std::size_t capacity = 0,
                         Coalescer* shared = nullptr, void** stack = nullptr,
                         std::size_t* burst_budget = nullptr,
                         void** nursery = nullptr) noexcept;
  // Returns every cached object to its slab, then releases the current slab.
  ~MagazineCache();
  MagazineCache(MagazineCache&& o) noexcept;
  MagazineCache& operator=(MagazineCache&& o) noexcept;
  MagazineCache(const MagazineCache&) = delete;
  MagazineCache& operator=(const MagazineCache&) = delete;

  bool valid() const noexcept { return slabs_.valid(); }
  // Whether the cache still uses its nursery (see "Nursery").
  bool in_nursery() const noexcept { return full_stack_ != nullptr; }
  // The current capacity (adaptive; see above) and its maximum.
  std::size_t capacity() const noexcept { return hot_->capacity(); }
  std::size_t max_capacity() const noexcept { return max_capacity_; }
  std::size_t cached() const noexcept { return hot_->top(); }
  // Keeps the fast-path state in *hot from now on (a ThreadHeap's array)
  // instead of inside this object. Only on an invalid cache, before it is
  // assigned a valid one; *hot must be empty (zero) and outlive the cache.
  // Moving a cache moves its state into the destination's place: a cache
  // assigned to keeps its binding.
  void BindHot(MagazineHot* hot) noexcept { hot_ = published_ = hot; }

  // While one exists, the cache's slow paths work on a copy of its
  // fast-path state, and the state itself is blocked (both fast paths
  // fail); the copy is published, in one store, when it ends (MagazineHot,
  // "Signal handlers"). Owner-only, not nested.
  class ShadowScope {
   public:
    // Whenever the state is blocked, hot_ points at the copy (so that a
    // fork child can find it: LeaveShadowInForkChild).
    explicit ShadowScope(MagazineCache& m) noexcept : m_(m) {
      ABSL_ASSERT(m.hot_ == m.published_);
      shadow_.CopyFrom(*m.published_);
      m.hot_ = &shadow_;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      m.published_->Block();
    }
    ~ShadowScope() {
      m_.published_->Publish(shadow_);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      m_.hot_ = m_.published_;
    }
    ShadowScope(const ShadowScope&) = delete;
    ShadowScope& operator=(const ShadowScope&) = delete;

   private:
    MagazineCache& m_;
    MagazineHot shadow_;
  };
  const SlabMetadata& metadata() const noexcept { return slabs_.metadata(); }
  // The cached objects, [0, cached()); the last is handed out first. The
  // hardened general allocator shuffles a refill's objects here (any
  // permutation keeps the cache valid: every entry is a free object of the
  // class).
  void** cached_objects() noexcept { return hot_->stack(); }

  // The fast paths: true if they popped a cached object into *p / cached p. They
  // touch only the MagazineHot state and the stack slot, and count nothing:
  // the statistics derive from the slow paths' counters and the top
  // (net_allocations). An invalid (default) cache has capacity 0 and an
  // empty stack, so both fail and the caller's slow path may create it.
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryAlloc(void** p) noexcept {
    return hot_->TryAlloc(p);
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE bool TryFree(void* p) noexcept {
    return hot_->TryFree(p);
  }

  void* Alloc() noexcept {
    void* p;
    return TryAlloc(&p) ? p : AllocSlow();
  }
  void Free(void* p) noexcept {
    if (!TryFree(p)) FreeSlow(p);
  }
  // When the stack is empty: an object from the slabs (nullptr on OOM).
  void* AllocSlow() noexcept;
  // When the stack is full: flush its upper half, then cache p (or, with
  // capacity 0, free p to its slab).
  void FreeSlow(void* p) noexcept;

  // In a fork child of a signal handler that interrupted a ShadowScope of
  // this cache: unblocks the state as an empty magazine on the same stack
  // (the objects the copy held are leaked: the interrupted slow path may
  // have given some of them back to their slabs already).
  void LeaveShadowInForkChild() noexcept {
    if (hot_ == published_) return;
    published_->Set(hot_->stack(), 0, hot_->capacity());
    hot_ = published_;
  }

  // Frees every cached object back to the slabs.
  void FlushAll() noexcept { Flush(0); }
  // Frees cached objects back to the slabs until at most n remain.
  void FlushTo(std::size_t n) noexcept {
    if (cached() > n) Flush(n);
  }
  // Frees every cached object and lets go of the claimed slab (a wholly
  // free one goes back to its page allocator), keeping the cache itself
  // usable: the next Alloc claims a slab again. What a thread gives back
  // when asked to (memory pressure, malloc_trim, going idle): a claimed
  // slab is reachable by its owner only, so nobody else can return it.
  void Drain() noexcept {
    Flush(0);
    slabs_.Release();
  }
  // The page allocator's decay check (SlabAllocator::TickPages).
  void TickPages() noexcept { slabs_.TickPages(); }
  SlabClass* slab_class() const noexcept { return slabs_.slab_class(); }

  // Allocations minus frees made through this cache (negative when it frees
  // more objects than it hands out, e.g. a consumer thread). Summed over all
  // caches of a class it is the number of objects the users hold: objects
  // taken from the slabs, minus those given back, minus those cached. Any
  // thread may read it (statistics; a racing owner makes it approximate by
  // the objects in flight); only the owner writes the counters.
  std::int64_t net_allocations() const noexcept {
    return from_slabs_.load(std::memory_order_relaxed) -
           to_slabs_.load(std::memory_order_relaxed) -
           static_cast<std::int64_t>(published_->CachedApprox());
  }

 private:
  // Owner-only update of a counter other threads may read: a relaxed load
  // and store (a plain add on x86; no locked instruction).
  static void Add(std::atomic<std::int64_t>& c, std::int64_t d) noexcept {
    c.store(c.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }

  // Leaves the nursery: the cached objects move to the full stack, with
  // the given capacity (see "Nursery").
  void Graduate(std::uint32_t capacity) noexcept;
  // Frees stack_[from, top_) through the coalescer; top_ = from.
  void Flush(std::size_t from) noexcept;
  // Sets the current capacity, charging the part above max_capacity_ to
  // the burst budget (Grow checks that the budget has room).
  void SetCapacity(std::uint32_t capacity) noexcept;
  // Doubles the capacity, up to burst_capacity_ and the budget's room.
  void Grow() noexcept;
  // The objects of `capacity` above max_capacity_ (charged to the budget).
  std::size_t Grown(std::uint32_t capacity) const noexcept;
  void Destroy() noexcept;

  // Moves the fast-path state of o into *hot_ and empties o's.
  void TakeHot(MagazineCache& o) noexcept;
  // Points coalescer_ where o's pointed (own_coalescer_ already moved).
  void TakeCoalescer(MagazineCache& o) noexcept;

  // The fast-path state: own_hot_, or a slot of a ThreadHeap's array
  // (BindHot); the owner's code uses hot_, which a ShadowScope points at
  // its copy, other threads published_.
  MagazineHot* hot_ = &own_hot_;
  MagazineHot* published_ = &own_hot_;
  MagazineHot own_hot_;
  // Cold.
  // Adaptive capacity (see "Adaptive capacity" above): capacity_ moves
  // between min_capacity_ and max_capacity_ (the mapping is sized for the
  // maximum); refills_ counts AllocSlow calls since the last overflow.
  std::uint32_t max_capacity_ = 0;
  std::uint32_t min_capacity_ = 0;
  std::uint32_t refills_ = 0;
  // Bursts (see above): the largest capacity a burst may grow to (the
  // stack's mapping is sized for it), and the refills seen at recent
  // overflows, halved at each.
  std::uint32_t burst_capacity_ = 0;
  std::uint32_t activity_ = 0;
  // Where the capacity above max_capacity_ is charged (at the object size)
  // while the cache holds it; nullptr: no budget.
  std::size_t* burst_budget_ = nullptr;
  std::atomic<std::int64_t> from_slabs_{0};  // objects taken from the slabs
  std::atomic<std::int64_t> to_slabs_{0};    // objects given back to them
  SlabAllocator slabs_;
  // The table flushes use: own_coalescer_, or a ThreadHeap's.
  Coalescer* coalescer_ = &own_coalescer_;
  Coalescer own_coalescer_;
  // While the cache is in its nursery (hot_->stack), the full stack it
  // moves to (see "Nursery"); nullptr afterwards, and for a cache built
  // without a nursery.
  void** full_stack_ = nullptr;
  // The stack's mapping, if the cache mapped it (not for a stack given to
  // the constructor).
  std::size_t map_bytes_ = 0;
  void* map_ = nullptr;
};

}  // namespace elfmalloc

#endif  // ELFMALLOC_MAGAZINE_CACHE_H_
