// Tests for thread_cache: the four-state per-thread life cycle, lazy
// per-class caches, thread exit returning cached objects and slabs (through
// the pool of retired heaps: trimmed, bounded, reused, released), draining
// on request, and the
// kInitializing / kDropped states refusing to build a heap.
#include "elfmalloc/thread_cache.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "elfmalloc/page_alloc.h"
#include "elfmalloc/size_classes.h"
#include "elfmalloc/slab_allocator.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

// The elfmalloc classes over private page allocators (never destroyed, like
// the general allocator's: heaps of exited threads may leave floating slabs).
struct Classes {
  Classes()
      : small(PageAlloc::SmallPages()),
        mid(PageAlloc::MidPages()),
        medium(PageAlloc::MediumPages()) {
    for (std::size_t i = 0; i < kNumSizeClasses; ++i) {
      const SizeClass c(static_cast<std::uint8_t>(i));
      SlabClass::Options o;
      o.object_size = ClassSize(c);
      ::new (&storage[i]) SlabClass(
          ClassPageSize(c) == kSmallPageSize ? &small
          : ClassPageSize(c) == kMidPageSize ? &mid
                                             : &medium,
          o);
    }
  }
  SlabClass* get() {
    return std::launder(reinterpret_cast<SlabClass*>(&storage[0]));
  }
  PageAlloc small;
  PageAlloc mid;
  PageAlloc medium;
  alignas(SlabClass) unsigned char storage[kNumSizeClasses][sizeof(SlabClass)];
};

Classes& TestClasses() {
  static Classes* c = new Classes();
  return *c;
}

TEST(ThreadCacheTest, LifeCycle) {
  SlabClass* classes = TestClasses().get();
  const std::size_t live_before = LiveThreadHeaps();
  std::thread t([&] {
    EXPECT_EQ(CurrentThreadState(), ThreadState::kUninitialized);
    EXPECT_EQ(CurrentThreadHeap(), nullptr);
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(CurrentThreadState(), ThreadState::kInitialized);
    EXPECT_EQ(CurrentThreadHeap(), h);
    EXPECT_EQ(InitThreadHeap(classes), h);  // idempotent
    EXPECT_EQ(LiveThreadHeaps(), live_before + 1);
    EXPECT_EQ(h->CachesCreated(), 0u);  // per-class caches are lazy
    void* p = h->Cache(SizeClass(3)).Alloc();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(h->CachesCreated(), 1u);
    h->Cache(SizeClass(3)).Free(p);
  });
  t.join();
  // The key destructor ran and destroyed the heap.
  EXPECT_EQ(LiveThreadHeaps(), live_before);
}

// Every fast-path entry carries its tag's alignment mask, which free tests
// before anything else: in a heap from the start (the entries are written
// when it is built, over memory that may hold an old heap's), and in the
// entries a thread without a heap reads (constant-initialised), so that a
// misaligned free is caught the same way with and without a heap.
TEST(ThreadCacheTest, FastPathEntriesCarryTheTagsAlignmentMasks) {
  for (std::size_t t = 0; t < kHotEntries; ++t) {
    EXPECT_EQ(internal::kNoHeapHot.slots[t].align_mask, TagAlignMask(t)) << t;
    EXPECT_EQ(internal::kNoHeapHot.slots[t].hot.capacity(), 0u) << t;
  }
  SlabClass* classes = TestClasses().get();
  std::thread th([&] {
    EXPECT_EQ(CurrentHotStates(), internal::kNoHeapHot.slots);
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(CurrentHotStates(), h->hot());
    void* p = h->Cache(SizeClass(3)).Alloc();  // binds class 3's entry
    ASSERT_NE(p, nullptr);
    for (std::size_t t = 0; t < kHotEntries; ++t) {
      EXPECT_EQ(h->hot()[t].align_mask, TagAlignMask(t)) << t;
    }
    h->Cache(SizeClass(3)).Free(p);
  });
  th.join();
  // Over a recycled block: the masks are written, not assumed.
  alignas(ThreadHeap) static unsigned char storage[sizeof(ThreadHeap)];
  std::memset(storage, 0xA5, sizeof(storage));
  ThreadHeap* h = ::new (storage) ThreadHeap(classes);
  for (std::size_t t = 0; t < kHotEntries; ++t) {
    EXPECT_EQ(h->hot()[t].align_mask, TagAlignMask(t)) << t;
    EXPECT_EQ(h->hot()[t].hot.capacity(), 0u) << t;
  }
  h->~ThreadHeap();
}

// The magazines' stacks of one heap lie side by side in its stack arena:
// the stacks of the 44 classes above 256 bytes (at most 1.6 KiB each) fill a
// few pages, where a mapping per stack took a page each. Filled to their
// capacity, they keep every object intact (no stack overlaps another).
TEST(ThreadCacheTest, StacksShareTheHeapsArena) {
  SlabClass* classes = TestClasses().get();
  std::thread t([&] {
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    const std::size_t first = SizeToClass(257).index();
    std::uintptr_t lo = ~std::uintptr_t{0}, hi = 0;
    std::vector<std::vector<void*>> objs(kNumSizeClasses);
    for (std::size_t i = first; i < kNumSizeClasses; ++i) {
      const SizeClass c(static_cast<std::uint8_t>(i));
      MagazineCache& m = h->Cache(c);
      const std::size_t bytes = MagazineStackBytes(ClassSize(c));
      ASSERT_LE(bytes, 2048u) << ClassSize(c);
      // Fill the stack: allocate the default capacity's objects, empty the
      // stack (the refills' leftovers), free them all. A cache that
      // started in its nursery has left it by then.
      for (std::size_t k = 0; k < m.max_capacity(); ++k) {
        void* p = m.Alloc();
        ASSERT_NE(p, nullptr);
        objs[i].push_back(p);
      }
      m.FlushAll();
      for (void* p : objs[i]) m.Free(p);
      ASSERT_FALSE(m.in_nursery()) << ClassSize(c);
      ASSERT_EQ(m.cached(), m.capacity());
      ASSERT_EQ(m.capacity(), m.max_capacity());
      const auto base = reinterpret_cast<std::uintptr_t>(m.cached_objects());
      ASSERT_NE(base, 0u);
      lo = base < lo ? base : lo;
      hi = base + bytes > hi ? base + bytes : hi;
    }
    const std::size_t classes_above = kNumSizeClasses - first;
    EXPECT_EQ(classes_above, 44u);
    EXPECT_LE(hi - lo, std::size_t{16} << 10)
        << "the stacks of " << classes_above << " classes span " << (hi - lo)
        << " bytes";
    // Every stack still holds exactly the objects freed into it.
    for (std::size_t i = first; i < kNumSizeClasses; ++i) {
      MagazineCache& m = h->Cache(SizeClass(static_cast<std::uint8_t>(i)));
      std::vector<void*> got(m.cached_objects(),
                             m.cached_objects() + m.cached());
      std::vector<void*> want = objs[i];
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      ASSERT_EQ(got, want) << ClassSize(SizeClass(static_cast<std::uint8_t>(i)));
    }
  });
  t.join();
}

TEST(ThreadCacheTest, ThreadExitReturnsCachedObjectsAndSlabs) {
  SlabClass* classes = TestClasses().get();
  for (std::size_t ci : {std::size_t{1}, std::size_t{15}, std::size_t{22}}) {
    const SizeClass c(static_cast<std::uint8_t>(ci));
    const std::size_t before = classes[ci].pages_in_use();
    std::thread t([&] {
      ThreadHeap* h = InitThreadHeap(classes);
      ASSERT_NE(h, nullptr);
      std::vector<void*> v;
      const std::size_t n = 3 * classes[ci].metadata().n_objects + 5;
      for (std::size_t i = 0; i < n; ++i) {
        void* p = h->Cache(c).Alloc();
        ASSERT_NE(p, nullptr);
        v.push_back(p);
      }
      EXPECT_GE(classes[ci].pages_in_use(), before + 3);
      for (void* p : v) h->Cache(c).Free(p);
      // Much of it is still cached by the magazine or claimed.
      EXPECT_GT(classes[ci].pages_in_use(), before);
    });
    t.join();
    // The exited thread's heap is pooled: trimmed to kRetiredKeepBytes of
    // cached objects, its claimed slab kept. Releasing the pool gives back
    // everything.
    EXPECT_LE(PooledThreadHeaps(), 8u);
    ReleasePooledThreadHeaps();
    EXPECT_EQ(PooledThreadHeaps(), 0u);
    EXPECT_EQ(classes[ci].pages_in_use(), before) << ci;
  }
}

// Draining: a heap gives back its cached objects and claimed slabs when
// asked, the calling thread's at once (DrainThreadHeap), another thread's
// at its next slow path after RequestDrain; its magazines stay usable.
TEST(ThreadCacheTest, DrainReturnsCachedObjectsAndClaimedSlabs) {
  SlabClass* classes = TestClasses().get();
  const std::size_t ci = SizeToClass(64 << 10).index();  // a 2 MiB slab
  const SizeClass c(static_cast<std::uint8_t>(ci));
  const std::size_t before = classes[ci].pages_in_use();
  std::atomic<int> step{0};
  std::thread t([&] {
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    void* p = h->Alloc(c);
    ASSERT_NE(p, nullptr);
    h->Free(c, p);
    // Cached, and its slab claimed: nothing went back.
    EXPECT_EQ(classes[ci].pages_in_use(), before + 1);
    DrainThreadHeap();
    EXPECT_EQ(classes[ci].pages_in_use(), before);
    // Still usable, and another drain request is served at a slow path
    // (the magazine is empty, so this allocation takes one).
    p = h->Alloc(c);
    ASSERT_NE(p, nullptr);
    h->Free(c, p);
    EXPECT_EQ(classes[ci].pages_in_use(), before + 1);
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    // The fast path never drains: this allocation pops the cached object.
    p = h->Alloc(c);
    EXPECT_EQ(classes[ci].pages_in_use(), before + 1);
    // A free that overflows the magazine is a slow path: it drains first,
    // then caches p.
    const std::size_t fill = h->Cache(c).capacity();
    std::vector<void*> more;
    for (std::size_t i = 0; i < fill; ++i) more.push_back(h->Alloc(c));
    for (void* q : more) h->Free(c, q);
    h->Free(c, p);
    EXPECT_LE(h->Cache(c).cached(), fill);
    DrainThreadHeap();
    EXPECT_EQ(classes[ci].pages_in_use(), before);
  });
  while (step.load() != 1) std::this_thread::yield();
  RequestDrain();
  step.store(2);
  t.join();
  ReleasePooledThreadHeaps();
  EXPECT_EQ(classes[ci].pages_in_use(), before);
}

// A requested drain happens at the heap's next slow path, whatever class
// that is for.
TEST(ThreadCacheTest, RequestedDrainHappensAtTheNextSlowPath) {
  SlabClass* classes = TestClasses().get();
  const std::size_t a = SizeToClass(32 << 10).index();
  const std::size_t b = SizeToClass(128 << 10).index();
  const std::size_t before_a = classes[a].pages_in_use();
  std::thread t([&] {
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    const SizeClass ca(static_cast<std::uint8_t>(a));
    const SizeClass cb(static_cast<std::uint8_t>(b));
    h->Free(ca, h->Alloc(ca));
    EXPECT_EQ(classes[a].pages_in_use(), before_a + 1);
    RequestDrain();
    // The first allocation of class b is a slow path (no magazine yet): it
    // drains class a's magazine and slab first.
    void* q = h->Alloc(cb);
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(classes[a].pages_in_use(), before_a);
    h->Free(cb, q);
    ReleaseThreadHeap();
  });
  t.join();
}

// TryReleasePooledThreadHeaps destroys the pooled heaps (their claimed
// slabs go back), and returns at once, destroying nothing, while the
// registry lock is held (here by the calling thread itself: Lock would
// deadlock).
TEST(ThreadCacheTest, TryReleasePooledHeapsNeverWaits) {
  SlabClass* classes = TestClasses().get();
  ReleasePooledThreadHeaps();
  const std::size_t ci = SizeToClass(64 << 10).index();  // a 2 MiB slab
  const SizeClass c(static_cast<std::uint8_t>(ci));
  const std::size_t before = classes[ci].pages_in_use();
  std::thread([&] {
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    h->Free(c, h->Alloc(c));
  }).join();
  ASSERT_EQ(PooledThreadHeaps(), 1u);
  EXPECT_EQ(classes[ci].pages_in_use(), before + 1);  // claimed while pooled
  std::size_t released = 99;
  WithRegistryLockHeldForTesting(
      [](void* out) {
        *static_cast<std::size_t*>(out) = TryReleasePooledThreadHeaps();
      },
      &released);
  EXPECT_EQ(released, 0u);
  EXPECT_EQ(PooledThreadHeaps(), 1u);
  EXPECT_EQ(TryReleasePooledThreadHeaps(), 1u);
  EXPECT_EQ(PooledThreadHeaps(), 0u);
  EXPECT_EQ(classes[ci].pages_in_use(), before);
}

// A retired heap is kept, trimmed, and handed to the next thread with its
// caches (no new magazine mappings), and the net allocation counts of the
// objects that moved through it stay exact.
TEST(ThreadCacheTest, RetiredHeapsArePooledTrimmedAndReused) {
  SlabClass* classes = TestClasses().get();
  ReleasePooledThreadHeaps();
  const SizeClass c = SizeToClass(64);  // 1024 fit a magazine, 512 kept
  std::int64_t net_before[kNumSizeClasses] = {};
  AddNetAllocations(net_before);
  ThreadHeap* first = nullptr;
  std::vector<void*> kept;
  std::thread([&] {
    first = InitThreadHeap(classes);
    ASSERT_NE(first, nullptr);
    std::vector<void*> v;
    for (int i = 0; i < 1000; ++i) v.push_back(first->Alloc(c));
    for (int i = 0; i < 10; ++i) kept.push_back(v[i]);  // outlive the thread
    for (std::size_t i = 10; i < v.size(); ++i) first->Free(c, v[i]);
    EXPECT_GE(first->Cache(c).cached(), 990u);
  }).join();
  EXPECT_EQ(PooledThreadHeaps(), 1u);
  // Trimmed to kRetiredKeepBytes of cached objects.
  EXPECT_EQ(first->Cache(c).cached(), kRetiredKeepBytes / ClassSize(c));
  std::int64_t net[kNumSizeClasses] = {};
  AddNetAllocations(net);
  EXPECT_EQ(net[c.index()] - net_before[c.index()], 10);
  std::thread([&] {
    ThreadHeap* h = InitThreadHeap(classes);
    EXPECT_EQ(h, first);  // reused
    EXPECT_EQ(PooledThreadHeaps(), 0u);
    EXPECT_EQ(h->CachesCreated(), 1u);
    void* p = h->Alloc(c);  // from the kept magazine
    EXPECT_NE(p, nullptr);
    for (void* q : kept) h->Free(c, q);
    h->Free(c, p);
  }).join();
  std::int64_t net_after[kNumSizeClasses] = {};
  AddNetAllocations(net_after);
  EXPECT_EQ(net_after[c.index()], net_before[c.index()]);
  ReleasePooledThreadHeaps();
}

// The pool holds at most PoolLimit() (2..8) heaps; the rest are destroyed.
TEST(ThreadCacheTest, PoolIsBounded) {
  SlabClass* classes = TestClasses().get();
  ReleasePooledThreadHeaps();
  const std::size_t live = LiveThreadHeaps();
  constexpr int kThreads = 12;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) {
    ts.emplace_back([&] {
      ThreadHeap* h = InitThreadHeap(classes);
      ASSERT_NE(h, nullptr);
      h->Free(SizeClass(0), h->Alloc(SizeClass(0)));
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
    });
  }
  while (ready.load() < kThreads) std::this_thread::yield();
  EXPECT_EQ(LiveThreadHeaps(), live + kThreads);
  go.store(true);
  for (auto& t : ts) t.join();
  EXPECT_EQ(LiveThreadHeaps(), live);
  const std::size_t pooled = PooledThreadHeaps();
  EXPECT_GE(pooled, 2u);
  EXPECT_LE(pooled, 8u);
  EXPECT_EQ(ReleasePooledThreadHeaps(), pooled);
  EXPECT_EQ(PooledThreadHeaps(), 0u);
}

TEST(ThreadCacheTest, ReleaseReturnsToUninitialized) {
  SlabClass* classes = TestClasses().get();
  std::thread t([&] {
    ThreadHeap* h = InitThreadHeap(classes);
    ASSERT_NE(h, nullptr);
    const std::size_t live = LiveThreadHeaps();
    void* p = h->Cache(SizeClass(0)).Alloc();
    h->Cache(SizeClass(0)).Free(p);
    ReleaseThreadHeap();
    EXPECT_EQ(CurrentThreadState(), ThreadState::kUninitialized);
    EXPECT_EQ(CurrentThreadHeap(), nullptr);
    EXPECT_EQ(LiveThreadHeaps(), live - 1);
    ASSERT_NE(InitThreadHeap(classes), nullptr);  // a fresh heap
    EXPECT_EQ(LiveThreadHeaps(), live);
  });
  t.join();
}

TEST(ThreadCacheTest, NestedInitialisationGetsNoHeap) {
  SlabClass* classes = TestClasses().get();
  std::thread t([&] {
    // What a malloc nested inside InitThreadHeap sees.
    internal::tls_state = ThreadState::kInitializing;
    EXPECT_EQ(InitThreadHeap(classes), nullptr);
    EXPECT_EQ(CurrentThreadState(), ThreadState::kInitializing);
    internal::tls_state = ThreadState::kUninitialized;
    EXPECT_NE(InitThreadHeap(classes), nullptr);
  });
  t.join();
}

// A TLS destructor that runs after elfmalloc's (glibc runs key destructors in
// key order; this key is created after elfmalloc's) sees kDropped and cannot
// resurrect a heap nobody would destroy.
std::atomic<int> g_seen_state{-1};
std::atomic<bool> g_got_heap{true};
void LateDestructor(void*) {
  g_seen_state.store(static_cast<int>(CurrentThreadState()));
  g_got_heap.store(InitThreadHeap(TestClasses().get()) != nullptr);
}

TEST(ThreadCacheTest, AfterThreadExitTheStateIsDropped) {
  SlabClass* classes = TestClasses().get();
  // Make sure elfmalloc's key exists first.
  std::thread([&] { ASSERT_NE(InitThreadHeap(classes), nullptr); }).join();
  pthread_key_t late;
  ASSERT_EQ(pthread_key_create(&late, &LateDestructor), 0);
  const std::size_t live = LiveThreadHeaps();
  std::thread t([&] {
    ASSERT_NE(InitThreadHeap(classes), nullptr);
    pthread_setspecific(late, reinterpret_cast<void*>(1));
  });
  t.join();
  EXPECT_EQ(g_seen_state.load(), static_cast<int>(ThreadState::kDropped));
  EXPECT_FALSE(g_got_heap.load());
  EXPECT_EQ(LiveThreadHeaps(), live);
  pthread_key_delete(late);
}

// Signal handlers (thread_cache.h): a handler that interrupts a slow path
// finds the magazine it changes blocked, and its free and malloc go
// through the heap's handler stash instead of the caches. The shared
// first-refill hook runs inside the nursery's first refill, where it plays
// the handler.
struct HandlerInRefill {
  ThreadHeap* heap = nullptr;
  SizeClass c{0};
  void* block = nullptr;  // of class c, from outside the heap
  bool fast_alloc_failed = false;
  bool fast_free_failed = false;
  std::size_t stashed_after_free = 0;
  void* got_back = nullptr;
  std::size_t stashed_at_end = 0;
  int calls = 0;
};
HandlerInRefill* g_handler = nullptr;

std::size_t PlayHandler(SlabClass*, void**, std::size_t) noexcept {
  HandlerInRefill& t = *g_handler;
  if (t.calls++ != 0) return 0;
  void* q;
  t.fast_alloc_failed = !t.heap->TryAlloc(t.c, &q);
  t.fast_free_failed = !t.heap->TryFree(t.c, t.block);
  if (!t.fast_free_failed) return 0;  // the block is in the magazine now
  t.heap->Free(t.c, t.block);
  t.stashed_after_free = t.heap->StashedForTesting();
  t.got_back = t.heap->Alloc(t.c);  // the handler's own block back
  t.heap->Free(t.c, t.block);       // and freed again: left to the drain
  t.stashed_at_end = t.heap->StashedForTesting();
  return 0;  // the refill goes on from the slabs
}

TEST(ThreadCacheTest, HandlersInsideASlowPathUseTheStash) {
  SlabClass* classes = TestClasses().get();
  std::thread t([classes] {
    HandlerInRefill h;
    h.c = SizeToClass(64);
    SlabAllocator outside(&classes[h.c.index()]);
    h.block = outside.Alloc();
    ASSERT_NE(h.block, nullptr);
    h.heap = InitThreadHeap(classes);
    ASSERT_NE(h.heap, nullptr);
    g_handler = &h;
    SetSharedRefill(&PlayHandler);
    void* p = h.heap->Alloc(h.c);  // the class's first use: a nursery refill
    SetSharedRefill(nullptr);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(h.calls, 1);
    EXPECT_TRUE(h.fast_alloc_failed);
    EXPECT_TRUE(h.fast_free_failed);
    EXPECT_EQ(h.stashed_after_free, 1u);
    EXPECT_EQ(h.got_back, h.block);
    EXPECT_EQ(h.stashed_at_end, 1u);
    // The slow path's end gave the stashed block to the magazine.
    EXPECT_EQ(h.heap->StashedForTesting(), 0u);
    std::vector<void*> cached;
    void* q;
    while (h.heap->TryAlloc(h.c, &q)) cached.push_back(q);
    EXPECT_NE(std::find(cached.begin(), cached.end(), h.block), cached.end());
    EXPECT_EQ(std::find(cached.begin(), cached.end(), p), cached.end());
    for (void* b : cached) h.heap->Free(h.c, b);
    h.heap->Free(h.c, p);
    ReleaseThreadHeap();
  });
  t.join();
}

}  // namespace
}  // namespace elfmalloc
