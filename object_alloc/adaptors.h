// object_alloc adaptors: turn one kind of object allocator into another.
//
//  * TypedAsUntyped<A> / TypedAsUntypedRef<A>: a typed allocator seen as an
//    untyped one with layout LayoutOf<A::value_type>(). This is the C++ form
//    of the reference design's blanket rule "every ObjectAlloc<T> is an
//    UntypedObjectAlloc". Owning and non-owning flavours.
//  * ConstructingObjectAlloc<T, U>: the other direction. A typed allocator
//    over an untyped one that constructs T on Allocate and destroys it on
//    Deallocate (it caches nothing itself).
//  * CachingObjectAlloc<A, kCapacity>: a bounded cache of *constructed*
//    objects in front of a typed allocator, i.e. the "constructed object
//    cache" of Bonwick's slab paper in its smallest form. Freed objects are
//    kept constructed and handed out again without running the constructor.
//
// None of these allocate memory of their own: CachingObjectAlloc keeps its
// cache in an inline array, so the adaptors are usable inside allocators.
#ifndef OBJECT_ALLOC_ADAPTORS_H_
#define OBJECT_ALLOC_ADAPTORS_H_

#include <array>
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include "object_alloc/object_alloc.h"

namespace object_alloc {

// An owning view of the typed allocator A as an UntypedObjectAlloc.
//
// Contract for callers of the untyped view: Allocate() returns memory that
// holds a constructed A::value_type (A's contract), and because A may cache
// what it gets back and hand it out again as a constructed object, memory
// passed to Deallocate() must again hold a valid value_type. Callers that
// treat the memory as raw bytes must therefore either leave it untouched or
// use a value_type for which every byte pattern is a valid object (e.g. an
// array of unsigned char, as the test carriers in //object_alloc_test do).
template <ObjectAlloc A>
class TypedAsUntyped {
 public:
  using typed_alloc_type = A;
  using value_type = typename A::value_type;
  // Thread safety is exactly that of the wrapped allocator.
  static constexpr bool kThreadSafe = IsThreadSafe<A>();

  TypedAsUntyped() = default;
  // Constructs the wrapped allocator in place from `args`.
  template <class... Args>
  explicit TypedAsUntyped(std::in_place_t, Args&&... args)
      : alloc_(std::forward<Args>(args)...) {}

  Layout layout() const noexcept { return LayoutOf<value_type>(); }
  void* Allocate() noexcept { return alloc_.Allocate(); }
  void Deallocate(void* p) noexcept {
    alloc_.Deallocate(static_cast<value_type*>(p));
  }

  A& typed() noexcept { return alloc_; }
  const A& typed() const noexcept { return alloc_; }

 private:
  A alloc_;
};

// A non-owning view of a typed allocator as an UntypedObjectAlloc; same
// contract as TypedAsUntyped. The referenced allocator must outlive the view.
template <ObjectAlloc A>
class TypedAsUntypedRef {
 public:
  using typed_alloc_type = A;
  using value_type = typename A::value_type;
  static constexpr bool kThreadSafe = IsThreadSafe<A>();

  explicit TypedAsUntypedRef(A& alloc) noexcept : alloc_(&alloc) {}

  Layout layout() const noexcept { return LayoutOf<value_type>(); }
  void* Allocate() noexcept { return alloc_->Allocate(); }
  void Deallocate(void* p) noexcept {
    alloc_->Deallocate(static_cast<value_type*>(p));
  }

  A& typed() const noexcept { return *alloc_; }

 private:
  A* alloc_;
};

// A typed allocator of T over the untyped allocator U: Allocate() takes memory
// from U and value-initialises a T in it (T()), Deallocate() destroys the T
// and returns the memory to U. It caches no constructed objects, so
// destroying it destroys nothing but U.
//
// T must be nothrow default constructible (Allocate is noexcept). U's layout
// must fit T: size >= sizeof(T) and align >= alignof(T). That can only be
// checked at run time (U's layout is a value); when it does not hold,
// layout_fits() is false and Allocate() returns nullptr without touching U —
// a defined answer instead of constructing T in memory too small for it.
template <class T, UntypedObjectAlloc U>
class ConstructingObjectAlloc {
  static_assert(std::is_nothrow_default_constructible_v<T>,
                "ConstructingObjectAlloc constructs T() inside a noexcept "
                "Allocate(); T's default constructor must not throw");

 public:
  using value_type = T;
  using untyped_alloc_type = U;
  static constexpr bool kThreadSafe = IsThreadSafe<U>();

  ConstructingObjectAlloc() = default;
  // Constructs the untyped allocator in place from `args`.
  template <class... Args>
  explicit ConstructingObjectAlloc(std::in_place_t, Args&&... args)
      : untyped_(std::forward<Args>(args)...) {}

  bool layout_fits() const noexcept {
    const Layout l = untyped_.layout();
    return l.size >= sizeof(T) && l.align >= alignof(T);
  }

  T* Allocate() noexcept {
    if (!layout_fits()) return nullptr;
    void* p = untyped_.Allocate();
    if (p == nullptr) return nullptr;
    return ::new (p) T();
  }

  void Deallocate(T* p) noexcept {
    p->~T();
    untyped_.Deallocate(p);
  }

  U& untyped() noexcept { return untyped_; }
  const U& untyped() const noexcept { return untyped_; }

 private:
  U untyped_;
};

// Keeps up to kCapacity freed objects of the typed allocator A *constructed*
// and hands them out again (most recently freed first) before asking A.
//
// Why: constructing and destroying an object can cost more than allocating
// its memory (locks, buffers, zeroing). Callers return objects in a state
// that is valid to hand out again (the ObjectAlloc contract), so a cached
// object needs no constructor run.
//
// Destroying the cache hands every cached object back to A, which by A's
// contract destroys it (now or when A itself is destroyed). The cache lives
// in an inline array: no memory is allocated. Not thread-safe: the cache is
// a plain array (wrap it per thread, or lock around it).
template <ObjectAlloc A, std::size_t kCapacity = 64>
class CachingObjectAlloc {
  static_assert(kCapacity > 0, "a cache of capacity 0 is just A");

 public:
  using value_type = typename A::value_type;
  using inner_alloc_type = A;
  static constexpr bool kThreadSafe = false;
  static constexpr std::size_t kCacheCapacity = kCapacity;

  CachingObjectAlloc() = default;
  // Constructs the wrapped allocator in place from `args`.
  template <class... Args>
  explicit CachingObjectAlloc(std::in_place_t, Args&&... args)
      : inner_(std::forward<Args>(args)...) {}

  CachingObjectAlloc(const CachingObjectAlloc&) = delete;
  CachingObjectAlloc& operator=(const CachingObjectAlloc&) = delete;

  ~CachingObjectAlloc() { Flush(); }

  value_type* Allocate() noexcept {
    if (cached_ > 0) return cache_[--cached_];
    return inner_.Allocate();
  }

  void Deallocate(value_type* p) noexcept {
    if (cached_ < kCapacity) {
      cache_[cached_++] = p;
    } else {
      inner_.Deallocate(p);
    }
  }

  // Returns every cached object to the wrapped allocator.
  void Flush() noexcept {
    while (cached_ > 0) inner_.Deallocate(cache_[--cached_]);
  }

  std::size_t cached() const noexcept { return cached_; }
  A& inner() noexcept { return inner_; }
  const A& inner() const noexcept { return inner_; }

 private:
  A inner_;
  std::size_t cached_ = 0;
  std::array<value_type*, kCapacity> cache_{};
};

}  // namespace object_alloc

#endif  // OBJECT_ALLOC_ADAPTORS_H_
