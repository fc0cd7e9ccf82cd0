// MemorySource: where elfmalloc's page allocators get fresh pages.
//
// A memory source hands out runs of `page_size`-byte pages aligned to
// page_size, zero-filled (fresh mappings), and never takes them back (the
// page allocators keep and recycle them; slabs live in them). MmapSource maps
// each run directly with mmap_alloc, over-mapping and trimming to reach
// alignments above the OS page size (so no address space is wasted).
//
// The reference's legacy `Creek` (one huge pre-reserved region with a bump
// pointer, needed there for pointer classification) is not provided: the
// AllocType stamps (alloc_type.h) classify pointers without a reserved range.
#ifndef ELFMALLOC_MEMORY_SOURCE_H_
#define ELFMALLOC_MEMORY_SOURCE_H_

#include <concepts>
#include <cstddef>

namespace elfmalloc {

// The interface PageAlloc-like users need from a source of pages.
template <class S>
concept MemorySource = requires(S& s, const S& cs, std::size_t n) {
  { cs.page_size() } noexcept -> std::same_as<std::size_t>;
  { s.Carve(n) } noexcept -> std::same_as<void*>;
};

class MmapSource {
 public:
  // page_size is rounded up to a power of two and to at least the OS page.
  explicit MmapSource(std::size_t page_size) noexcept;

  std::size_t page_size() const noexcept { return page_size_; }

  // npages fresh, zero-filled pages, contiguous, aligned to page_size().
  // nullptr (errno ENOMEM/EINVAL) on failure, for npages == 0, or if the size
  // overflows.
  void* Carve(std::size_t npages) noexcept;

 private:
  std::size_t page_size_;
};

static_assert(MemorySource<MmapSource>);

}  // namespace elfmalloc

#endif  // ELFMALLOC_MEMORY_SOURCE_H_
