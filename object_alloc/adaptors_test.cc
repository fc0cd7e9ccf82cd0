// Tests for adaptors.h: TypedAsUntyped(Ref), ConstructingObjectAlloc and
// CachingObjectAlloc, against counting allocators that observe every
// construction, destruction, allocation and deallocation.
#include "object_alloc/adaptors.h"

#include <cstddef>
#include <cstdint>
#include <set>
#include <utility>

#include "gtest/gtest.h"
#include "object_alloc/heap_alloc.h"
#include "object_alloc/object_alloc.h"

namespace object_alloc {
namespace {

// Counts constructions and destructions of Tracked objects (tests are
// single-threaded; each test resets the counters).
struct Counters {
  int constructed = 0;
  int destroyed = 0;
};
Counters g_counters;

struct Tracked {
  Tracked() noexcept : value(42) { ++g_counters.constructed; }
  ~Tracked() {
    ++g_counters.destroyed;
    value = -1;
  }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  std::int64_t value;
};

// A typed allocator that records which objects it has handed out and counts
// calls; it constructs on Allocate and destroys on Deallocate.
template <class T>
class CountingAlloc {
 public:
  using value_type = T;
  explicit CountingAlloc(int* allocs = nullptr, int* deallocs = nullptr)
      : allocs_(allocs), deallocs_(deallocs) {}
  T* Allocate() noexcept {
    if (allocs_ != nullptr) ++*allocs_;
    T* p = heap_.Allocate();
    live_.insert(p);
    return p;
  }
  void Deallocate(T* p) noexcept {
    if (deallocs_ != nullptr) ++*deallocs_;
    EXPECT_EQ(live_.erase(p), 1u) << "Deallocate of a pointer not handed out";
    heap_.Deallocate(p);
  }
  ~CountingAlloc() { EXPECT_TRUE(live_.empty()) << "objects leaked"; }
  std::size_t live() const { return live_.size(); }

 private:
  HeapObjectAlloc<T> heap_;
  std::set<T*> live_;
  int* allocs_;
  int* deallocs_;
};

struct ThreadSafeTyped {
  using value_type = int;
  static constexpr bool kThreadSafe = true;
  int* Allocate() noexcept { return nullptr; }
  void Deallocate(int*) noexcept {}
};

static_assert(UntypedObjectAlloc<TypedAsUntyped<CountingAlloc<Tracked>>>);
static_assert(UntypedObjectAlloc<TypedAsUntypedRef<CountingAlloc<Tracked>>>);
static_assert(
    ObjectAlloc<ConstructingObjectAlloc<Tracked, HeapUntypedObjectAlloc>>);
static_assert(ObjectAlloc<CachingObjectAlloc<CountingAlloc<Tracked>>>);
// Thread safety propagates through the views and not through the cache.
static_assert(IsThreadSafe<TypedAsUntyped<ThreadSafeTyped>>());
static_assert(!IsThreadSafe<TypedAsUntyped<CountingAlloc<int>>>());
static_assert(IsThreadSafe<TypedAsUntypedRef<ThreadSafeTyped>>());
static_assert(
    IsThreadSafe<ConstructingObjectAlloc<int, HeapUntypedObjectAlloc>>());
static_assert(!IsThreadSafe<CachingObjectAlloc<HeapObjectAlloc<int>>>());

class AdaptorsTest : public ::testing::Test {
 protected:
  void SetUp() override { g_counters = Counters{}; }
};

TEST_F(AdaptorsTest, TypedAsUntypedReportsLayoutAndForwards) {
  int allocs = 0, deallocs = 0;
  {
    TypedAsUntyped<CountingAlloc<Tracked>> untyped(std::in_place, &allocs,
                                                  &deallocs);
    EXPECT_EQ(untyped.layout(), LayoutOf<Tracked>());
    void* p = untyped.Allocate();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(Tracked), 0u);
    // The memory holds a constructed Tracked: the view does not hide that.
    EXPECT_EQ(static_cast<Tracked*>(p)->value, 42);
    EXPECT_EQ(untyped.typed().live(), 1u);
    untyped.Deallocate(p);
    EXPECT_EQ(untyped.typed().live(), 0u);
  }
  EXPECT_EQ(allocs, 1);
  EXPECT_EQ(deallocs, 1);
  EXPECT_EQ(g_counters.constructed, 1);
  EXPECT_EQ(g_counters.destroyed, 1);
}

TEST_F(AdaptorsTest, TypedAsUntypedRefDoesNotOwn) {
  CountingAlloc<Tracked> typed;
  {
    TypedAsUntypedRef<CountingAlloc<Tracked>> view(typed);
    EXPECT_EQ(&view.typed(), &typed);
    void* p = view.Allocate();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(typed.live(), 1u);
    view.Deallocate(p);
  }
  // The view is gone, the allocator is still usable.
  Tracked* t = typed.Allocate();
  ASSERT_NE(t, nullptr);
  typed.Deallocate(t);
  EXPECT_EQ(g_counters.constructed, 2);
  EXPECT_EQ(g_counters.destroyed, 2);
}

TEST_F(AdaptorsTest, ConstructingObjectAllocConstructsAndDestroys) {
  ConstructingObjectAlloc<Tracked, HeapUntypedObjectAlloc> typed(
      std::in_place, LayoutOf<Tracked>());
  EXPECT_TRUE(typed.layout_fits());
  Tracked* a = typed.Allocate();
  Tracked* b = typed.Allocate();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(a->value, 42);
  EXPECT_EQ(g_counters.constructed, 2);
  typed.Deallocate(a);
  EXPECT_EQ(g_counters.destroyed, 1);
  typed.Deallocate(b);
  EXPECT_EQ(g_counters.destroyed, 2);
}

TEST_F(AdaptorsTest, ConstructingObjectAllocAcceptsLargerLayout) {
  // A bigger, more aligned layout still fits T.
  ConstructingObjectAlloc<Tracked, HeapUntypedObjectAlloc> typed(
      std::in_place, Layout{256, 64});
  EXPECT_TRUE(typed.layout_fits());
  Tracked* t = typed.Allocate();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t) % 64, 0u);
  typed.Deallocate(t);
}

TEST_F(AdaptorsTest, ConstructingObjectAllocRefusesLayoutTooSmall) {
  // The defined answer for a layout that cannot hold T: nullptr, and no
  // constructor runs in memory too small for it.
  ConstructingObjectAlloc<Tracked, HeapUntypedObjectAlloc> too_small(
      std::in_place, Layout{sizeof(Tracked) / 2, 1});
  EXPECT_FALSE(too_small.layout_fits());
  EXPECT_EQ(too_small.Allocate(), nullptr);
  ConstructingObjectAlloc<Tracked, HeapUntypedObjectAlloc> under_aligned(
      std::in_place, Layout{sizeof(Tracked), 1});
  EXPECT_FALSE(under_aligned.layout_fits());
  EXPECT_EQ(under_aligned.Allocate(), nullptr);
  EXPECT_EQ(g_counters.constructed, 0);
}

TEST_F(AdaptorsTest, CachingObjectAllocReusesConstructedObjects) {
  int allocs = 0, deallocs = 0;
  {
    CachingObjectAlloc<CountingAlloc<Tracked>, 2> cache(std::in_place,
                                                        &allocs, &deallocs);
    Tracked* a = cache.Allocate();
    ASSERT_NE(a, nullptr);
    a->value = 7;  // The caller leaves the object in a valid, modified state.
    cache.Deallocate(a);
    EXPECT_EQ(cache.cached(), 1u);
    EXPECT_EQ(deallocs, 0) << "cached, not returned";
    EXPECT_EQ(g_counters.destroyed, 0) << "cached objects stay constructed";

    Tracked* again = cache.Allocate();
    EXPECT_EQ(again, a) << "the cached object is handed out first";
    EXPECT_EQ(again->value, 7) << "...without running the constructor again";
    EXPECT_EQ(g_counters.constructed, 1);
    EXPECT_EQ(allocs, 1);
    cache.Deallocate(again);
  }
  // Destroying the cache returned the object to the inner allocator, which
  // destroyed it.
  EXPECT_EQ(deallocs, 1);
  EXPECT_EQ(g_counters.destroyed, 1);
}

TEST_F(AdaptorsTest, CachingObjectAllocIsLifoAndBounded) {
  int allocs = 0, deallocs = 0;
  CachingObjectAlloc<CountingAlloc<Tracked>, 2> cache(std::in_place, &allocs,
                                                      &deallocs);
  Tracked* a = cache.Allocate();
  Tracked* b = cache.Allocate();
  Tracked* c = cache.Allocate();
  cache.Deallocate(a);
  cache.Deallocate(b);
  cache.Deallocate(c);  // Cache full: goes to the inner allocator.
  EXPECT_EQ(cache.cached(), 2u);
  EXPECT_EQ(deallocs, 1);
  EXPECT_EQ(g_counters.destroyed, 1);
  EXPECT_EQ(cache.Allocate(), b);
  EXPECT_EQ(cache.Allocate(), a);
  EXPECT_EQ(cache.cached(), 0u);
  Tracked* d = cache.Allocate();  // Empty cache: from the inner allocator.
  EXPECT_EQ(allocs, 4);
  cache.Deallocate(a);
  cache.Deallocate(b);
  cache.Deallocate(d);
  cache.Flush();
  EXPECT_EQ(cache.cached(), 0u);
  EXPECT_EQ(cache.inner().live(), 0u);
  EXPECT_EQ(g_counters.destroyed, 4);
}

TEST_F(AdaptorsTest, CachingBehindUntypedView) {
  // Composition: the untyped view of a caching allocator hands the cached
  // (still constructed) object out again.
  using Cache = CachingObjectAlloc<HeapObjectAlloc<Tracked>, 4>;
  {
    TypedAsUntyped<Cache> untyped;
    void* p = untyped.Allocate();
    ASSERT_NE(p, nullptr);
    untyped.Deallocate(p);
    EXPECT_EQ(untyped.typed().cached(), 1u);
    EXPECT_EQ(untyped.Allocate(), p);
    untyped.Deallocate(p);
    EXPECT_EQ(g_counters.destroyed, 0);
  }
  EXPECT_EQ(g_counters.constructed, 1);
  EXPECT_EQ(g_counters.destroyed, 1);
}

}  // namespace
}  // namespace object_alloc
