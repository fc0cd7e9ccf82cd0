// Runs object_alloc_test's correctness suites on mmap_alloc::PageObjectAlloc,
// the fixed-size object view of the page mapper: the corruption tester and
// seeded random alloc/free sequences single-threaded, and the multi-threaded
// suite (objects handed across threads), for one-page objects and for
// multi-page objects aligned above a page (over-map and trim).
//
// After each allocator is destroyed the suite checks every freed object is
// unmapped or invalid, which for this allocator means really unmapped:
// Deallocate munmaps at once.
#include <memory>

#include "gtest/gtest.h"
#include "mmap_alloc/mmap_alloc.h"
#include "object_alloc_test/object_alloc_test.h"

namespace mmap_alloc {
namespace {

std::unique_ptr<PageObjectAlloc> OnePage() {
  return std::make_unique<PageObjectAlloc>();
}

// Sixteen pages aligned to their own size: above-page alignment by over-map
// and trim (the alignment must divide the object size).
std::unique_ptr<PageObjectAlloc> SixteenPagesSelfAligned() {
  return std::make_unique<PageObjectAlloc>(16 * PageSize(), 16 * PageSize());
}

std::unique_ptr<PageObjectAlloc> HugeAligned() {
  return std::make_unique<PageObjectAlloc>(std::size_t{2} << 20,
                                           std::size_t{2} << 20);
}

OBJECT_ALLOC_TEST_SUITE(OnePage, object_alloc_test::FixedLayoutCase(OnePage));
OBJECT_ALLOC_TEST_SUITE(
    SixteenPages, object_alloc_test::FixedLayoutCase(SixteenPagesSelfAligned));
OBJECT_ALLOC_TEST_SUITE(TwoMiB,
                        object_alloc_test::FixedLayoutCase(HugeAligned));
OBJECT_ALLOC_TEST_THREADED_SUITE(OnePage,
                                 object_alloc_test::FixedLayoutCase(OnePage));
OBJECT_ALLOC_TEST_THREADED_SUITE(
    SixteenPages, object_alloc_test::FixedLayoutCase(SixteenPagesSelfAligned));

}  // namespace
}  // namespace mmap_alloc
