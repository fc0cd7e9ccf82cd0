// Tests for interface.h: the abstract interfaces satisfy the concepts they
// mirror, and the wrappers forward every call and report thread safety.
#include "object_alloc/interface.h"

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "object_alloc/adaptors.h"
#include "object_alloc/heap_alloc.h"
#include "object_alloc/object_alloc.h"

namespace object_alloc {
namespace {

static_assert(UntypedObjectAlloc<UntypedObjectAllocInterface>);
static_assert(ObjectAlloc<ObjectAllocInterface<int>>);
static_assert(!IsThreadSafe<UntypedObjectAllocInterface>(),
              "thread safety behind the interface is a run-time property");

// Records calls so the test can see that the wrapper forwards them.
class RecordingUntyped {
 public:
  explicit RecordingUntyped(Layout layout) : layout_(layout) {}
  Layout layout() const noexcept { return layout_; }
  void* Allocate() noexcept {
    ++allocs;
    return &storage_;
  }
  void Deallocate(void* p) noexcept { freed.push_back(p); }

  int allocs = 0;
  std::vector<void*> freed;

 private:
  Layout layout_;
  alignas(16) unsigned char storage_[64];
};

TEST(UntypedObjectAllocWrapperTest, ForwardsCalls) {
  UntypedObjectAllocWrapper<RecordingUntyped> wrapper(std::in_place,
                                                      Layout{32, 16});
  UntypedObjectAllocInterface& iface = wrapper;
  EXPECT_EQ(iface.layout(), (Layout{32, 16}));
  EXPECT_FALSE(iface.thread_safe());
  void* p = iface.Allocate();
  EXPECT_EQ(wrapper.get().allocs, 1);
  iface.Deallocate(p);
  ASSERT_EQ(wrapper.get().freed.size(), 1u);
  EXPECT_EQ(wrapper.get().freed[0], p);
}

TEST(UntypedObjectAllocWrapperTest, HoldsDifferentAllocatorsBehindOnePointer) {
  std::vector<std::unique_ptr<UntypedObjectAllocInterface>> allocs;
  allocs.push_back(
      std::make_unique<UntypedObjectAllocWrapper<HeapUntypedObjectAlloc>>(
          std::in_place, Layout{64, 64}));
  allocs.push_back(std::make_unique<
                   UntypedObjectAllocWrapper<TypedAsUntyped<
                       HeapObjectAlloc<std::uint32_t>>>>());
  EXPECT_TRUE(allocs[0]->thread_safe());
  EXPECT_TRUE(allocs[1]->thread_safe());
  EXPECT_EQ(allocs[1]->layout(), LayoutOf<std::uint32_t>());
  for (auto& a : allocs) {
    void* p = a->Allocate();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % a->layout().align, 0u);
    a->Deallocate(p);
  }
}

TEST(ObjectAllocWrapperTest, ForwardsCallsAndReportsThreadSafety) {
  ObjectAllocWrapper<HeapObjectAlloc<std::uint64_t>> heap;
  ObjectAllocWrapper<CachingObjectAlloc<HeapObjectAlloc<std::uint64_t>, 2>>
      cache;
  ObjectAllocInterface<std::uint64_t>* allocs[] = {&heap, &cache};
  EXPECT_TRUE(allocs[0]->thread_safe());
  EXPECT_FALSE(allocs[1]->thread_safe());
  for (auto* a : allocs) {
    std::uint64_t* p = a->Allocate();
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 0u) << "HeapObjectAlloc value-initialises";
    a->Deallocate(p);
  }
  EXPECT_EQ(cache.get().cached(), 1u);
}

}  // namespace
}  // namespace object_alloc
