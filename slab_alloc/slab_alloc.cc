// slab_alloc: the out-of-line, non-template parts of the slab allocators:
// slab geometry (how big a slab is, how many objects it holds, where they
// start, how much room is left for colouring), argument checks, the default
// clock and the allocation-free diagnostics.
#include "slab_alloc/slab_alloc.h"

#include <time.h>

#include <cstddef>
#include <cstdint>

#include "absl/base/internal/raw_logging.h"
#include "absl/numeric/bits.h"
#include "mmap_alloc/mmap_alloc.h"

namespace slab_alloc {

std::int64_t MonotonicNanos() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

namespace internal {
namespace {

// Slabs are at most this large, so every offset inside one fits a uint32
// (the free stack stores uint32 offsets) with room to spare.
constexpr std::size_t kMaxSlabBytes = std::size_t{1} << 31;
// Small slabs may grow this large when the caller forces SlabKind::kSmall.
constexpr std::size_t kMaxForcedSmallSlabBytes = std::size_t{2} << 20;

std::size_t RoundUp(std::size_t n, std::size_t align) {
  return (n + align - 1) & ~(align - 1);
}

// Geometry for slab_size if it holds at least one object.
bool TryGeometry(std::size_t slab_size, std::size_t size, std::size_t align,
                 SlabKind kind, bool colouring, Geometry* out) {
  const Fit fit = FitObjects(slab_size, size, align);
  if (fit.capacity == 0) return false;
  Geometry g;
  g.kind = kind;
  g.size = size;
  g.align = align;
  g.slab_size = slab_size;
  g.capacity = fit.capacity;
  g.objects_offset = fit.objects_offset;
  const std::size_t unused =
      slab_size - fit.objects_offset - fit.capacity * size;
  const std::size_t step = align > kColourStepBytes ? align : kColourStepBytes;
  if (colouring && unused >= step) {
    g.colour_step = step;
    g.max_colour = unused / step * step;
  }
  *out = g;
  return true;
}

// The smallest power-of-two slab (>= a page, <= max_bytes) holding at least
// kMinObjectsPerSlab objects, or if `accept_fewer`, the largest one holding
// any. false if none.
bool SmallGeometry(std::size_t size, std::size_t align, bool colouring,
                   std::size_t max_bytes, bool accept_fewer, Geometry* out) {
  const std::size_t page = mmap_alloc::PageSize();
  if (max_bytes < page) max_bytes = page;
  bool any = false;
  for (std::size_t slab = page; slab <= max_bytes; slab *= 2) {
    Geometry g;
    if (!TryGeometry(slab, size, align, SlabKind::kSmall, colouring, &g)) {
      continue;
    }
    if (g.capacity >= kMinObjectsPerSlab) {
      *out = g;
      return true;
    }
    if (accept_fewer) {
      *out = g;
      any = true;
    }
  }
  return any;
}

// Page-multiple slabs: among k = 1, 2, ... pages, the size with the fewest
// unused bytes per object, searching up to (and including) the first size
// that holds kMinObjectsPerSlab objects. Ties go to the smaller slab.
bool LargeGeometry(std::size_t size, std::size_t align, bool colouring,
                   Geometry* out) {
  const std::size_t page = mmap_alloc::PageSize();
  bool found = false;
  Geometry best;
  std::size_t best_unused = 0;
  // Start at the first page count that can hold one object.
  std::size_t pages = (size + sizeof(SlabHeader) + page - 1) / page;
  if (pages == 0) pages = 1;
  for (; pages * page <= kMaxSlabBytes; ++pages) {
    Geometry g;
    if (!TryGeometry(pages * page, size, align, SlabKind::kLarge, colouring,
                     &g)) {
      continue;
    }
    const std::size_t unused =
        g.slab_size - g.objects_offset - g.capacity * g.size;
    // unused / capacity < best_unused / best.capacity, without division.
    if (!found || unused * best.capacity < best_unused * g.capacity) {
      best = g;
      best_unused = unused;
      found = true;
    }
    if (g.capacity >= kMinObjectsPerSlab) break;
  }
  if (found) *out = best;
  return found;
}

}  // namespace

Fit FitObjects(std::size_t slab_size, std::size_t size,
               std::size_t align) noexcept {
  if (slab_size <= sizeof(SlabHeader) || size == 0) return {};
  // Each object costs its size plus one uint32 stack entry.
  std::size_t n =
      (slab_size - sizeof(SlabHeader)) / (size + sizeof(std::uint32_t));
  while (n > 0) {
    const std::size_t offset =
        RoundUp(sizeof(SlabHeader) + n * sizeof(std::uint32_t), align);
    if (offset + n * size <= slab_size) return Fit{n, offset};
    --n;  // Alignment padding pushed the last object out; at most a few.
  }
  return {};
}

Geometry ComputeGeometry(std::size_t size, std::size_t align, SlabKind kind,
                         bool colouring) noexcept {
  const std::size_t stride = RoundUp(size, align);
  if (stride == 0 || stride > kMaxSlabBytes / 2) {
    ABSL_RAW_LOG(FATAL,
                 "slab_alloc: object size %zu (aligned to %zu) is not "
                 "supported (must be between 1 and %zu bytes)",
                 size, align, kMaxSlabBytes / 2);
  }
  Geometry g;
  switch (kind) {
    case SlabKind::kAuto:
      if (SmallGeometry(stride, align, colouring, kMaxSmallSlabBytes,
                        /*accept_fewer=*/false, &g)) {
        return g;
      }
      break;
    case SlabKind::kSmall:
      if (SmallGeometry(stride, align, colouring, kMaxForcedSmallSlabBytes,
                        /*accept_fewer=*/true, &g)) {
        return g;
      }
      ABSL_RAW_LOG(FATAL,
                   "slab_alloc: SlabKind::kSmall requested but %zu-byte "
                   "objects do not fit a small slab of at most %zu bytes",
                   stride, kMaxForcedSmallSlabBytes);
      break;
    case SlabKind::kLarge:
      break;
  }
  if (!LargeGeometry(stride, align, colouring, &g)) {
    ABSL_RAW_LOG(FATAL, "slab_alloc: no slab geometry for %zu-byte objects",
                 stride);
  }
  return g;
}

void CheckAlign(std::size_t align) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) {
    ABSL_RAW_LOG(FATAL, "slab_alloc: Align(%zu): not a power of two", align);
  }
  if (align > mmap_alloc::PageSize()) {
    ABSL_RAW_LOG(FATAL,
                 "slab_alloc: Align(%zu): larger than the page size (%zu)",
                 align, mmap_alloc::PageSize());
  }
}

void CheckLayout(object_alloc::Layout layout) noexcept {
  if (!layout.IsValid()) {
    ABSL_RAW_LOG(FATAL,
                 "slab_alloc: invalid layout {size=%zu, align=%zu}: size must "
                 "be a positive multiple of align, a power of two",
                 layout.size, layout.align);
  }
  CheckAlign(layout.align);
}

void ReportLiveObjects(std::size_t live_objects, std::size_t slabs,
                       std::size_t object_size, std::size_t slab_size,
                       LeakPolicy policy) noexcept {
  if (policy == LeakPolicy::kAbort) {
    ABSL_RAW_LOG(FATAL,
                 "slab_alloc: allocator destroyed with %zu live objects of "
                 "%zu bytes in %zu slabs (LeakPolicy::kAbort)",
                 live_objects, object_size, slabs);
  }
  ABSL_RAW_LOG(ERROR,
               "slab_alloc: allocator destroyed with %zu live objects of %zu "
               "bytes; leaking the %zu slabs (%zu bytes) that hold them so "
               "they stay valid",
               live_objects, object_size, slabs, slabs * slab_size);
}

void DieForeignPointer(const void* p) noexcept {
  ABSL_RAW_LOG(FATAL,
               "slab_alloc: Deallocate(%p): pointer not allocated by this "
               "allocator",
               p);
  __builtin_unreachable();
}

void DieBadDeallocate(const void* p, const char* why) noexcept {
  ABSL_RAW_LOG(FATAL, "slab_alloc: Deallocate(%p): %s", p, why);
  __builtin_unreachable();
}

}  // namespace internal
}  // namespace slab_alloc
