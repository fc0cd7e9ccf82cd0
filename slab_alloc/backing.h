// backing: where a slab allocator's slabs (and its metadata) come from.
//
// A slab allocator never talks to the operating system or to malloc directly;
// it asks its *backing* for whole slabs. Three backings ship with the package,
// and any type modelling the `Backing` concept can be plugged in:
//
//   HeapBacking   posix_memalign/free: slabs come from the C heap.
//   MmapBacking   mmap_alloc::Map/Unmap: slabs come straight from the kernel,
//                 and so does every byte of metadata (the pointer hash map),
//                 so a slab allocator on this backing never calls malloc.
//   your own      e.g. a region of a pre-allocated arena, a leak-checking or
//                 fault-injecting backing in tests.
//
// The contract (`Backing` below) is deliberately tiny so that any source of
// page-aligned memory can serve:
//
//   void* Allocate(size_t size, size_t align) noexcept;
//     size is a positive multiple of mmap_alloc::PageSize() and align a power
//     of two >= PageSize(). Returns size bytes aligned to align, or nullptr
//     when out of memory (the slab allocator then returns nullptr too).
//   void Deallocate(void* p, size_t size, size_t align) noexcept;
//     Returns a block with exactly the size and align it was allocated with.
//
// Slab allocators request three kinds of block (see slab_alloc.h):
//   * small slabs: size == align, a power of two (found by pointer masking,
//     so the alignment is essential);
//   * large slabs: any page multiple, align == PageSize();
//   * metadata (hash table arrays and bucket chunks): page multiples,
//     align == PageSize().
//
// A backing is held by value inside each allocator (and copied into its hash
// map), so it should be a cheap handle: copies must allocate from and free to
// the same source. Backings need not be thread-safe unless several allocators
// on different threads share one source.
#ifndef SLAB_ALLOC_BACKING_H_
#define SLAB_ALLOC_BACKING_H_

#include <concepts>
#include <cstddef>
#include <cstdlib>

#include "mmap_alloc/mmap_alloc.h"

namespace slab_alloc {

template <class B>
concept Backing = std::copy_constructible<B> &&
                  requires(B& b, void* p, std::size_t n, std::size_t a) {
                    { b.Allocate(n, a) } noexcept -> std::same_as<void*>;
                    { b.Deallocate(p, n, a) } noexcept -> std::same_as<void>;
                  };

// Slabs from the C heap. Small slabs need their own size as alignment, which
// posix_memalign provides for any power of two.
struct HeapBacking {
  void* Allocate(std::size_t size, std::size_t align) noexcept {
    void* p = nullptr;
    if (posix_memalign(&p, align, size) != 0) return nullptr;
    return p;
  }
  void Deallocate(void* p, std::size_t /*size*/,
                  std::size_t /*align*/) noexcept {
    std::free(p);
  }
};

// Slabs (and metadata) straight from the kernel. Alignments above a page are
// served by mmap_alloc's over-map-and-trim, so small slabs larger than a page
// cost no wasted address space once mapped.
struct MmapBacking {
  void* Allocate(std::size_t size, std::size_t align) noexcept {
    mmap_alloc::MapOptions options;
    options.align = align > mmap_alloc::PageSize() ? align : 0;
    return mmap_alloc::Map(size, options);
  }
  void Deallocate(void* p, std::size_t size, std::size_t /*align*/) noexcept {
    mmap_alloc::Unmap(p, size);
  }
};

static_assert(Backing<HeapBacking>);
static_assert(Backing<MmapBacking>);

}  // namespace slab_alloc

#endif  // SLAB_ALLOC_BACKING_H_
