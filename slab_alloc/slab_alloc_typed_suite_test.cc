// The object_alloc_test conformance suites on the typed slab allocator
// (default-constructing policy) over the heap and mmap backings: all 47
// object sizes at every valid alignment up to the page size. Typed carriers
// are CorruptionTesters (>= 9 bytes) or zero-initialised Bytes, so the suite
// checks that fresh objects are constructed, cached ones are handed out still
// valid, and destruction destroys every cached object.
#include "object_alloc_test/object_alloc_test.h"
#include "slab_alloc/slab_alloc.h"

namespace {

using object_alloc_test::TypedCases;
using slab_alloc::DefaultInit;
using slab_alloc::HeapBacking;
using slab_alloc::MmapBacking;
using slab_alloc::SlabAlloc;
using slab_alloc::SlabAllocBuilder;

struct TypedHeap {
  template <class T>
  using Alloc = SlabAlloc<T, DefaultInit<T>, HeapBacking>;
  template <class T>
  static Alloc<T>* New() {
    return new Alloc<T>(SlabAllocBuilder<T>::Default().Build());
  }
};
OBJECT_ALLOC_TEST_SUITE(SlabHeap, TypedCases<TypedHeap>());

struct TypedMmap {
  template <class T>
  using Alloc = SlabAlloc<T, DefaultInit<T>, MmapBacking>;
  template <class T>
  static Alloc<T>* New() {
    return new Alloc<T>(SlabAllocBuilder<T>::Default().BuildMmap());
  }
};
OBJECT_ALLOC_TEST_SUITE(SlabMmap, TypedCases<TypedMmap>());

}  // namespace
