// Implementation of LeakyAlloc (see leaky_alloc.h).
#include "object_alloc_test/leaky_alloc.h"

#include <cstddef>
#include <mutex>
#include <new>

namespace object_alloc_test {

LeakyAlloc::~LeakyAlloc() {
  for (const Block& b : blocks_) {
    ::operator delete(b.p, b.size, std::align_val_t{b.align});
  }
}

void* LeakyAlloc::Allocate(std::size_t size, std::size_t align) noexcept {
  if (size == 0 || align == 0 || (align & (align - 1)) != 0) return nullptr;
  void* p = ::operator new(size, std::align_val_t{align}, std::nothrow);
  if (p == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  blocks_.push_back(Block{p, size, align});
  return p;
}

void LeakyAlloc::Deallocate(void*, std::size_t, std::size_t) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  ++deallocations_;
}

std::size_t LeakyAlloc::blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return blocks_.size();
}

std::size_t LeakyAlloc::deallocations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return deallocations_;
}

}  // namespace object_alloc_test
