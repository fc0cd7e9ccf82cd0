// Tests for object_allocator.h: the builder's defaults and page size rule,
// the concepts and kThreadSafe, typed construction/destruction per use, the
// reference's obj_alloc_many_pages tests (single-threaded: 81920 alloc/free
// pairs, 81920 live distinct objects; multi-threaded: threads x 16384 with
// objects freed on other threads), pages going back when everything is
// freed, the thread-safe entry points, and the untyped variants.
#include "elfmalloc/object_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc/object_alloc.h"

namespace elfmalloc {
namespace {

constexpr std::size_t K = 1024;

template <std::size_t N>
struct Words {
  std::uint64_t w[N];
};
using U24 = Words<3>;
using U32 = Words<4>;

static_assert(object_alloc::ObjectAlloc<MagazineAllocator<U24>>);
static_assert(object_alloc::ObjectAlloc<MagazineAllocator<U24>::Handle>);
static_assert(object_alloc::ObjectAlloc<LocalAllocator<U24>>);
static_assert(object_alloc::ObjectAlloc<LocalAllocator<U24>::Handle>);
static_assert(object_alloc::IsThreadSafe<MagazineAllocator<U24>>());
static_assert(object_alloc::IsThreadSafe<LocalAllocator<U24>>());
static_assert(object_alloc::UntypedObjectAlloc<MagazineUntypedAllocator>);
static_assert(
    object_alloc::UntypedObjectAlloc<MagazineUntypedAllocator::Handle>);
static_assert(object_alloc::UntypedObjectAlloc<LocalUntypedAllocator>);
static_assert(object_alloc::IsThreadSafe<MagazineUntypedAllocator>());

TEST(ObjectAllocatorTest, DefaultPageSize) {
  EXPECT_EQ(DefaultObjectPageSize(1), 32 * K);
  EXPECT_EQ(DefaultObjectPageSize(8 * K), 32 * K);
  EXPECT_EQ(DefaultObjectPageSize(8 * K + 1), 64 * K);
  EXPECT_EQ(DefaultObjectPageSize(9000), 64 * K);  // 36000 -> 64 KiB
  EXPECT_EQ(DefaultObjectPageSize(16 * K), 64 * K);
  EXPECT_EQ(DefaultObjectPageSize(1 * K * K), 4 * K * K);
}

TEST(ObjectAllocatorTest, BuilderDefaultsAreTheReferences) {
  ObjectAllocatorBuilder<U24> b;
  EXPECT_EQ(b.options().cutoff, 0.6);
  EXPECT_EQ(b.options().page_size, 0u);  // -> DefaultObjectPageSize
  EXPECT_EQ(b.options().max_dirty_bytes, 1u << 20);
  EXPECT_EQ(b.options().eager_uncommit_threshold, 128 * K);
  MagazineAllocator<U24> a = b.BuildMagazine();
  ASSERT_TRUE(a.valid());
  EXPECT_EQ(a.metadata().page_size, 32 * K);
  EXPECT_EQ(a.metadata().cutoff_objects,
            static_cast<std::size_t>(a.metadata().n_objects * 0.6));
  LocalAllocator<U24> l = b.cutoff(0.5).page_size(64 * K).BuildLocal();
  EXPECT_EQ(l.metadata().page_size, 64 * K);
  EXPECT_EQ(l.metadata().cutoff_objects, l.metadata().n_objects / 2);
}

struct Tracked {
  static inline std::atomic<int> live{0};
  Tracked() noexcept : magic(0x5eed) { live.fetch_add(1); }
  ~Tracked() {
    magic = 0;
    live.fetch_sub(1);
  }
  std::uint64_t magic;
  std::uint64_t payload[3];
};

TEST(ObjectAllocatorTest, TypedAllocateConstructsAndDeallocateDestroys) {
  MagazineAllocator<Tracked> a;
  auto h = a.NewHandle();
  Tracked* t = h.Allocate();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->magic, 0x5eedu);
  EXPECT_EQ(Tracked::live.load(), 1);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t) % alignof(Tracked), 0u);
  h.Deallocate(t);
  EXPECT_EQ(Tracked::live.load(), 0);
  Tracked* again = h.Allocate();  // the same storage, constructed afresh
  EXPECT_EQ(again, t);
  EXPECT_EQ(again->magic, 0x5eedu);
  h.Deallocate(again);
  EXPECT_EQ(Tracked::live.load(), 0);
}

// The reference's obj_alloc_many_pages_single_threaded (LocalAllocator with
// 4 KiB pages); here for both front ends.
template <class A>
void ManyPagesSingleThreaded(A alloc) {
  ASSERT_TRUE(alloc.valid());
  auto h = alloc.NewHandle();
  constexpr std::size_t kN = 81920;
  for (std::size_t i = 0; i < kN; ++i) {
    auto* p = h.Allocate();
    ASSERT_NE(p, nullptr);
    h.Deallocate(p);
  }
  std::vector<typename A::value_type*> live;
  live.reserve(kN);
  for (std::size_t i = 0; i < kN; ++i) {
    auto* p = h.Allocate();
    ASSERT_NE(p, nullptr);
    std::memset(static_cast<void*>(p), static_cast<int>(i & 0xff), sizeof(*p));
    live.push_back(p);
  }
  std::unordered_set<const void*> distinct(live.begin(), live.end());
  EXPECT_EQ(distinct.size(), kN);
  for (std::size_t i = 0; i < kN; ++i) {
    const auto* b = reinterpret_cast<const unsigned char*>(live[i]);
    ASSERT_EQ(b[0], i & 0xff);
    ASSERT_EQ(b[sizeof(*live[i]) - 1], i & 0xff);
  }
  EXPECT_GT(alloc.pages_in_use(), 1u);
  for (auto* p : live) h.Deallocate(p);
  h = typename A::Handle();  // destroy the handle: its cache goes back
  EXPECT_EQ(alloc.pages_in_use(), 0u);
}

TEST(ObjectAllocatorTest, ManyPagesSingleThreadedLocal) {
  ManyPagesSingleThreaded(
      ObjectAllocatorBuilder<std::size_t>().page_size(4 * K).BuildLocal());
  ManyPagesSingleThreaded(
      ObjectAllocatorBuilder<U24>().page_size(4 * K).BuildLocal());
  ManyPagesSingleThreaded(
      ObjectAllocatorBuilder<U32>().page_size(4 * K).BuildLocal());
}

TEST(ObjectAllocatorTest, ManyPagesSingleThreadedMagazine) {
  ManyPagesSingleThreaded(
      ObjectAllocatorBuilder<std::size_t>().page_size(4 * K).BuildMagazine());
  ManyPagesSingleThreaded(ObjectAllocatorBuilder<U24>().BuildMagazine());
  ManyPagesSingleThreaded(ObjectAllocatorBuilder<U32>().BuildMagazine());
}

// The reference's obj_alloc_many_pages_many_threads: each thread allocates
// 16384 objects; here half of each thread's objects are freed by the next
// thread (handed over through a mailbox), the rest by their allocator.
template <class A>
void ManyPagesManyThreads(A& alloc, int threads) {
  constexpr std::size_t kPerThread = 16384;
  using T = typename A::value_type;
  std::mutex mu;
  std::vector<std::vector<T*>> mail(threads);
  std::atomic<bool> failed{false};
  std::atomic<int> done_producing{0};
  auto worker = [&](int id) {
    auto h = alloc.NewHandle();
    std::vector<T*> mine;
    for (std::size_t i = 0; i < kPerThread; ++i) {
      T* p = h.Allocate();
      if (p == nullptr) {
        failed = true;
        return;
      }
      std::memset(static_cast<void*>(p), id + 1, sizeof(T));
      mine.push_back(p);
    }
    std::vector<T*> give(mine.begin() + kPerThread / 2, mine.end());
    mine.resize(kPerThread / 2);
    {
      std::lock_guard<std::mutex> l(mu);
      auto& box = mail[(id + 1) % threads];
      box.insert(box.end(), give.begin(), give.end());
    }
    for (T* p : mine) {
      if (reinterpret_cast<unsigned char*>(p)[sizeof(T) - 1] != id + 1) {
        failed = true;
      }
      h.Deallocate(p);
    }
    done_producing.fetch_add(1);
    while (done_producing.load() != threads) std::this_thread::yield();
    std::vector<T*> in;
    {
      std::lock_guard<std::mutex> l(mu);
      in.swap(mail[id]);
    }
    const int from = (id + threads - 1) % threads + 1;
    for (T* p : in) {
      if (reinterpret_cast<unsigned char*>(p)[0] != from) failed = true;
      h.Deallocate(p);
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  EXPECT_FALSE(failed.load());
}

TEST(ObjectAllocatorTest, ManyPagesManyThreadsMagazine) {
  MagazineAllocator<U24> a;
  ManyPagesManyThreads(a, 8);
}

TEST(ObjectAllocatorTest, ManyPagesManyThreadsLocal) {
  LocalAllocator<U32> a;
  ManyPagesManyThreads(a, 8);
}

TEST(ObjectAllocatorTest, DestructionOfHandlesReturnsPages) {
  MagazineAllocator<Words<8>> a;
  std::vector<Words<8>*> objs;
  {
    auto h1 = a.NewHandle();
    auto h2 = a.NewHandle();
    for (int i = 0; i < 5000; ++i) objs.push_back(h1.Allocate());
    EXPECT_GT(a.pages_in_use(), 5u);
    for (std::size_t i = 0; i < objs.size(); ++i) {
      (i % 2 ? h1 : h2).Deallocate(objs[i]);
    }
  }
  EXPECT_EQ(a.pages_in_use(), 0u);
  // The pages are cached by the page allocator, within its dirty budget.
  EXPECT_LE(a.page_stats().dirty_pages * 32 * K, std::size_t{1} << 20);
}

TEST(ObjectAllocatorTest, DestroyingTheAllocatorUnmapsItsPages) {
  const std::size_t os_page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  std::vector<void*> pages;
  {
    MagazineAllocator<Words<8>> a;
    {
      auto h = a.NewHandle();
      std::vector<Words<8>*> objs;
      for (int i = 0; i < 3000; ++i) objs.push_back(h.Allocate());
      for (Words<8>* p : objs) {
        pages.push_back(reinterpret_cast<void*>(
            reinterpret_cast<std::uintptr_t>(p) & ~(32 * K - 1)));
      }
      for (Words<8>* p : objs) h.Deallocate(p);
    }
    a.Deallocate(a.Allocate());  // a registered handle, too
    EXPECT_EQ(a.pages_in_use(), 1u);  // the registered handle's slab
  }
  unsigned char v;
  for (void* page : pages) {
    errno = 0;
    EXPECT_EQ(mincore(page, os_page, &v), -1) << page;
    EXPECT_EQ(errno, ENOMEM);
  }
}

TEST(ObjectAllocatorTest, ThreadSafeEntryPointsAcrossThreads) {
  MagazineAllocator<U32> a;
  constexpr int kThreads = 4;
  std::vector<std::vector<U32*>> made(kThreads);
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        for (int i = 0; i < 3000; ++i) {
          U32* p = a.Allocate();
          ASSERT_NE(p, nullptr);
          p->w[0] = static_cast<std::uint64_t>(t);
          made[t].push_back(p);
        }
      });
    }
    for (auto& th : ts) th.join();
  }
  std::set<U32*> distinct;
  for (auto& v : made) distinct.insert(v.begin(), v.end());
  EXPECT_EQ(distinct.size(), kThreads * 3000u);
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {  // frees another thread's objects
        for (U32* p : made[(t + 1) % kThreads]) {
          EXPECT_EQ(p->w[0], static_cast<std::uint64_t>((t + 1) % kThreads));
          a.Deallocate(p);
        }
      });
    }
    for (auto& th : ts) th.join();
  }
  // The main thread's handle is separate and works too.
  U32* p = a.Allocate();
  ASSERT_NE(p, nullptr);
  a.Deallocate(p);
}

TEST(ObjectAllocatorTest, UntypedLayouts) {
  for (object_alloc::Layout l : {object_alloc::Layout{1, 1},
                                 object_alloc::Layout{24, 8},
                                 object_alloc::Layout{64, 64},
                                 object_alloc::Layout{4096, 4096},
                                 object_alloc::Layout{12288, 4096}}) {
    MagazineUntypedAllocator a(l);
    ASSERT_TRUE(a.valid());
    EXPECT_EQ(a.layout(), l);
    auto h = a.NewHandle();
    EXPECT_EQ(h.layout(), l);
    std::vector<void*> objs;
    for (int i = 0; i < 300; ++i) {
      void* p = h.Allocate();
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % l.align, 0u);
      std::memset(p, i, l.size);
      objs.push_back(p);
    }
    for (int i = 0; i < 300; ++i) {
      EXPECT_EQ(static_cast<unsigned char*>(objs[i])[l.size - 1],
                static_cast<unsigned char>(i));
    }
    for (void* p : objs) h.Deallocate(p);
  }
  EXPECT_FALSE(MagazineUntypedAllocator(object_alloc::Layout{3, 2}).valid());
  MagazineUntypedAllocator bad(object_alloc::Layout{0, 1});
  EXPECT_EQ(bad.Allocate(), nullptr);
  EXPECT_EQ(bad.NewHandle().Allocate(), nullptr);
}

TEST(ObjectAllocatorTest, MovedAllocatorKeepsWorking) {
  LocalAllocator<U24> a;
  U24* p = a.Allocate();
  LocalAllocator<U24> b(std::move(a));
  b.Deallocate(p);  // the thread's registered handle moved with it
  U24* q = b.Allocate();
  EXPECT_EQ(q, p);
  b.Deallocate(q);
}

}  // namespace
}  // namespace elfmalloc
