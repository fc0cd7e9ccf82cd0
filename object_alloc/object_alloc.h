// object_alloc: the interfaces every object allocator in this repository meets.
//
// An *object allocator* hands out objects of one fixed type or layout, unlike a
// general allocator that serves any size. Two shapes exist:
//
//  * Typed (`ObjectAlloc<A>`): hands out *constructed* objects of
//    `A::value_type`. Freed objects may be cached still constructed and handed
//    out again without running the constructor a second time (Bonwick's
//    "constructed object cache"); the allocator destroys whatever it cached when
//    it is itself destroyed.
//  * Untyped (`UntypedObjectAlloc<A>`): hands out raw memory of one fixed
//    `Layout` (size and alignment), with no initialisation guarantee.
//
// These are compile-time concepts so that allocators compose without virtual
// calls on hot paths; `UntypedObjectAllocInterface` (interface.h) offers
// dynamic dispatch for the rare caller that needs to hold "some allocator"
// behind one pointer. adaptors.h turns one shape into the other, heap_alloc.h
// has the plain new/delete allocators, and //object_alloc_test has the suites
// every allocator here must pass.
//
// Allocation failure is reported as nullptr, never an exception: these run
// inside malloc-like paths where unwinding is not an option.
#ifndef OBJECT_ALLOC_OBJECT_ALLOC_H_
#define OBJECT_ALLOC_OBJECT_ALLOC_H_

#include <concepts>
#include <cstddef>

namespace object_alloc {

// The size and alignment of the objects an untyped allocator serves.
// Invariants (checked by IsValid): align is a power of two, size > 0, and size
// is a multiple of align, so that objects packed back to back stay aligned.
struct Layout {
  std::size_t size = 0;
  std::size_t align = 1;

  constexpr bool IsValid() const {
    return size > 0 && align > 0 && (align & (align - 1)) == 0 &&
           size % align == 0;
  }
  friend constexpr bool operator==(const Layout&, const Layout&) = default;
};

template <class T>
constexpr Layout LayoutOf() {
  return Layout{sizeof(T), alignof(T)};
}

// Typed object allocator.
//
// Requirements, for an allocator `a` of type A and T = A::value_type:
//  * `a.Allocate()` returns a pointer to a fully constructed T that no other
//    live allocation overlaps, aligned to at least alignof(T), or nullptr when
//    memory is exhausted. The object is either freshly constructed or one that
//    was previously passed to Deallocate and cached in its constructed state.
//    Callers must therefore hand back objects in a state that is valid to hand
//    out again (the "constructed state" contract of Bonwick's slab allocator).
//  * `a.Deallocate(p)` takes back an object obtained from `a.Allocate()` that
//    is still constructed. It may destroy it or cache it constructed.
//  * Destroying `a` destroys every object it still caches. Objects still live
//    (allocated, not deallocated) when the allocator is destroyed are a caller
//    bug; allocators may report them.
//  * Neither member throws.
template <class A>
concept ObjectAlloc = requires(A& a, typename A::value_type* p) {
  typename A::value_type;
  { a.Allocate() } noexcept -> std::same_as<typename A::value_type*>;
  { a.Deallocate(p) } noexcept -> std::same_as<void>;
};

// Untyped object allocator.
//
// Requirements, for an allocator `a` of type A:
//  * `a.layout()` is constant over the allocator's lifetime and IsValid().
//  * `a.Allocate()` returns memory of at least layout().size bytes, aligned to
//    layout().align, overlapping no other live allocation, or nullptr when
//    memory is exhausted. Its contents are unspecified.
//  * `a.Deallocate(p)` takes back memory obtained from `a.Allocate()`.
//  * Neither member throws.
template <class A>
concept UntypedObjectAlloc = requires(A& a, const A& ca, void* p) {
  { ca.layout() } noexcept -> std::same_as<Layout>;
  { a.Allocate() } noexcept -> std::same_as<void*>;
  { a.Deallocate(p) } noexcept -> std::same_as<void>;
};

// An allocator may declare `static constexpr bool kThreadSafe = true;` to say
// that Allocate and Deallocate may be called concurrently from any threads on
// one instance, and that an object allocated on one thread may be deallocated
// on another. Absent the member, allocators are assumed single-threaded.
template <class A>
constexpr bool IsThreadSafe() {
  if constexpr (requires { A::kThreadSafe; }) {
    return A::kThreadSafe;
  } else {
    return false;
  }
}

}  // namespace object_alloc

#endif  // OBJECT_ALLOC_OBJECT_ALLOC_H_
