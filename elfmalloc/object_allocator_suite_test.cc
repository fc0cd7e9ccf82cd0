// object_alloc_test's reusable suites instantiated for elfmalloc's object
// allocators: the multi-threaded suite (objects freed on other threads) for
// the typed MagazineAllocator<T> and LocalAllocator<T> and the untyped
// variants, and the single-threaded suite (random sequences, fill and drain,
// corruption checks, all 47 sizes and alignments) for the untyped ones.
// The allocators are used through their thread-safe entry points (one
// registered handle per thread), which is what kThreadSafe promises.
#include <memory>

#include "elfmalloc/object_allocator.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc_test/object_alloc_test.h"

namespace {

std::unique_ptr<elfmalloc::MagazineUntypedAllocator> MakeMagazine(
    object_alloc::Layout l) {
  return std::make_unique<elfmalloc::MagazineUntypedAllocator>(l);
}
std::unique_ptr<elfmalloc::LocalUntypedAllocator> MakeLocal(
    object_alloc::Layout l) {
  return std::make_unique<elfmalloc::LocalUntypedAllocator>(l);
}

}  // namespace

OBJECT_ALLOC_TEST_SUITE(MagazineUntyped,
                        object_alloc_test::UntypedCases(MakeMagazine));
OBJECT_ALLOC_TEST_SUITE(LocalUntyped,
                        object_alloc_test::UntypedCases(MakeLocal));

OBJECT_ALLOC_TEST_THREADED_SUITE(MagazineUntypedThreaded,
                                 object_alloc_test::UntypedCases(MakeMagazine));
OBJECT_ALLOC_TEST_THREADED_SUITE(LocalUntypedThreaded,
                                 object_alloc_test::UntypedCases(MakeLocal));
OBJECT_ALLOC_TEST_THREADED_SUITE(
    MagazineTypedThreaded,
    object_alloc_test::TypedCases<
        object_alloc_test::DefaultConstructed<elfmalloc::MagazineAllocator>>());
OBJECT_ALLOC_TEST_THREADED_SUITE(
    LocalTypedThreaded,
    object_alloc_test::TypedCases<
        object_alloc_test::DefaultConstructed<elfmalloc::LocalAllocator>>());
