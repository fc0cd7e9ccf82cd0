// object_alloc_test leaky backing allocator: memory that stays readable after
// it is freed.
//
// LeakyAlloc's Deallocate does nothing; every block is released only when the
// LeakyAlloc itself is destroyed. An allocator under test that takes its
// backing memory from a LeakyAlloc therefore cannot make freed memory vanish,
// so the harness can still inspect every object after the allocator is gone
// (was each one destroyed?) and use-after-free bugs in the allocator read
// stale objects instead of someone else's memory. The harness owns one per run
// (TestEnv::leaky()) and destroys it only after its final checks.
//
// LeakyUntypedObjectAlloc and LeakyObjectAlloc<T> are object allocators over
// it (the reference's leaky_alloc test allocator): the harness runs the full
// suite on them, and they are a template for backing other allocators.
//
// All three are thread-safe (one mutex). This is test code: it uses the C++
// heap and std::vector freely; a bad_alloc inside it terminates the test.
#ifndef OBJECT_ALLOC_TEST_LEAKY_ALLOC_H_
#define OBJECT_ALLOC_TEST_LEAKY_ALLOC_H_

#include <cstddef>
#include <mutex>
#include <new>
#include <type_traits>
#include <vector>

#include "object_alloc/object_alloc.h"

namespace object_alloc_test {

class LeakyAlloc {
 public:
  static constexpr bool kThreadSafe = true;

  LeakyAlloc() = default;
  LeakyAlloc(const LeakyAlloc&) = delete;
  LeakyAlloc& operator=(const LeakyAlloc&) = delete;
  // Releases every block ever allocated.
  ~LeakyAlloc();

  // A fresh block of `size` bytes aligned to `align` (a power of two), or
  // nullptr for size 0, a bad alignment, or exhaustion.
  void* Allocate(std::size_t size, std::size_t align) noexcept;
  // Does nothing but count: the block stays allocated and readable.
  void Deallocate(void* p, std::size_t size, std::size_t align) noexcept;

  std::size_t blocks() const;
  std::size_t deallocations() const;

 private:
  struct Block {
    void* p;
    std::size_t size;
    std::size_t align;
  };
  mutable std::mutex mu_;
  std::vector<Block> blocks_;  // Guarded by mu_.
  std::size_t deallocations_ = 0;  // Guarded by mu_.
};

// Untyped object allocator of a fixed layout over a LeakyAlloc (which must
// outlive it). Memory is uninitialised.
class LeakyUntypedObjectAlloc {
 public:
  static constexpr bool kThreadSafe = true;

  LeakyUntypedObjectAlloc(LeakyAlloc& leaky, object_alloc::Layout layout)
      : leaky_(&leaky), layout_(layout) {}

  object_alloc::Layout layout() const noexcept { return layout_; }
  void* Allocate() noexcept {
    return leaky_->Allocate(layout_.size, layout_.align);
  }
  void Deallocate(void* p) noexcept {
    leaky_->Deallocate(p, layout_.size, layout_.align);
  }

 private:
  LeakyAlloc* leaky_;
  object_alloc::Layout layout_;
};

// Typed object allocator over a LeakyAlloc (which must outlive it):
// constructs T() on Allocate, destroys on Deallocate, caches nothing.
template <class T>
class LeakyObjectAlloc {
  static_assert(std::is_nothrow_default_constructible_v<T>);

 public:
  using value_type = T;
  static constexpr bool kThreadSafe = true;

  explicit LeakyObjectAlloc(LeakyAlloc& leaky) : leaky_(&leaky) {}

  T* Allocate() noexcept {
    void* p = leaky_->Allocate(sizeof(T), alignof(T));
    return p == nullptr ? nullptr : ::new (p) T();
  }
  void Deallocate(T* p) noexcept {
    p->~T();
    leaky_->Deallocate(p, sizeof(T), alignof(T));
  }

 private:
  LeakyAlloc* leaky_;
};

}  // namespace object_alloc_test

#endif  // OBJECT_ALLOC_TEST_LEAKY_ALLOC_H_
