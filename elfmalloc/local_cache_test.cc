// Tests for local_cache.h: frees into the current slab are cached locally
// (no slab traffic) and reused LIFO, frees of other slabs' objects are remote
// at once, teardown returns every page, and a multi-threaded stress.
#include "elfmalloc/local_cache.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/page_alloc.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_allocator.h"
#include "gtest/gtest.h"

namespace elfmalloc {
namespace {

constexpr std::size_t K = 1024;

struct Env {
  explicit Env(std::size_t size) : pa(Pages()), cls(&pa, Class(size)) {}
  static PageAlloc::Options Pages() {
    PageAlloc::Options o;
    o.page_size = 32 * K;
    o.type = AllocType::kSmallSlab;
    return o;
  }
  static SlabClass::Options Class(std::size_t size) {
    SlabClass::Options o;
    o.object_size = size;
    return o;
  }
  PageAlloc pa;
  SlabClass cls;
};

TEST(LocalCacheTest, CapacityIsTheSlabsObjectCount) {
  Env e(256);
  LocalCache c(&e.cls);
  EXPECT_EQ(c.capacity(), e.cls.metadata().n_objects);
}

TEST(LocalCacheTest, CurrentSlabFreesAreLocalAndLifo) {
  Env e(256);
  LocalCache c(&e.cls);
  void* a = c.Alloc();
  void* b = c.Alloc();
  Slab* s = Slab::Find(a, 32 * K);
  const std::int64_t count = s->AvailableCount();
  c.Free(a);
  c.Free(b);
  EXPECT_EQ(c.cached(), 2u);
  EXPECT_EQ(s->AvailableCount(), count);  // no slab traffic
  EXPECT_EQ(c.Alloc(), b);
  EXPECT_EQ(c.Alloc(), a);
}

TEST(LocalCacheTest, OtherSlabsFreesAreRemote) {
  Env e(256);
  LocalCache c(&e.cls);
  const std::size_t n = e.cls.metadata().n_objects;
  std::vector<void*> first;
  for (std::size_t i = 0; i < n; ++i) first.push_back(c.Alloc());
  Slab* s = Slab::Find(first[0], 32 * K);
  void* other = c.Alloc();  // a new current slab; s floats
  ASSERT_NE(Slab::Find(other, 32 * K), s);
  c.Free(first[0]);
  EXPECT_EQ(c.cached(), 0u);
  EXPECT_EQ(s->AvailableCount(), 1);
  for (std::size_t i = 1; i < n; ++i) c.Free(first[i]);  // s goes back
  EXPECT_EQ(e.cls.pages_in_use(), 1u);
  c.Free(other);
  EXPECT_EQ(c.cached(), 1u);
}

TEST(LocalCacheTest, DestructionReturnsEveryPage) {
  Env e(64);
  {
    LocalCache c(&e.cls);
    std::vector<void*> objs;
    const std::size_t n = 2 * e.cls.metadata().n_objects + 3;
    for (std::size_t i = 0; i < n; ++i) objs.push_back(c.Alloc());
    std::set<void*> distinct(objs.begin(), objs.end());
    EXPECT_EQ(distinct.size(), n);
    for (auto it = objs.rbegin(); it != objs.rend(); ++it) c.Free(*it);
    EXPECT_GT(c.cached(), 0u);
  }
  EXPECT_EQ(e.cls.pages_in_use(), 0u);
}

TEST(LocalCacheTest, ConcurrentCrossThreadFrees) {
  Env e(32);
  constexpr int kThreads = 4;
  std::mutex mu;
  std::vector<std::vector<std::uint64_t*>> mail(kThreads);
  std::atomic<bool> failed{false};
  auto worker = [&](int id) {
    LocalCache c(&e.cls);
    std::vector<std::uint64_t*> mine;
    for (int r = 0; r < 20000; ++r) {
      auto* p = static_cast<std::uint64_t*>(c.Alloc());
      if (p == nullptr) {
        failed = true;
        break;
      }
      p[0] = p[1] = p[2] = p[3] = static_cast<std::uint64_t>(id);
      if (r % 2 == 0) {
        c.Free(p);
        continue;
      }
      mine.push_back(p);
      if (mine.size() >= 64) {
        std::vector<std::uint64_t*> in;
        {
          std::lock_guard<std::mutex> l(mu);
          auto& box = mail[(id + 1) % kThreads];
          box.insert(box.end(), mine.begin(), mine.end());
          in.swap(mail[id]);
        }
        mine.clear();
        for (std::uint64_t* q : in) {
          if (q[1] != q[0] || q[2] != q[0] || q[3] != q[0]) failed = true;
          c.Free(q);
        }
      }
    }
    for (std::uint64_t* q : mine) c.Free(q);
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  {
    LocalCache c(&e.cls);
    for (auto& box : mail) {
      for (std::uint64_t* q : box) c.Free(q);
    }
  }
  EXPECT_FALSE(failed.load());
}

}  // namespace
}  // namespace elfmalloc
