// Large allocations by mmap_alloc with a stamped header. See large_alloc.h.
#include "elfmalloc/large_alloc.h"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/base/attributes.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {

ABSL_CONST_INIT std::atomic<std::size_t> g_mapped_bytes{0};
ABSL_CONST_INIT std::atomic<std::size_t> g_allocations{0};

bool IsPow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// round_up(size, page), or false on overflow.
bool PageRound(std::size_t size, std::size_t* out) {
  const std::size_t page = mmap_alloc::PageSize();
  if (size > std::numeric_limits<std::size_t>::max() - (page - 1)) {
    return false;
  }
  *out = (size + page - 1) & ~(page - 1);
  if (*out == 0) *out = page;  // size 0 still gets a page
  return true;
}

// The offset of the header from the mapping's start, for header space h.
std::size_t HeaderOffset(std::size_t h) {
  return (h - 1) & ~(kStampAlignment - 1);
}

void* Publish(void* base, std::size_t region, std::size_t requested,
              std::size_t h, std::size_t m) {
  char* u = static_cast<char*>(base) + h;
  LargeHeader* hdr =
      reinterpret_cast<LargeHeader*>(static_cast<char*>(base) + HeaderOffset(h));
  hdr->base = base;
  hdr->region_size = region;
  hdr->requested = requested;
  hdr->header_space = h;
  hdr->map_align = m;
  hdr->type.store(AllocType::kLarge, std::memory_order_relaxed);
  return u;
}

}  // namespace

void* LargeAlloc(std::size_t size, std::size_t align) noexcept {
  if (align != 0 && !IsPow2(align)) {
    errno = EINVAL;
    return nullptr;
  }
  const std::size_t page = mmap_alloc::PageSize();
  const std::size_t h = align > page ? align : page;
  const std::size_t m = align > kStampAlignment ? align : kStampAlignment;
  std::size_t body;
  if (!PageRound(size, &body) ||
      body > std::numeric_limits<std::size_t>::max() / 2 - h) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::size_t region = h + body;
  mmap_alloc::MapOptions o;
  o.align = m;
  void* base = mmap_alloc::Map(region, o);
  if (base == nullptr) return nullptr;  // errno from mmap_alloc
  g_mapped_bytes.fetch_add(region, std::memory_order_relaxed);
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return Publish(base, region, size, h, m);
}

void LargeFree(void* p) noexcept {
  if (p == nullptr) return;
  LargeHeader* hdr = LargeHeaderOf(p);
  void* base = hdr->base;
  const std::size_t region = hdr->region_size;
  const int saved = errno;
  mmap_alloc::Unmap(base, region);
  errno = saved;
  g_mapped_bytes.fetch_sub(region, std::memory_order_relaxed);
  g_allocations.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t LargeUsableSize(const void* p) noexcept {
  const LargeHeader* hdr = LargeHeaderOf(p);
  return hdr->region_size - hdr->header_space;
}

std::size_t LargeRequestedSize(const void* p) noexcept {
  return LargeHeaderOf(p)->requested;
}

void* LargeRealloc(void* p, std::size_t new_size) noexcept {
  LargeHeader* hdr = LargeHeaderOf(p);
  const std::size_t h = hdr->header_space;
  const std::size_t m = hdr->map_align;
  const std::size_t old_region = hdr->region_size;
  std::size_t body;
  if (!PageRound(new_size, &body) ||
      body > std::numeric_limits<std::size_t>::max() / 2 - h) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::size_t region = h + body;
  if (region == old_region) {
    hdr->requested = new_size;
    return p;
  }
  void* base = mmap_alloc::Remap(hdr->base, old_region, region, m);
  if (base != nullptr) {
    // The header moved with its page; rewrite what changed.
    g_mapped_bytes.fetch_add(region, std::memory_order_relaxed);
    g_mapped_bytes.fetch_sub(old_region, std::memory_order_relaxed);
    return Publish(base, region, new_size, h, m);
  }
  // The kernel refused to move the mapping: copy.
  void* q = LargeAlloc(new_size, h > mmap_alloc::PageSize() ? h : 0);
  if (q == nullptr) return nullptr;
  const std::size_t old_usable = old_region - h;
  std::memcpy(q, p, old_usable < body ? old_usable : body);
  LargeFree(p);
  return q;
}

LargeStats GetLargeStats() noexcept {
  return {g_mapped_bytes.load(std::memory_order_relaxed),
          g_allocations.load(std::memory_order_relaxed)};
}

}  // namespace elfmalloc
