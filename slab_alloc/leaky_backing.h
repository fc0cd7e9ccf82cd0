// leaky_backing: a slab_alloc Backing over object_alloc_test's LeakyAlloc, for
// the conformance suites. LeakyAlloc never really frees, so every slab stays
// readable after the slab allocator is destroyed and the suite can check that
// each cached object was destroyed (and that no object was handed out from a
// released slab).
#ifndef SLAB_ALLOC_LEAKY_BACKING_H_
#define SLAB_ALLOC_LEAKY_BACKING_H_

#include <cstddef>

#include "object_alloc_test/leaky_alloc.h"
#include "slab_alloc/backing.h"

namespace slab_alloc {

struct LeakyBacking {
  object_alloc_test::LeakyAlloc* leaky;  // Outlives every allocator using it.

  void* Allocate(std::size_t size, std::size_t align) noexcept {
    return leaky->Allocate(size, align);
  }
  void Deallocate(void* p, std::size_t size, std::size_t align) noexcept {
    leaky->Deallocate(p, size, align);
  }
};
static_assert(Backing<LeakyBacking>);

}  // namespace slab_alloc

#endif  // SLAB_ALLOC_LEAKY_BACKING_H_
