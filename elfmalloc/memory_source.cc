// MmapSource: page runs straight from mmap_alloc.
#include "elfmalloc/memory_source.h"

#include <cerrno>
#include <cstddef>
#include <limits>

#include "absl/numeric/bits.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

MmapSource::MmapSource(std::size_t page_size) noexcept {
  const std::size_t os = mmap_alloc::PageSize();
  if (page_size < os) page_size = os;
  page_size_ = absl::bit_ceil(page_size);
}

void* MmapSource::Carve(std::size_t npages) noexcept {
  if (npages == 0) {
    errno = EINVAL;
    return nullptr;
  }
  if (npages > std::numeric_limits<std::size_t>::max() / page_size_) {
    errno = ENOMEM;
    return nullptr;
  }
  mmap_alloc::MapOptions options;
  options.align = page_size_;
  // Slab regions are used piecemeal: reserve them without charging the
  // whole region to the commit charge (touched pages still count).
  options.noreserve = true;
  return mmap_alloc::Map(npages * page_size_, options);
}

}  // namespace elfmalloc
