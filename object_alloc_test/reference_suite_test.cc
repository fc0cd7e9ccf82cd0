// The object_alloc_test suites instantiated for the reference allocators.
// Each line below is exactly what another package writes for its allocator.
#include <sys/mman.h>

#include <memory>
#include <utility>

#include "object_alloc/adaptors.h"
#include "object_alloc/heap_alloc.h"
#include "object_alloc/interface.h"
#include "object_alloc/object_alloc.h"
#include "object_alloc_test/broken_alloc.h"
#include "object_alloc_test/leaky_alloc.h"
#include "object_alloc_test/object_alloc_test.h"

namespace {

using object_alloc::Layout;
using object_alloc_test::DefaultConstructed;
using object_alloc_test::LeakyConstructed;
using object_alloc_test::TypedCases;
using object_alloc_test::UntypedCases;

// A typed allocator template, default-constructed: all 47 sizes x every
// alignment (HeapObjectAlloc handles any alignment, so up to 8192).
using HeapPolicy = DefaultConstructed<object_alloc::HeapObjectAlloc, 8192>;
OBJECT_ALLOC_TEST_SUITE(Heap, TypedCases<HeapPolicy>());
OBJECT_ALLOC_TEST_THREADED_SUITE(Heap, TypedCases<HeapPolicy>());

// An untyped allocator built from each Layout by a factory.
auto HeapUntypedFactory = [](Layout l) {
  return std::make_unique<object_alloc::HeapUntypedObjectAlloc>(l);
};
OBJECT_ALLOC_TEST_SUITE(HeapUntyped, UntypedCases(HeapUntypedFactory));
OBJECT_ALLOC_TEST_THREADED_SUITE(HeapUntyped, UntypedCases(HeapUntypedFactory));

// An untyped allocator whose layout its factory fixes (the form used for
// mmap_alloc::PageObjectAlloc): here, page-sized heap objects.
auto PageSizedHeapFactory = [] {
  return std::make_unique<object_alloc::HeapUntypedObjectAlloc>(
      Layout{4096, 4096});
};
OBJECT_ALLOC_TEST_SUITE(PageSizedHeap,
                        object_alloc_test::FixedLayoutCase(PageSizedHeapFactory));
OBJECT_ALLOC_TEST_THREADED_SUITE(
    PageSizedHeap, object_alloc_test::FixedLayoutCase(PageSizedHeapFactory));

// The same form for an allocator that maps every page-sized object and
// unmaps it when freed, as mmap_alloc::PageObjectAlloc does: after the
// allocator is gone, freed objects are unmapped, which the final check
// accepts without reading them.
class MmapPageAlloc {
 public:
  static constexpr bool kThreadSafe = true;
  Layout layout() const noexcept { return Layout{4096, 4096}; }
  void* Allocate() noexcept {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  void Deallocate(void* p) noexcept { ::munmap(p, 4096); }
};
auto MmapPageFactory = [] { return std::make_unique<MmapPageAlloc>(); };
OBJECT_ALLOC_TEST_SUITE(MmapPages,
                        object_alloc_test::FixedLayoutCase(MmapPageFactory));
OBJECT_ALLOC_TEST_THREADED_SUITE(
    MmapPages, object_alloc_test::FixedLayoutCase(MmapPageFactory));

// A caching allocator: freed objects are handed out again still constructed.
template <class T>
using CachingHeap =
    object_alloc::CachingObjectAlloc<object_alloc::HeapObjectAlloc<T>, 32>;
OBJECT_ALLOC_TEST_SUITE(CachingHeap,
                        TypedCases<DefaultConstructed<CachingHeap>>());

// A typed allocator seen through the untyped adaptor. The carriers it is
// given are plain bytes, which every byte pattern is a valid value of.
OBJECT_ALLOC_TEST_SUITE(TypedAsUntyped, object_alloc_test::FixedLayoutCase([] {
                          return object_alloc::TypedAsUntyped<
                              object_alloc::HeapObjectAlloc<
                                  object_alloc_test::Bytes<64, 8>>>();
                        }));

// A typed allocator over an untyped one.
template <class T>
using ConstructingHeap =
    object_alloc::ConstructingObjectAlloc<T,
                                          object_alloc::HeapUntypedObjectAlloc>;
struct ConstructingHeapPolicy {
  template <class T>
  using Alloc = ConstructingHeap<T>;
  template <class T>
  static ConstructingHeap<T>* New() {
    return new ConstructingHeap<T>(std::in_place, object_alloc::LayoutOf<T>());
  }
};
OBJECT_ALLOC_TEST_SUITE(ConstructingHeap, TypedCases<ConstructingHeapPolicy>());

// The leaky allocators (they never reuse memory, so sizes stop at 1024 to
// bound the memory a 100000-operation run keeps).
OBJECT_ALLOC_TEST_SUITE(
    Leaky, TypedCases<LeakyConstructed<object_alloc_test::LeakyObjectAlloc,
                                       4096, 1024>>());
OBJECT_ALLOC_TEST_THREADED_SUITE(
    Leaky, TypedCases<LeakyConstructed<object_alloc_test::LeakyObjectAlloc,
                                       4096, 1024>>());

// A correct caching, arena-based allocator (the broken allocators' base).
struct CorrectBrokenPolicy {
  template <class T>
  using Alloc = object_alloc_test::BrokenObjectAlloc<T>;
  template <class T>
  static Alloc<T>* New(object_alloc_test::TestEnv& env) {
    return new Alloc<T>(env.leaky(), object_alloc_test::Defect::kNone);
  }
};
OBJECT_ALLOC_TEST_SUITE(CachingArena, TypedCases<CorrectBrokenPolicy>());
OBJECT_ALLOC_TEST_THREADED_SUITE(CachingArena, TypedCases<CorrectBrokenPolicy>());
OBJECT_ALLOC_TEST_SUITE(
    UntypedArena,
    UntypedCases([](Layout l, object_alloc_test::TestEnv& env) {
      return std::make_unique<object_alloc_test::BrokenUntypedAlloc>(
          env.leaky(), l, object_alloc_test::Defect::kNone);
    }));

}  // namespace
