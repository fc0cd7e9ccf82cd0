// Proves that mmap_alloc never reaches the C heap: every entry point, on its
// success and its failure paths (including Reallocate's copy fallback and the
// over-aligned Remap with its reservation cleanup), runs inside a trapping
// testutil::NoMallocScope with //testutil:malloc_counter as the binary's
// malloc. bsalloc and elfmalloc sit on top of this layer and would recurse
// into themselves if it ever allocated.
#include <errno.h>

#include <cstddef>
#include <cstdint>

#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"
#include "testutil/malloc_counter.h"

namespace mmap_alloc {
namespace {

TEST(MmapAllocNoMallocTest, CounterIsInstalled) {
  ASSERT_TRUE(testutil::MallocCounterInstalled());
}

TEST(MmapAllocNoMallocTest, NoEntryPointCallsMalloc) {
  const std::size_t page = PageSize();
  testutil::NoMallocScope scope(testutil::NoMallocScope::Mode::kCount);

  // Success paths.
  MapOptions options;
  options.populate = true;
  options.huge_pages = true;
  options.align = std::size_t{2} << 20;
  options.name = "no_malloc";
  void* p = Map(4 * page, options);
  const bool mapped = p != nullptr;
  bool ok = mapped;
  ok &= Commit(p, 4 * page);
  ok &= Uncommit(p, page);
  ok &= Uncommit(p, page, UncommitMode::kFree);
  ok &= Protect(p, 4 * page, Perm::kRead | Perm::kWrite);
  ok &= AdviseHugePages(p, 4 * page);
  NameRegion(p, 4 * page, "x");  // May be unsupported; must not allocate.
  ok &= ShrinkInPlace(p, 4 * page, 2 * page);
  ok &= GrowInPlace(p, 2 * page, 4 * page);
  void* q = Remap(p, 4 * page, 64 * page);
  ok &= q != nullptr;
  void* r = Remap(q, 64 * page, 8 * page, std::size_t{4} << 20);
  ok &= r != nullptr;

  // MapAlloc, including the copy path (a block split into two mappings).
  const MapAlloc alloc;
  void* a = alloc.Allocate(4 * page, std::size_t{1} << 20);
  ok &= a != nullptr;
  ok &= Protect(a, page, Perm::kRead);
  void* b = alloc.Reallocate(a, 4 * page, 16 * page);
  ok &= b != nullptr;
  MapOptions ro;
  ro.perm = Perm::kNone;
  void* c = internal::ReallocateByCopy(MapAlloc(ro), r, 8 * page, 2 * page, 0);
  ok &= c != nullptr;

  // The object view.
  PageObjectAlloc objects(2 * page);
  void* o = objects.Allocate();
  ok &= o != nullptr;
  objects.Deallocate(o);

  // Failure paths.
  ok &= Map(0) == nullptr;
  ok &= Map(SIZE_MAX) == nullptr;
  ok &= Map(std::size_t{1} << 62) == nullptr;
  ok &= !Unmap(static_cast<char*>(b) + 1, page);
  ok &= Remap(reinterpret_cast<void*>(std::uintptr_t{1} << 40), page,
              std::size_t{1} << 30, std::size_t{1} << 30) == nullptr;
  ok &= alloc.Reallocate(reinterpret_cast<void*>(std::uintptr_t{1} << 40),
                         page, 2 * page) == nullptr;

  ok &= alloc.Deallocate(b, 16 * page);
  ok &= Unmap(c, 2 * page);
  const std::uint64_t calls = scope.calls();

  EXPECT_TRUE(mapped);
  EXPECT_TRUE(ok);
  EXPECT_EQ(calls, 0u);
}

}  // namespace
}  // namespace mmap_alloc
