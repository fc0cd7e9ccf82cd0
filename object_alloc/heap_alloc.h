// object_alloc heap allocators: the plain `new`/`delete` object allocators.
//
// HeapObjectAlloc<T> and HeapUntypedObjectAlloc are the simplest allocators
// that meet the concepts: every Allocate() goes to the C++ heap (global
// operator new, hence malloc), every Deallocate() straight back. They cache
// nothing, so they are thread-safe whenever the heap is (always, for
// operator new), and they are the baseline every other object allocator in
// this repository is compared with, in tests (//object_alloc_test runs its
// whole suite on them as a reference) and in benchmarks.
//
// They call operator new by design; do not use them inside an allocator that
// may itself be the process's malloc.
#ifndef OBJECT_ALLOC_HEAP_ALLOC_H_
#define OBJECT_ALLOC_HEAP_ALLOC_H_

#include <cstddef>
#include <new>
#include <type_traits>

#include "object_alloc/object_alloc.h"

namespace object_alloc {

// Typed heap allocator: Allocate() is `new (std::nothrow) T()` (so T is
// value-initialised, and over-aligned T gets the aligned operator new),
// Deallocate() is `delete p`. Returns nullptr when the heap is exhausted.
template <class T>
class HeapObjectAlloc {
  // A static_assert rather than a requires-clause so that HeapObjectAlloc can
  // be passed as a `template <class> class` template argument.
  static_assert(std::is_nothrow_default_constructible_v<T>,
                "HeapObjectAlloc constructs T() inside a noexcept Allocate(); "
                "T's default constructor must not throw");
  static_assert(std::is_nothrow_destructible_v<T>);

 public:
  using value_type = T;
  static constexpr bool kThreadSafe = true;

  T* Allocate() noexcept { return new (std::nothrow) T(); }
  void Deallocate(T* p) noexcept { delete p; }
};

// Untyped heap allocator for a Layout fixed at construction. Allocate() is the
// aligned nothrow operator new, so the memory is uninitialised. An invalid
// layout (see Layout::IsValid) is a defined error: every Allocate() then
// returns nullptr.
class HeapUntypedObjectAlloc {
 public:
  static constexpr bool kThreadSafe = true;

  explicit HeapUntypedObjectAlloc(Layout layout) noexcept : layout_(layout) {}

  Layout layout() const noexcept { return layout_; }

  void* Allocate() noexcept {
    if (!layout_.IsValid()) return nullptr;
    return ::operator new(layout_.size, std::align_val_t{layout_.align},
                          std::nothrow);
  }

  void Deallocate(void* p) noexcept {
    ::operator delete(p, layout_.size, std::align_val_t{layout_.align});
  }

 private:
  Layout layout_;
};

}  // namespace object_alloc

#endif  // OBJECT_ALLOC_HEAP_ALLOC_H_
