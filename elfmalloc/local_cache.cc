// LocalCache: stack mapping and teardown. See local_cache.h.
#include "elfmalloc/local_cache.h"

#include <cstddef>
#include <utility>

#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

LocalCache::LocalCache(SlabClass* cls) noexcept : slabs_(cls) {
  const std::size_t n = cls->metadata().n_objects;
  const std::size_t bytes = n * sizeof(void*);
  void* m = n == 0 ? nullptr : mmap_alloc::Map(bytes);
  if (m == nullptr) return;  // capacity 0: every free is remote
  stack_ = static_cast<void**>(m);
  capacity_ = n;
  map_bytes_ = bytes;
}

LocalCache::~LocalCache() { Destroy(); }

void LocalCache::Destroy() noexcept {
  // The stacked objects all lie in the current (claimed) slab: freeing them
  // makes no transition; Release then decides the slab's fate with the
  // complete count.
  while (top_ != 0) slabs_.Free(stack_[--top_]);
  if (stack_ != nullptr) {
    mmap_alloc::Unmap(stack_, map_bytes_);
    stack_ = nullptr;
  }
  slabs_.Release();
}

LocalCache::LocalCache(LocalCache&& o) noexcept
    : slabs_(std::move(o.slabs_)),
      stack_(std::exchange(o.stack_, nullptr)),
      capacity_(std::exchange(o.capacity_, 0)),
      top_(std::exchange(o.top_, 0)),
      map_bytes_(std::exchange(o.map_bytes_, 0)) {}

LocalCache& LocalCache::operator=(LocalCache&& o) noexcept {
  if (this != &o) {
    Destroy();
    slabs_ = std::move(o.slabs_);
    stack_ = std::exchange(o.stack_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    top_ = std::exchange(o.top_, 0);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
  }
  return *this;
}

}  // namespace elfmalloc
