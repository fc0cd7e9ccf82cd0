// Per-thread heap state machine and thread-exit hook. See thread_cache.h.
#include "elfmalloc/thread_cache.h"

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include "absl/base/attributes.h"
#include "bsalloc/bsalloc.h"
#include "elfmalloc/platform.h"
#include "elfmalloc/spin_lock.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

namespace internal {
// Never written after its constant initialisation: every state empty
// (see tls_hot), with the tags' masks.
ABSL_CONST_INIT NoHeapHot kNoHeapHot;
ABSL_CONST_INIT thread_local ThreadHeap* tls_heap
    __attribute__((tls_model("initial-exec"))) = nullptr;
ABSL_CONST_INIT thread_local HotSlot* tls_hot
    __attribute__((tls_model("initial-exec"))) = kNoHeapHot.slots;
ABSL_CONST_INIT thread_local ThreadState tls_state
    __attribute__((tls_model("initial-exec"))) = ThreadState::kUninitialized;
}  // namespace internal

namespace {

using internal::tls_heap;
using internal::tls_state;

// tls_heap and tls_hot change together (thread_cache.h).
void SetThreadHeap(ThreadHeap* h) {
  tls_heap = h;
  internal::tls_hot = h != nullptr ? h->hot() : internal::kNoHeapHot.slots;
}

// The key is created once, under the lock, by the first thread that builds a
// heap; g_key_ready publishes it (acquire/release) to the lock-free readers.
ABSL_CONST_INIT SpinLock g_key_lock;
ABSL_CONST_INIT std::atomic<int> g_key_state{0};  // 0 none, 1 ready, 2 failed
ABSL_CONST_INIT pthread_key_t g_key = 0;
ABSL_CONST_INIT std::atomic<std::size_t> g_live_heaps{0};
// SetThreadHeapReleaseHook's hook (nullptr: none).
ABSL_CONST_INIT std::atomic<void (*)(ThreadHeap*)> g_release_hook{nullptr};

void RunReleaseHook(ThreadHeap* h) {
  void (*hook)(ThreadHeap*) = g_release_hook.load(std::memory_order_acquire);
  if (hook != nullptr) hook(h);
}
// The pool of retired heaps (see thread_cache.h): a stack through
// ThreadHeap::pool_next_, guarded by g_key_lock.
ABSL_CONST_INIT ThreadHeap* g_pool = nullptr;
ABSL_CONST_INIT std::size_t g_pool_size = 0;
ABSL_CONST_INIT std::atomic<std::size_t> g_pooled{0};  // g_pool_size, for stats
// The drain epoch (thread_cache.h, "Draining"): only ever incremented;
// relaxed, because a drain needs no data from the requester, only the
// news that one was asked for (a heap that misses an increment by a few
// instructions drains at its next slow path).
ABSL_CONST_INIT std::atomic<std::uint32_t> g_drain_epoch{0};

bool DrainRequested(std::uint32_t seen) {
  return g_drain_epoch.load(std::memory_order_relaxed) != seen;
}

// The pool's bound: the CPU count (threads that can run at once, hence the
// replacement heaps a churning program needs), between 2 and 8.
std::size_t PoolLimit() {
  const std::size_t n = AvailableCpus();
  return n < 2 ? 2 : (n > 8 ? 8 : n);
}

}  // namespace

// The registry of live heaps, for statistics and fork: a doubly linked list
// through ThreadHeap::prev_/next_ guarded by g_key_lock (heaps are linked at
// creation and unlinked at destruction, both rare). Destroyed heaps' counts
// are folded into g_retired_net so that sums stay exact.
class HeapRegistry {
 public:
  static void Link(ThreadHeap* h) {
    SpinLockHolder l(&g_key_lock);
    h->prev_ = nullptr;
    h->next_ = head_;
    if (head_ != nullptr) head_->prev_ = h;
    head_ = h;
  }
  static void Unlink(ThreadHeap* h) {
    SpinLockHolder l(&g_key_lock);
    UnlinkLocked(h);
  }
  static void UnlinkLocked(ThreadHeap* h) {
    for (std::size_t c = 0; c < kNumSizeClasses; ++c) {
      retired_net_[c] += h->NetAllocations(c);
    }
    if (h->prev_ != nullptr) h->prev_->next_ = h->next_;
    else head_ = h->next_;
    if (h->next_ != nullptr) h->next_->prev_ = h->prev_;
    h->prev_ = h->next_ = nullptr;
  }
  // Pool operations, under the lock.
  static bool PushPooledLocked(ThreadHeap* h) {
    if (g_pool_size >= PoolLimit()) return false;
    h->pooled_ = true;
    h->pool_next_ = g_pool;
    g_pool = h;
    g_pooled.store(++g_pool_size, std::memory_order_relaxed);
    return true;
  }
  // A pooled heap built on `classes` (nullptr: any), or nullptr.
  static ThreadHeap* PopPooledLocked(const SlabClass* classes) {
    ThreadHeap** link = &g_pool;
    while (*link != nullptr && classes != nullptr &&
           (*link)->classes_ != classes) {
      link = &(*link)->pool_next_;
    }
    ThreadHeap* h = *link;
    if (h == nullptr) return nullptr;
    *link = h->pool_next_;
    h->pool_next_ = nullptr;
    h->pooled_ = false;
    g_pooled.store(--g_pool_size, std::memory_order_relaxed);
    return h;
  }
  static void Sum(std::int64_t out[kNumSizeClasses]) {
    SpinLockHolder l(&g_key_lock);
    for (std::size_t c = 0; c < kNumSizeClasses; ++c) out[c] += retired_net_[c];
    for (ThreadHeap* h = head_; h != nullptr; h = h->next_) {
      for (std::size_t c = 0; c < kNumSizeClasses; ++c) {
        out[c] += h->NetAllocations(c);
      }
    }
  }
  // out[c] += objects of class c cached in the magazines of every heap in
  // the registry (live and pooled).
  static void SumCached(std::size_t out[kNumSizeClasses]) {
    SpinLockHolder l(&g_key_lock);
    for (ThreadHeap* h = head_; h != nullptr; h = h->next_) {
      for (std::size_t c = 0; c < kNumSizeClasses; ++c) {
        // The fast-path state exists whether or not the slot does.
        out[c] += h->hot()[c + 1].hot.CachedApprox();
      }
    }
  }
  // In a fork child, under the lock: only `self` (may be null) and the
  // pooled heaps (no thread owns them) survive. Returns the live heaps kept.
  static std::size_t KeepOnlyLocked(ThreadHeap* self) {
    std::size_t n = 0;
    for (ThreadHeap* h = head_; h != nullptr;) {
      ThreadHeap* next = h->next_;
      if (h == self) {
        ++n;
      } else if (h->pooled_) {
        // kept
      } else {
        UnlinkLocked(h);
      }
      h = next;
    }
    return n;
  }

 private:
  ABSL_CONST_INIT static ThreadHeap* head_;
  ABSL_CONST_INIT static std::int64_t retired_net_[kNumSizeClasses];
};
ABSL_CONST_INIT ThreadHeap* HeapRegistry::head_ = nullptr;
ABSL_CONST_INIT std::int64_t HeapRegistry::retired_net_[kNumSizeClasses] = {};

namespace {

// Destroys a heap that is in no thread's hands and not pooled.
void FreeHeap(ThreadHeap* h) {
  HeapRegistry::Unlink(h);
  h->~ThreadHeap();
  bsalloc::Deallocate(h, sizeof(ThreadHeap));
}

// Destroys the heap of a thread (live count included).
void DestroyHeap(ThreadHeap* h) {
  g_live_heaps.fetch_sub(1, std::memory_order_relaxed);
  FreeHeap(h);
}

// Thread exit. glibc calls this once per key whose value is non-null; the
// value is the heap (never null while one exists).
void OnThreadExit(void* value) {
  // From now on this thread's allocations take the fallback path, including
  // those made while the heap is being trimmed or destroyed.
  tls_state = ThreadState::kDropped;
  SetThreadHeap(nullptr);
  ThreadHeap* h = static_cast<ThreadHeap*>(value);
  RunReleaseHook(h);
  h->Trim(kRetiredKeepBytes);
  bool pooled;
  {
    SpinLockHolder l(&g_key_lock);
    pooled = HeapRegistry::PushPooledLocked(h);
  }
  if (pooled) {
    g_live_heaps.fetch_sub(1, std::memory_order_relaxed);
  } else {
    DestroyHeap(h);
  }
}

bool EnsureKey() {
  int s = g_key_state.load(std::memory_order_acquire);
  if (ABSL_PREDICT_TRUE(s != 0)) return s == 1;
  SpinLockHolder l(&g_key_lock);
  s = g_key_state.load(std::memory_order_relaxed);
  if (s == 0) {
    s = pthread_key_create(&g_key, &OnThreadExit) == 0 ? 1 : 2;
    g_key_state.store(s, std::memory_order_release);
  }
  return s == 1;
}

}  // namespace

void ThreadHeap::BuildHotArray() noexcept {
  unsigned char* const bytes = hot_storage_;
  for (std::size_t t = 0; t < kHotEntries; ++t) {
    unsigned char* const e = bytes + t * sizeof(HotSlot);
    if (t > kNumSizeClasses) {
      // An empty state with mask 0 (TagAlignMask) is all zero bytes: write
      // only if the block held something else (see hot_storage_).
      std::uint64_t w[sizeof(HotSlot) / sizeof(std::uint64_t)];
      std::memcpy(w, e, sizeof(w));
      std::uint64_t any = 0;
      for (std::uint64_t x : w) any |= x;
      if (any == 0) continue;
    }
    HotSlot* const slot = ::new (e) HotSlot();
    slot->align_mask = TagAlignMask(t);
  }
}

ThreadHeap::~ThreadHeap() {
  // Last class first, as an array of caches was destroyed.
  for (std::size_t i = kNumSizeClasses; i-- > 0;) {
    if (Constructed(i)) SlotOf(i).cache().~MagazineCache();
  }
}

std::size_t ThreadHeap::CachesCreated() const noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    n += Constructed(i) && SlotOf(i).cache().valid() ? 1 : 0;
  }
  return n;
}

void ThreadHeap::TickDecay() noexcept {
  constexpr std::size_t kMaxPageAllocs = 4;
  const PageAlloc* ticked[kMaxPageAllocs] = {};
  std::size_t n = 0;
  for (std::size_t i = 0; i < kNumSizeClasses && n < kMaxPageAllocs; ++i) {
    if (!Constructed(i)) continue;
    MagazineCache& m = SlotOf(i).cache();
    if (!m.valid()) continue;
    const PageAlloc* pa = &m.slab_class()->pages();
    bool seen = false;
    for (std::size_t k = 0; k < n; ++k) seen = seen || ticked[k] == pa;
    if (seen) continue;
    ticked[n++] = pa;
    m.TickPages();
  }
}

namespace {

// The stack arena's layout (thread_cache.h): the stack of class c at
// kStackLayout.offsets[c], each rounded up to a cache line, in class order.
struct StackLayout {
  std::size_t offsets[kNumSizeClasses];
  std::size_t bytes;
};
// The nurseries (magazine_cache.h, "Nursery") come first, class by class,
// kNurseryEntries entries each: a thread's small classes, the ones most
// threads use, share their first page or two.
constexpr std::size_t kNurseryBytes =
    (kNumSizeClasses * kNurseryEntries * sizeof(void*) + 63) / 64 * 64;
constexpr StackLayout MakeStackLayout() {
  StackLayout l{};
  std::size_t at = kNurseryBytes;
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    l.offsets[i] = at;
    const std::size_t b = MagazineStackBytes(
        ClassSize(SizeClass(static_cast<std::uint8_t>(i))));
    at += (b + 63) / 64 * 64;
  }
  l.bytes = at;
  return l;
}
constexpr StackLayout kStackLayout = MakeStackLayout();
static_assert(kStackLayout.bytes % 64 == 0);

}  // namespace

void** ThreadHeap::StackArena::StackOf(SizeClass c) noexcept {
  if (map_ == nullptr) {
    // MAP_NORESERVE: untouched stack room is not charged as committed.
    mmap_alloc::MapOptions o;
    o.noreserve = true;
    map_ = mmap_alloc::Map(kStackLayout.bytes, o);
    if (map_ == nullptr) return nullptr;
  }
  return reinterpret_cast<void**>(static_cast<char*>(map_) +
                                  kStackLayout.offsets[c.index()]);
}

void** ThreadHeap::StackArena::NurseryOf(SizeClass c) noexcept {
  return static_cast<void**>(map_) + c.index() * kNurseryEntries;
}

ThreadHeap::StackArena::~StackArena() {
  if (map_ != nullptr) mmap_alloc::Unmap(map_, kStackLayout.bytes);
}

void ThreadHeap::CreateCache(SizeClass c) noexcept {
  // The magazine's stack comes from the heap's stack arena (mapped with the
  // first cache); if the arena cannot be mapped the cache maps its own, and
  // if that fails too it has capacity 0 and passes everything straight to
  // its slab allocator. The heap's coalescer table is mapped with the first
  // cache (a failure is retried with the next; meanwhile flushes free their
  // runs directly).
  if (!coalescer_.has_table()) coalescer_.Init(kMaxCoalescerCells);
  const std::size_t i = c.index();
  // A fork from a signal handler that interrupts the rest leaves the child
  // a cache half built (a move assignment stops between any two of its
  // fields): the child abandons it and builds it again
  // (LeaveInterruptedSlowPathInForkChild, which reads creating_).
  creating_ = static_cast<std::uint8_t>(i + 1);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (!Constructed(i)) {
    // A slot once given to a class stays its own (also when the class's
    // cache is built again).
    if (slot_of_[i] == 0) {
      slot_of_[i] = static_cast<std::uint8_t>(++slots_used_);
    }
    MagazineCache* m = ::new (SlotOf(i).bytes) MagazineCache();
    m->BindHot(&hot()[i + 1].hot);
    constructed_.store(constructed_.load(std::memory_order_relaxed) |
                           (std::uint64_t{1} << i),
                       std::memory_order_release);
  }
  void** stack = stacks_.StackOf(c);
  SlotOf(i).cache() =
      MagazineCache(&classes_[i], 0, &coalescer_, stack, &burst_budget_,
                    stack != nullptr ? stacks_.NurseryOf(c) : nullptr);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  creating_ = 0;
}

namespace {
ABSL_CONST_INIT std::atomic<NestedAllocSource> g_nested_alloc_source{nullptr};

// Stash entries: the object's address and its class above it (user space
// addresses fit in 48 bits); 0 is an empty slot.
constexpr unsigned kStashClassShift = 48;
std::uint64_t StashEntry(SizeClass c, void* p) {
  return reinterpret_cast<std::uintptr_t>(p) |
         std::uint64_t{c.index()} << kStashClassShift;
}
void* StashObject(std::uint64_t e) {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(
      e & ((std::uint64_t{1} << kStashClassShift) - 1)));
}
}  // namespace

void SetNestedAllocSource(NestedAllocSource source) noexcept {
  g_nested_alloc_source.store(source, std::memory_order_release);
}

// A slow path of the owner (see "Signal handlers"): the flag, and the
// stash's drain before it ends (a handler that interrupts the drain adds
// to the stash and is found by the next pass, or by the next section once
// the flag is clear).
class ThreadHeap::Section {
 public:
  explicit Section(ThreadHeap* h) noexcept : h_(h) {
    h->in_slow_path_ = true;
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  ~Section() {
    while (ABSL_PREDICT_FALSE(h_->stash_pending_)) h_->DrainStash();
    std::atomic_signal_fence(std::memory_order_seq_cst);
    h_->in_slow_path_ = false;
  }
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;

 private:
  ThreadHeap* const h_;
};

// The drain checks cost a load and a compare per slow path; the drain
// itself is out of line, so the common slow path stays a tail call into the
// magazine.
void* ThreadHeap::AllocSlow(SizeClass c) noexcept {
  if (ABSL_PREDICT_FALSE(in_slow_path_)) return NestedAlloc(c);
  const Section section(this);
  if (ABSL_PREDICT_FALSE(DrainRequested(drain_epoch_))) {
    return AllocAfterFailureInSection(c);
  }
  return AllocInSection(c);
}

void* ThreadHeap::AllocInSection(SizeClass c) noexcept {
  MagazineCache& m = Cache(c);
  const MagazineCache::ShadowScope shadow(m);
  return m.Alloc();
}

void* ThreadHeap::AllocAfterFailure(SizeClass c) noexcept {
  if (ABSL_PREDICT_FALSE(in_slow_path_)) return NestedAlloc(c);
  const Section section(this);
  return AllocAfterFailureInSection(c);
}

void* ThreadHeap::AllocAfterFailureInSection(SizeClass c) noexcept {
  // A failing refill asks every heap to drain (the pressure hook): this one
  // first, then once more. The slabs it held may be exactly the pages (or,
  // once unmapped, the address space) the refill needs.
  if (DrainRequested(drain_epoch_)) DrainInSection();
  void* p = AllocInSection(c);
  if (p == nullptr) {
    bool again = false;
    if (DrainRequested(drain_epoch_)) {
      DrainInSection();
      again = true;
    }
    // Retired threads' heaps keep their claimed slabs while pooled.
    if (TryReleasePooledThreadHeaps() != 0) again = true;
    if (again) p = AllocInSection(c);
  }
  return p;
}

void ThreadHeap::FreeSlow(SizeClass c, void* p) noexcept {
  if (ABSL_PREDICT_FALSE(in_slow_path_)) return NestedFree(c, p);
  const Section section(this);
  if (ABSL_PREDICT_FALSE(DrainRequested(drain_epoch_))) DrainInSection();
  FreeInSection(c, p);
}

void ThreadHeap::FreeInSection(SizeClass c, void* p) noexcept {
  MagazineCache& m = Cache(c);
  const MagazineCache::ShadowScope shadow(m);
  m.Free(p);
}

void* ThreadHeap::NestedAlloc(SizeClass c) noexcept {
  for (std::uint64_t& slot : stash_) {
    const std::uint64_t e = slot;
    if (e != 0 && (e >> kStashClassShift) == c.index()) {
      slot = 0;  // the drain, which takes entries, cannot interrupt us
      return StashObject(e);
    }
  }
  const NestedAllocSource source =
      g_nested_alloc_source.load(std::memory_order_acquire);
  return source != nullptr ? source(c) : nullptr;
}

void ThreadHeap::NestedFree(SizeClass c, void* p) noexcept {
  for (std::uint64_t& slot : stash_) {
    if (slot == 0) {
      slot = StashEntry(c, p);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      stash_pending_ = true;
      return;
    }
  }
  // Full: p is leaked (see "Signal handlers").
}

void ThreadHeap::DrainStash() noexcept {
  stash_pending_ = false;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  for (std::uint64_t& slot : stash_) {
    const std::uint64_t e = std::atomic_ref<std::uint64_t>(slot).exchange(
        0, std::memory_order_relaxed);
    if (e == 0) continue;
    FreeInSection(SizeClass(static_cast<std::uint8_t>(e >> kStashClassShift)),
                  StashObject(e));
  }
}

void ThreadHeap::DrainHandlerStash() noexcept {
  if (in_slow_path_) return;  // a handler's: the section's end drains
  const Section section(this);  // its destructor drains
}

std::size_t ThreadHeap::StashedForTesting() const noexcept {
  std::size_t n = 0;
  for (const std::uint64_t e : stash_) n += e != 0 ? 1 : 0;
  return n;
}

void ThreadHeap::Drain() noexcept {
  if (in_slow_path_) return;
  const Section section(this);
  DrainInSection();
}

void ThreadHeap::DrainInSection() noexcept {
  // Read first: a request made while draining is served next time.
  drain_epoch_ = g_drain_epoch.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    if (Constructed(i) && SlotOf(i).cache().valid()) {
      MagazineCache& m = SlotOf(i).cache();
      const MagazineCache::ShadowScope shadow(m);
      m.Drain();
    }
  }
}

void ThreadHeap::Trim(std::size_t keep_bytes) noexcept {
  if (in_slow_path_) return;
  const Section section(this);
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    if (!Constructed(i)) continue;
    MagazineCache& m = SlotOf(i).cache();
    if (!m.valid()) continue;
    const MagazineCache::ShadowScope shadow(m);
    m.FlushTo(keep_bytes / m.metadata().object_size);
  }
}

ThreadState CurrentThreadState() noexcept { return tls_state; }

ThreadHeap* InitThreadHeap(SlabClass* classes) noexcept {
  if (tls_heap != nullptr) return tls_heap;
  if (tls_state != ThreadState::kUninitialized) return nullptr;
  // Before anything that may re-enter the allocator (see the file comment).
  tls_state = ThreadState::kInitializing;
  if (!EnsureKey()) {
    tls_state = ThreadState::kUninitialized;
    return nullptr;
  }
  ThreadHeap* h;
  {
    SpinLockHolder l(&g_key_lock);
    h = HeapRegistry::PopPooledLocked(classes);
  }
  if (h != nullptr) h->TickDecay();
  if (h == nullptr) {
    void* mem = bsalloc::Allocate(sizeof(ThreadHeap));
    if (mem == nullptr) {
      tls_state = ThreadState::kUninitialized;
      return nullptr;
    }
    h = ::new (mem)
        ThreadHeap(classes, g_drain_epoch.load(std::memory_order_relaxed));
    HeapRegistry::Link(h);
  }
  g_live_heaps.fetch_add(1, std::memory_order_relaxed);
  if (pthread_setspecific(g_key, h) != 0) {
    DestroyHeap(h);
    tls_state = ThreadState::kUninitialized;
    return nullptr;
  }
  SetThreadHeap(h);
  tls_state = ThreadState::kInitialized;
  return h;
}

void ReleaseThreadHeap() noexcept {
  ThreadHeap* h = tls_heap;
  if (h == nullptr) return;
  RunReleaseHook(h);
  // Nested calls during destruction take the fallback path.
  tls_state = ThreadState::kInitializing;
  SetThreadHeap(nullptr);
  pthread_setspecific(g_key, nullptr);  // no destructor for this heap now
  DestroyHeap(h);
  tls_state = ThreadState::kUninitialized;
}

void RequestDrain() noexcept {
  g_drain_epoch.fetch_add(1, std::memory_order_relaxed);
}

void DrainThreadHeap() noexcept {
  if (ThreadHeap* h = tls_heap) h->Drain();
}

std::size_t LiveThreadHeaps() noexcept {
  return g_live_heaps.load(std::memory_order_relaxed);
}

std::size_t PooledThreadHeaps() noexcept {
  return g_pooled.load(std::memory_order_relaxed);
}

std::size_t ReleasePooledThreadHeaps() noexcept {
  std::size_t n = 0;
  for (;;) {
    ThreadHeap* h;
    {
      SpinLockHolder l(&g_key_lock);
      h = HeapRegistry::PopPooledLocked(nullptr);
    }
    if (h == nullptr) return n;
    FreeHeap(h);  // outside the lock: destruction flushes into the slabs
    ++n;
  }
}

std::size_t TryReleasePooledThreadHeaps() noexcept {
  std::size_t n = 0;
  for (;;) {
    // Never waits for the lock (see thread_cache.h): pop and unlink under
    // one TryLock, destroy outside it.
    if (!g_key_lock.TryLock()) return n;
    ThreadHeap* h = HeapRegistry::PopPooledLocked(nullptr);
    if (h != nullptr) HeapRegistry::UnlinkLocked(h);
    g_key_lock.Unlock();
    if (h == nullptr) return n;
    h->~ThreadHeap();
    bsalloc::Deallocate(h, sizeof(ThreadHeap));
    ++n;
  }
}

void AddNetAllocations(std::int64_t out[kNumSizeClasses]) noexcept {
  HeapRegistry::Sum(out);
}

void AddCachedObjects(std::size_t out[kNumSizeClasses]) noexcept {
  HeapRegistry::SumCached(out);
}

void SetThreadHeapReleaseHook(void (*hook)(ThreadHeap*)) noexcept {
  g_release_hook.store(hook, std::memory_order_release);
}

void WithRegistryLockHeldForTesting(void (*fn)(void*), void* arg) noexcept {
  SpinLockHolder l(&g_key_lock);
  fn(arg);
}

// When the forking thread already holds the lock (fork from a signal
// handler that interrupted a registry update), the prepare handler leaves it
// alone, and so does the child: the list may be half-linked, so the dead
// threads' heaps stay in it (they count as live in the statistics; nothing
// else reads them) and the lock stays with the interrupted update.
void ThreadCachePreFork() noexcept { g_key_lock.LockForFork(); }

void ThreadCachePostForkParent() noexcept { g_key_lock.UnlockAfterFork(); }

void LeaveInterruptedSlowPathInForkChild() noexcept {
  ThreadHeap* h = tls_heap;
  if (h == nullptr || !h->in_slow_path_) return;
  if (h->creating_ != 0) {
    // The cache the slow path was building (CreateCache) may be half
    // built: both fast paths fail from here on and its next use builds it
    // afresh in the same slot; whatever its fields held (a slab claim,
    // handles of bags) is the child's leak. Without this, a child whose
    // malloc reached that class ran into half-swapped bag handles (one
    // fork in about 200 runs of //elfc:signal_fork_test built with clang).
    const std::size_t i = h->creating_ - 1u;
    h->hot()[i + 1].hot.Set(nullptr, 0, 0);
    h->constructed_.store(h->constructed_.load(std::memory_order_relaxed) &
                              ~(std::uint64_t{1} << i),
                          std::memory_order_relaxed);
    h->creating_ = 0;
  }
  for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
    if (h->Constructed(i)) h->SlotOf(i).cache().LeaveShadowInForkChild();
  }
  h->in_slow_path_ = false;
}

void ThreadCachePostForkChild() noexcept {
  if (!g_key_lock.TakenForFork()) return;
  // Single-threaded here; the lock is still held from PreFork.
  g_live_heaps.store(HeapRegistry::KeepOnlyLocked(tls_heap),
                     std::memory_order_relaxed);
  g_key_lock.UnlockAfterFork();
}

}  // namespace elfmalloc
