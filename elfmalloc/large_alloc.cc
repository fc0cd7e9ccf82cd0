// Large allocations by mmap_alloc with a stamped header, and the cache of
// freed large regions. See large_alloc.h.
#include "elfmalloc/large_alloc.h"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "elfmalloc/platform.h"
#include "elfmalloc/spin_lock.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {
namespace {

// Live large allocations (regions handed out, headers included).
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

void UnmapKeepErrno(void* base, std::size_t region) {
  const int saved = errno;
  mmap_alloc::Unmap(base, region);
  errno = saved;
}

// ---------------------------------------------------------------------------
// The cache of free regions (see "Reuse" in large_alloc.h).
//
// Invariants, all under g_cache_lock: g_cache[0 .. g_cached) are distinct
// default-layout regions (header space one OS page, mapping aligned to
// kStampAlignment) that nobody references: each was a whole large block
// whose free moved it here; g_cached_bytes is the sum of their sizes and
// never exceeds the cap in force when the last one was inserted. A region
// leaves the cache (taken for reuse, evicted, expired, released) only under
// the lock, and its system calls (munmap, mremap) happen after the lock is
// dropped, on a region nobody else can see: the lock is never held across a
// system call.
// ---------------------------------------------------------------------------
struct CachedRegion {
  char* base;
  std::size_t region;
  std::uint64_t freed_ms;  // CoarseMonotonicMs() at the free
};

constexpr std::size_t kCacheSlots = 32;

ABSL_CONST_INIT SpinLock g_cache_lock;
ABSL_CONST_INIT CachedRegion g_cache[kCacheSlots] = {};
ABSL_CONST_INIT std::size_t g_cached = 0;
// g_cached_bytes: written under the lock; relaxed atomic so that statistics
// read it without the lock.
ABSL_CONST_INIT std::atomic<std::size_t> g_cached_bytes{0};
// Off until SetLargeCacheLimits (the general allocator configures them from
// its options table).
ABSL_CONST_INIT std::atomic<std::size_t> g_cache_max_bytes{0};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_cache_decay_ms{0};
ABSL_CONST_INIT std::atomic<std::size_t> g_reuses{0};
// The earliest time a cached region expires (UINT64_MAX: none can), so that
// LargeCacheDecay is a clock read and a compare until then. Written under
// the lock whenever the cache changes; read without it.
ABSL_CONST_INIT std::atomic<std::uint64_t> g_next_expiry_ms{UINT64_MAX};

// Under the lock: recomputes g_next_expiry_ms.
void UpdateExpiryLocked() {
  const std::uint64_t decay = g_cache_decay_ms.load(std::memory_order_relaxed);
  std::uint64_t next = UINT64_MAX;
  if (decay != 0) {
    for (std::size_t i = 0; i < g_cached; ++i) {
      const std::uint64_t t = g_cache[i].freed_ms + decay;
      if (t < next) next = t;
    }
  }
  g_next_expiry_ms.store(next, std::memory_order_relaxed);
}

// The cap in force: the configured bytes, or twice what the live large
// blocks hold if that is more (a proportional part, like the dirty-page
// threshold's, page_alloc.h). A program that churns through a working set
// of large blocks then reuses the freed ones: with a fixed 64 MiB, four
// live blocks of 1-32 MiB evicted what they were about to need and faulted
// 1 MiB of fresh pages per operation (108k faults in 300 operations; 69k
// with twice the live bytes; tcmalloc, which keeps freed spans until a slow
// release, 36k, all at warm-up). The decay period still returns the cache
// when the program stops using it. 0 configured disables the cache.
std::size_t CacheLimit() {
  const std::size_t max = g_cache_max_bytes.load(std::memory_order_relaxed);
  if (max == 0) return 0;
  const std::size_t live = g_mapped_bytes.load(std::memory_order_relaxed);
  return live > max / 2 ? 2 * live : max;
}

// Regions removed under the lock, unmapped after it.
struct Evicted {
  CachedRegion r[kCacheSlots];
  std::size_t n = 0;
  void UnmapAll() {
    for (std::size_t i = 0; i < n; ++i) UnmapKeepErrno(r[i].base, r[i].region);
  }
};

// Under the lock: moves slot i out of the cache (swap with the last).
CachedRegion RemoveLocked(std::size_t i) {
  const CachedRegion r = g_cache[i];
  g_cache[i] = g_cache[--g_cached];
  g_cached_bytes.store(g_cached_bytes.load(std::memory_order_relaxed) - r.region,
                       std::memory_order_relaxed);
  return r;
}

// Under the lock: every region cached for a whole decay period goes.
void ExpireLocked(std::uint64_t now, Evicted* out) {
  const std::uint64_t decay = g_cache_decay_ms.load(std::memory_order_relaxed);
  if (decay == 0) return;
  for (std::size_t i = 0; i < g_cached;) {
    if (now - g_cache[i].freed_ms >= decay) {
      out->r[out->n++] = RemoveLocked(i);
    } else {
      ++i;
    }
  }
}

void PutCached(char* base, std::size_t region);

// Moves the pages of the regions in *parts (removed from the cache) into one
// new 2 MiB-aligned region, in order, and returns it (its size in *total),
// or nullptr with every part unmapped. Page tables move; contents are not
// copied and committed pages stay committed, so a block gathered from the
// cache takes no page fault where a region grown by mremap faults in every
// page it adds (blocks of 1-16 MiB with every page written: the difference
// between gathering and growing is most of the time). A part the kernel
// cannot move (a region merged from two mappings, EFAULT) is unmapped and
// its place in the new region made writable instead (fresh zero pages).
char* GatherRegions(Evicted* parts, std::size_t* total) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < parts->n; ++i) sum += parts->r[i].region;
  mmap_alloc::MapOptions reserve;
  reserve.perm = mmap_alloc::Perm::kNone;  // no commit charge until moved
  reserve.align = kStampAlignment;
  char* target = static_cast<char*>(mmap_alloc::Map(sum, reserve));
  if (target == nullptr) {
    parts->UnmapAll();
    return nullptr;
  }
  std::size_t off = 0;
  bool ok = true;
  for (std::size_t i = 0; i < parts->n; ++i) {
    const CachedRegion& r = parts->r[i];
    if (!mmap_alloc::MoveTo(r.base, r.region, target + off)) {
      UnmapKeepErrno(r.base, r.region);
      ok = ok && mmap_alloc::Protect(target + off, r.region,
                                     mmap_alloc::Perm::kRead |
                                         mmap_alloc::Perm::kWrite);
    }
    off += r.region;
  }
  if (!ok) {
    UnmapKeepErrno(target, sum);
    return nullptr;
  }
  *total = sum;
  return target;
}

// A cached region resized to exactly `need` bytes (default layout), or
// nullptr. The choice, in order of preference:
//   1. the smallest region within need + need / 8: used as it is (the slack
//      becomes usable size; no system call);
//   2. the smallest larger region: for a need of 2 MiB or more, if at least
//      2 MiB remain past round_up(need, 2 MiB), it is split there (no system
//      call): the head, up to the split point, is the block, and the
//      remainder (a 2 MiB-aligned region, committed pages and all) stays
//      cached, so that a later, bigger request need not fault its pages in
//      again, and the two merge again when the block is freed (PutCached).
//      Otherwise its tail is unmapped (one munmap: keeping a tail of up to
//      half the block with it faulted more pages in later, 123k against 111k
//      in 300 operations on 1-32 MiB blocks);
//   3. when the cached regions together hold need bytes: the largest ones,
//      gathered into one region (GatherRegions), the excess split off and
//      cached again;
//   4. the largest smaller region: grown by mremap, in place or moved to an
//      aligned reservation (its committed pages come along; only the new
//      part faults in).
// A reused region holds its previous contents (callers that need zeroes
// clear them).
void* TakeCached(std::size_t need, std::size_t* region_out) {
  if (g_cached_bytes.load(std::memory_order_relaxed) == 0) return nullptr;
  Evicted expired;
  Evicted gather;  // regions to gather into one (see GatherRegions)
  CachedRegion got{nullptr, 0, 0};
  bool split = false;
  {
    SpinLockHolder l(&g_cache_lock);
    ExpireLocked(CoarseMonotonicMs(), &expired);
    std::size_t fit = kCacheSlots, bigger = kCacheSlots, smaller = kCacheSlots;
    const std::size_t slack = need + need / 8;
    for (std::size_t i = 0; i < g_cached; ++i) {
      const std::size_t r = g_cache[i].region;
      if (r >= need && r <= slack) {
        if (fit == kCacheSlots || r < g_cache[fit].region) fit = i;
      } else if (r > slack) {
        if (bigger == kCacheSlots || r < g_cache[bigger].region) bigger = i;
      } else if (smaller == kCacheSlots || r > g_cache[smaller].region) {
        smaller = i;
      }
    }
    if (fit == kCacheSlots && bigger == kCacheSlots && g_cached >= 2 &&
        g_cached_bytes.load(std::memory_order_relaxed) >= need) {
      // No region is big enough, but together they are: gather the largest
      // ones (below, outside the lock) instead of growing one region with
      // freshly faulted pages.
      std::size_t sum = 0;
      while (sum < need) {
        std::size_t largest = 0;
        for (std::size_t i = 1; i < g_cached; ++i) {
          if (g_cache[i].region > g_cache[largest].region) largest = i;
        }
        gather.r[gather.n] = RemoveLocked(largest);
        sum += gather.r[gather.n++].region;
      }
      UpdateExpiryLocked();
    }
    const std::size_t pick =
        gather.n != 0
            ? kCacheSlots
            : (fit != kCacheSlots ? fit
                                  : (bigger != kCacheSlots ? bigger : smaller));
    if (pick != kCacheSlots) got = RemoveLocked(pick);
    if (pick != kCacheSlots && pick == bigger && need >= kStampAlignment) {
      const std::size_t cut =
          (need + kStampAlignment - 1) & ~(kStampAlignment - 1);
      if (got.region >= cut + kStampAlignment) {
        // Room: RemoveLocked freed a slot.
        g_cache[g_cached++] = {got.base + cut, got.region - cut, got.freed_ms};
        g_cached_bytes.store(
            g_cached_bytes.load(std::memory_order_relaxed) + got.region - cut,
            std::memory_order_relaxed);
        got.region = cut;
        split = true;
      }
    }
    UpdateExpiryLocked();
  }
  expired.UnmapAll();
  if (gather.n != 0) {
    std::size_t total = 0;
    char* q = GatherRegions(&gather, &total);
    if (q == nullptr) return nullptr;
    g_reuses.fetch_add(1, std::memory_order_relaxed);
    // Keep what the block does not need cached, split at a 2 MiB boundary
    // like a larger region (too little to split: it stays with the block).
    const std::size_t cut =
        (need + kStampAlignment - 1) & ~(kStampAlignment - 1);
    if (total >= cut + kStampAlignment) {
      PutCached(q + cut, total - cut);
      total = cut;
    }
    *region_out = total;
    return q;
  }
  if (got.base == nullptr) return nullptr;
  g_reuses.fetch_add(1, std::memory_order_relaxed);
  if (split) {
    *region_out = got.region;
    return got.base;
  }
  if (got.region >= need && got.region <= need + need / 8) {
    *region_out = got.region;
    return got.base;
  }
  if (got.region > need) {
    if (mmap_alloc::ShrinkInPlace(got.base, got.region, need)) {
      *region_out = need;
      return got.base;
    }
  } else {
    void* q = mmap_alloc::Remap(got.base, got.region, need, kStampAlignment);
    if (q != nullptr) {
      *region_out = need;
      return q;
    }
  }
  UnmapKeepErrno(got.base, got.region);  // the kernel refused: map afresh
  return nullptr;
}

// Caches a freed default-layout region, or unmaps it (too big for the cap,
// or the cache is off). A cached region that ends where this one starts, or
// starts where it ends (the two halves of a split, or blocks mapped next to
// each other), is merged with it, so that splits do not fragment the cache
// for good. Evicts the oldest regions to make room.
void PutCached(char* base, std::size_t region) {
  const std::size_t max = CacheLimit();
  if (region > max) {
    UnmapKeepErrno(base, region);
    return;
  }
  Evicted evicted;
  bool too_big = false;
  {
    SpinLockHolder l(&g_cache_lock);
    const std::uint64_t now = CoarseMonotonicMs();
    ExpireLocked(now, &evicted);
    // The neighbours, merged only if the run stays within the cap (a run
    // past it would have to go back to the OS whole).
    std::size_t before = kCacheSlots, after = kCacheSlots;
    for (std::size_t i = 0; i < g_cached; ++i) {
      const CachedRegion& c = g_cache[i];
      if (c.base + c.region == base) before = i;
      if (base + region == c.base) after = i;
    }
    std::size_t merged = region;
    if (before != kCacheSlots) merged += g_cache[before].region;
    if (after != kCacheSlots) merged += g_cache[after].region;
    if (merged <= max) {
      // Remove the higher index first: RemoveLocked moves the last slot
      // into the hole.
      CachedRegion b{nullptr, 0, 0}, a{nullptr, 0, 0};
      if (before != kCacheSlots && after != kCacheSlots) {
        if (before > after) {
          b = RemoveLocked(before);
          a = RemoveLocked(after);
        } else {
          a = RemoveLocked(after);
          b = RemoveLocked(before);
        }
      } else if (before != kCacheSlots) {
        b = RemoveLocked(before);
      } else if (after != kCacheSlots) {
        a = RemoveLocked(after);
      }
      if (b.base != nullptr) base = b.base;
      region += b.region + a.region;
    }
    if (region > max) {
      too_big = true;
    } else {
      while (g_cached != 0 &&
             (g_cached == kCacheSlots ||
              g_cached_bytes.load(std::memory_order_relaxed) + region > max)) {
        std::size_t oldest = 0;
        for (std::size_t i = 1; i < g_cached; ++i) {
          if (g_cache[i].freed_ms < g_cache[oldest].freed_ms) oldest = i;
        }
        evicted.r[evicted.n++] = RemoveLocked(oldest);
      }
      g_cache[g_cached++] = {base, region, now};
      g_cached_bytes.store(
          g_cached_bytes.load(std::memory_order_relaxed) + region,
          std::memory_order_relaxed);
    }
    UpdateExpiryLocked();
  }
  evicted.UnmapAll();
  if (too_big) UnmapKeepErrno(base, region);
}

// The layout every cacheable region has.
bool DefaultLayout(std::size_t h, std::size_t m) {
  return h == mmap_alloc::PageSize() && m == kStampAlignment;
}

void* AllocImpl(std::size_t size, std::size_t align, bool zero) {
  // Success leaves errno as it was (the malloc binding's contract): a cache
  // path the kernel refused (mremap of a region merged from two mappings:
  // EFAULT) may set it before a fresh mapping succeeds.
  const int saved_errno = errno;
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
  std::size_t region = h + body;
  void* base = nullptr;
  if (DefaultLayout(h, m)) {
    base = TakeCached(region, &region);
    if (base != nullptr && zero) {
      std::memset(static_cast<char*>(base) + h, 0, size);
    }
  }
  if (base == nullptr) {
    mmap_alloc::MapOptions o;
    o.align = m;
    base = mmap_alloc::Map(region, o);  // fresh mappings are zero
    if (base == nullptr && g_cached_bytes.load(std::memory_order_relaxed) != 0) {
      // Out of address space (RLIMIT_AS) or memory: what the cache holds
      // may be exactly what is missing.
      LargeCacheRelease();
      base = mmap_alloc::Map(region, o);
    }
    if (base == nullptr) return nullptr;  // errno from mmap_alloc
  }
  g_mapped_bytes.fetch_add(region, std::memory_order_relaxed);
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  errno = saved_errno;
  return Publish(base, region, size, h, m);
}

}  // namespace

void* LargeAlloc(std::size_t size, std::size_t align) noexcept {
  return AllocImpl(size, align, false);
}

void* LargeAllocZeroed(std::size_t size) noexcept {
  return AllocImpl(size, 0, true);
}

void LargeFree(void* p) noexcept {
  if (p == nullptr) return;
  LargeHeader* hdr = LargeHeaderOf(p);
  char* base = static_cast<char*>(hdr->base);
  const std::size_t region = hdr->region_size;
  const bool cacheable = DefaultLayout(hdr->header_space, hdr->map_align);
  g_mapped_bytes.fetch_sub(region, std::memory_order_relaxed);
  g_allocations.fetch_sub(1, std::memory_order_relaxed);
  if (cacheable) {
    // The header stays mapped while cached: a second free of p finds this
    // stamp and is reported as a double free (alloc_type.h) instead of
    // caching the region twice and handing it to two owners later.
    hdr->type.store(AllocType::kFreedLarge, std::memory_order_relaxed);
    PutCached(base, region);
  } else {
    UnmapKeepErrno(base, region);
  }
}

std::size_t LargeUsableSize(const void* p) noexcept {
  const LargeHeader* hdr = LargeHeaderOf(p);
  return hdr->region_size - hdr->header_space;
}

std::size_t LargeRequestedSize(const void* p) noexcept {
  return LargeHeaderOf(p)->requested;
}

void* LargeRealloc(void* p, std::size_t new_size) noexcept {
  // Success leaves errno as it was (see AllocImpl): a refused mremap (a
  // region merged from two mappings spans two VMAs: EFAULT) falls back to
  // copying.
  const int saved_errno = errno;
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
  if (region == old_region ||
      (region < old_region && region >= old_region - old_region / 8)) {
    // Same pages, or a shrink by less than an eighth: keep the block as it
    // is (glibc keeps small shrinks too); the slack stays usable.
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
  errno = saved_errno;
  // The kernel refused to move the mapping: copy.
  void* q = LargeAlloc(new_size, h > mmap_alloc::PageSize() ? h : 0);
  if (q == nullptr) return nullptr;
  const std::size_t old_usable = old_region - h;
  std::memcpy(q, p, old_usable < body ? old_usable : body);
  LargeFree(p);
  return q;
}

void SetLargeCacheLimits(std::size_t max_bytes,
                         std::uint64_t decay_ms) noexcept {
  g_cache_max_bytes.store(max_bytes, std::memory_order_relaxed);
  g_cache_decay_ms.store(decay_ms, std::memory_order_relaxed);
  if (g_cached_bytes.load(std::memory_order_relaxed) > max_bytes) {
    LargeCacheRelease();
  }
  SpinLockHolder l(&g_cache_lock);
  UpdateExpiryLocked();
}

std::size_t LargeCacheRelease() noexcept {
  Evicted all;
  {
    SpinLockHolder l(&g_cache_lock);
    while (g_cached != 0) all.r[all.n++] = RemoveLocked(g_cached - 1);
    UpdateExpiryLocked();
  }
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < all.n; ++i) bytes += all.r[i].region;
  all.UnmapAll();
  return bytes;
}

std::size_t LargeCacheDecay() noexcept {
  if (g_cached_bytes.load(std::memory_order_relaxed) == 0) return 0;
  const std::uint64_t now = CoarseMonotonicMs();
  if (now < g_next_expiry_ms.load(std::memory_order_relaxed)) return 0;
  Evicted expired;
  // Opportunistic (it runs on magazine refills): a busy lock means another
  // large-block operation, which expires regions itself, or a section this
  // thread's signal handler interrupted (a fork child of that handler must
  // not wait for it).
  if (!g_cache_lock.TryLock()) return 0;
  ExpireLocked(now, &expired);
  UpdateExpiryLocked();
  g_cache_lock.Unlock();
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < expired.n; ++i) bytes += expired.r[i].region;
  expired.UnmapAll();
  return bytes;
}

// Not taken again when the forking thread holds it (fork from a signal
// handler: spin_lock.h).
void LargeCachePreFork() noexcept { g_cache_lock.LockForFork(); }
void LargeCachePostFork() noexcept { g_cache_lock.UnlockAfterFork(); }

LargeStats GetLargeStats() noexcept {
  return {g_mapped_bytes.load(std::memory_order_relaxed),
          g_allocations.load(std::memory_order_relaxed),
          g_cached_bytes.load(std::memory_order_relaxed),
          g_reuses.load(std::memory_order_relaxed)};
}

}  // namespace elfmalloc
