// The object_alloc_test conformance suites on the typed slab allocator over
// the suite's leaky backing, which keeps every slab readable after the
// allocator is gone: the after-destruction check then sees that every cached
// object was destroyed. The second configuration reclaims empty slabs as
// eagerly as possible (period 0, checked on every emptying), so slabs are
// released mid-run and the check also covers objects destroyed by
// reclamation, and that nothing is handed out from a released slab.
#include <chrono>

#include "object_alloc_test/object_alloc_test.h"
#include "slab_alloc/leaky_backing.h"
#include "slab_alloc/slab_alloc.h"

namespace {

using object_alloc_test::TestEnv;
using object_alloc_test::TypedCases;
using slab_alloc::DefaultInit;
using slab_alloc::LeakyBacking;
using slab_alloc::SlabAlloc;
using slab_alloc::SlabAllocBuilder;

template <class T>
using LeakySlabAlloc = SlabAlloc<T, DefaultInit<T>, LeakyBacking>;

struct TypedLeaky {
  template <class T>
  using Alloc = LeakySlabAlloc<T>;
  template <class T>
  static Alloc<T>* New(TestEnv& env) {
    return new Alloc<T>(SlabAllocBuilder<T>::Default().BuildWithBacking(
        LeakyBacking{&env.leaky()}));
  }
};
OBJECT_ALLOC_TEST_SUITE(SlabLeaky, TypedCases<TypedLeaky>());

struct TypedEagerReclaimLeaky {
  template <class T>
  using Alloc = LeakySlabAlloc<T>;
  template <class T>
  static Alloc<T>* New(TestEnv& env) {
    return new Alloc<T>(SlabAllocBuilder<T>::Default()
                            .ReclaimPeriod(std::chrono::nanoseconds(0))
                            .ReclaimCheckInterval(1)
                            .BuildWithBacking(LeakyBacking{&env.leaky()}));
  }
};
OBJECT_ALLOC_TEST_SUITE(SlabEagerReclaimLeaky,
                        TypedCases<TypedEagerReclaimLeaky>());

}  // namespace
