// LocalCache: the alternative per-thread, per-class front end (the reference's
// LocalCache, "elfmalloc-l").
//
// Frees of objects that lie in the slab this thread currently owns are pushed
// on a local stack (no atomic operation at all); every other free is a remote
// free straight to its slab. Alloc pops the stack, else takes the next object
// from the slab allocator's iterator, else refreshes. The stack therefore only
// ever holds objects of the current slab, and the slab allocator refreshes
// only when the stack is empty, so no cached object outlives its slab's
// ownership. Capacity n_objects (the stack can hold the whole slab); a push
// beyond it (only possible with double frees) goes to the slab.
//
// Compared with MagazineCache: no batching of remote frees, and objects freed
// by other threads come back only through the slab, but a thread that frees
// what it allocated recently pays nothing. Memory: the stack is one lazily
// committed mmap_alloc mapping (n_objects pointers); never malloc. If the
// mapping fails, every free is a remote free.
//
// Thread-safety: one LocalCache per thread; not thread-safe itself.
#ifndef ELFMALLOC_LOCAL_CACHE_H_
#define ELFMALLOC_LOCAL_CACHE_H_

#include <cstddef>

#include "elfmalloc/slab_allocator.h"

namespace elfmalloc {

class LocalCache {
 public:
  LocalCache() noexcept = default;  // invalid
  explicit LocalCache(SlabClass* cls) noexcept;
  // Returns the stacked objects to the current slab, then releases it.
  ~LocalCache();
  LocalCache(LocalCache&& o) noexcept;
  LocalCache& operator=(LocalCache&& o) noexcept;
  LocalCache(const LocalCache&) = delete;
  LocalCache& operator=(const LocalCache&) = delete;

  bool valid() const noexcept { return slabs_.valid(); }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t cached() const noexcept { return top_; }
  const SlabMetadata& metadata() const noexcept { return slabs_.metadata(); }

  void* Alloc() noexcept {
    if (top_ != 0) return stack_[--top_];
    return slabs_.Alloc();
  }

  void Free(void* p) noexcept {
    if (slabs_.Contains(p) && top_ < capacity_) {
      stack_[top_++] = p;
    } else {
      slabs_.Free(p);
    }
  }

 private:
  void Destroy() noexcept;

  SlabAllocator slabs_;
  void** stack_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t top_ = 0;
  std::size_t map_bytes_ = 0;
};

}  // namespace elfmalloc

#endif  // ELFMALLOC_LOCAL_CACHE_H_
