// The object_alloc_test conformance suites on the untyped slab allocators,
// over the heap, mmap and leaky backings, at all 47 object sizes and every
// valid alignment up to the page size. With the default (kAuto) rule sizes up
// to ~4 KiB use small (masked) slabs and larger ones large (hash-mapped)
// slabs; one configuration forces large slabs for every size, so the pointer
// hash map serves small objects too, and one reclaims empty slabs as eagerly
// as possible, so slabs are released and their memory reused mid-run.
// The typed allocators are in slab_alloc_typed_suite_test.cc and
// slab_alloc_typed_leaky_suite_test.cc (separate binaries so that they
// compile in parallel).
#include <chrono>

#include "object_alloc/object_alloc.h"
#include "object_alloc_test/object_alloc_test.h"
#include "slab_alloc/leaky_backing.h"
#include "slab_alloc/slab_alloc.h"

namespace {

using object_alloc::Layout;
using object_alloc_test::TestEnv;
using object_alloc_test::UntypedCases;
using slab_alloc::LeakyBacking;
using slab_alloc::SlabKind;
using slab_alloc::UntypedSlabAllocBuilder;

OBJECT_ALLOC_TEST_SUITE(UntypedSlabHeap, UntypedCases([](Layout l) {
                          return UntypedSlabAllocBuilder<>(l).Build();
                        }));

OBJECT_ALLOC_TEST_SUITE(UntypedSlabMmap, UntypedCases([](Layout l) {
                          return UntypedSlabAllocBuilder<>(l).BuildMmap();
                        }));

OBJECT_ALLOC_TEST_SUITE(UntypedSlabLeaky,
                        UntypedCases([](Layout l, TestEnv& env) {
                          return UntypedSlabAllocBuilder<>(l).BuildWithBacking(
                              LeakyBacking{&env.leaky()});
                        }));

OBJECT_ALLOC_TEST_SUITE(UntypedSlabLargeLeaky,
                        UntypedCases([](Layout l, TestEnv& env) {
                          return UntypedSlabAllocBuilder<>(l)
                              .Kind(SlabKind::kLarge)
                              .BuildWithBacking(LeakyBacking{&env.leaky()});
                        }));

// Period 0, checked on every emptying: a slab that stays empty from one
// emptying to the next is released and the heap may hand its memory to the
// next slab.
OBJECT_ALLOC_TEST_SUITE(UntypedSlabEagerReclaimHeap, UntypedCases([](Layout l) {
                          return UntypedSlabAllocBuilder<>(l)
                              .ReclaimPeriod(std::chrono::nanoseconds(0))
                              .ReclaimCheckInterval(1)
                              .Build();
                        }));

}  // namespace
