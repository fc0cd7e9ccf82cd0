// PageAlloc: refill, stamping, dirty/clean policy. See page_alloc.h.
#include "elfmalloc/page_alloc.h"

#include <atomic>
#include <cstddef>
#include <algorithm>
#include <cstdint>

#include "elfmalloc/platform.h"
#include "elfmalloc/size_classes.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

void PageAlloc::Handle::UnmapPage::operator()(void* page) const noexcept {
  mmap_alloc::Unmap(page, size);
}

PageAlloc::Options PageAlloc::SmallPages() noexcept {
  Options o;
  o.page_size = kSmallPageSize;
  o.type = AllocType::kSmallSlab;
  o.pages_per_refill = kStampAlignment / kSmallPageSize;  // one group of 32
  return o;
}

PageAlloc::Options PageAlloc::MidPages() noexcept {
  Options o;
  o.page_size = kMidPageSize;
  o.type = AllocType::kSmallSlab;  // the tags, not the stamp, tell classes
  o.pages_per_refill = kStampAlignment / kMidPageSize;  // one group of 8
  return o;
}

PageAlloc::Options PageAlloc::MediumPages() noexcept {
  Options o;
  o.page_size = kMediumPageSize;
  o.type = AllocType::kMediumSlab;
  o.pages_per_refill = 2;
  return o;
}

namespace {
std::size_t Max(std::size_t a, std::size_t b) { return a < b ? b : a; }
bool IsPow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }
}  // namespace

PageAlloc::PageAlloc(const Options& o) noexcept
    : page_size_(o.page_size),
      type_(o.type),
      max_dirty_pages_(o.page_size ? o.max_dirty_bytes / o.page_size : 0),
      dirty_active_shift_(o.dirty_active_shift),
      refill_units_(0),
      decay_ms_(o.decay_ms),
      clock_ms_(o.clock_ms),
      source_(Max(o.page_size, kStampAlignment)),
      dirty_(o.dirty_queues, Handle::UnmapPage{o.page_size},
             o.bag_storage),
      clean_(o.clean_queues, Handle::UnmapPage{o.page_size},
             o.bag_storage == nullptr
                 ? nullptr
                 : static_cast<char*>(o.bag_storage) +
                       Bag::StorageBytes(o.dirty_queues)) {
  if (!IsPow2(o.page_size) || o.page_size < mmap_alloc::PageSize() ||
      !dirty_.valid() || !clean_.valid()) {
    return;
  }
  std::size_t pages = o.pages_per_refill;
  if (pages == 0) pages = Max(2, kStampAlignment / o.page_size);
  const std::size_t bytes = pages * o.page_size;
  refill_units_ = (bytes + source_.page_size() - 1) / source_.page_size();
  min_refill_units_ =
      (page_size_ + source_.page_size() - 1) / source_.page_size();
  valid_ = true;
}

std::size_t PageAlloc::BagStorageBytes(const Options& o) noexcept {
  return Bag::StorageBytes(o.dirty_queues) + Bag::StorageBytes(o.clean_queues);
}

PageAlloc::~PageAlloc() = default;  // the bags unmap what they still hold

PageAlloc::Stats PageAlloc::GetStats() const noexcept {
  return {mapped_bytes_.load(std::memory_order_relaxed),
          dirty_pages_.load(std::memory_order_relaxed),
          clean_pages_.load(std::memory_order_relaxed),
          uncommits_.load(std::memory_order_relaxed),
          decay_uncommits_.load(std::memory_order_relaxed),
          unmapped_bytes_.load(std::memory_order_relaxed)};
}

namespace {
ABSL_CONST_INIT std::atomic<void (*)()> g_pressure_hook{nullptr};
}  // namespace

void PageAlloc::SetPressureHook(void (*hook)()) noexcept {
  g_pressure_hook.store(hook, std::memory_order_release);
}

std::uint64_t PageAlloc::NowMs() const noexcept {
  return clock_ms_ != nullptr ? clock_ms_() : CoarseMonotonicMs();
}

void PageAlloc::set_max_dirty_bytes(std::size_t bytes) noexcept {
  max_dirty_pages_.store(page_size_ ? bytes / page_size_ : 0,
                         std::memory_order_relaxed);
}

void PageAlloc::set_decay_ms(std::uint64_t ms) noexcept {
  decay_ms_.store(ms, std::memory_order_relaxed);
  period_end_.store(0, std::memory_order_relaxed);
}

std::size_t PageAlloc::DirtyLimit() const noexcept {
  const std::size_t max_dirty_pages =
      max_dirty_pages_.load(std::memory_order_relaxed);
  if (dirty_active_shift_ == 0) return max_dirty_pages;
  const std::size_t mapped =
      mapped_bytes_.load(std::memory_order_relaxed) / page_size_;
  const std::size_t cached = dirty_pages_.load(std::memory_order_relaxed) +
                             clean_pages_.load(std::memory_order_relaxed);
  const std::size_t in_use = mapped > cached ? mapped - cached : 0;
  const std::size_t proportional = in_use >> dirty_active_shift_;
  return proportional > max_dirty_pages ? proportional : max_dirty_pages;
}

void PageAlloc::NoteDirtyCount(std::size_t v) noexcept {
  std::size_t m = period_min_.load(std::memory_order_relaxed);
  while (v < m && !period_min_.compare_exchange_weak(
                      m, v, std::memory_order_relaxed)) {
  }
}

void PageAlloc::Uncommit(void* page) noexcept {
  char* p = static_cast<char*>(page);
  std::size_t skip = 0;
  if (reinterpret_cast<std::uintptr_t>(p) % kStampAlignment == 0) {
    // This page's first word is the stamp for its whole 2 MiB region; keep
    // that OS page resident.
    skip = mmap_alloc::PageSize();
  }
  if (skip < page_size_) mmap_alloc::Uncommit(p + skip, page_size_ - skip);
  uncommits_.fetch_add(1, std::memory_order_relaxed);
}

PageAlloc::Handle::Handle(PageAlloc* owner) noexcept
    : owner_(owner),
      dirty_(owner->dirty_.NewHandle()),
      clean_(owner->clean_.NewHandle()) {}

void* PageAlloc::Handle::Alloc() noexcept {
  PageAlloc& o = *owner_;
  void* page;
  if (dirty_.Pop(&page)) {
    o.NoteDirtyCount(o.dirty_pages_.fetch_sub(1, std::memory_order_relaxed) -
                     1);
  } else if (clean_.Pop(&page)) {
    o.clean_pages_.fetch_sub(1, std::memory_order_relaxed);
  } else {
    page = Refill();
  }
  MaybeDecay();
  return page;
}

void PageAlloc::Handle::PushClean(void* page) noexcept {
  if (clean_.Push(page)) {
    owner_->clean_pages_.fetch_add(1, std::memory_order_relaxed);
  }
  // else OOM in the bag: the page stays mapped (uncommitted) and is lost to
  // reuse; never unmap it, it may carry the stamp of live siblings.
}

std::size_t PageAlloc::Handle::ReleaseDirty(std::size_t max_pages) noexcept {
  PageAlloc& o = *owner_;
  std::size_t n = 0;
  void* page;
  while (n < max_pages && dirty_.Pop(&page)) {
    o.NoteDirtyCount(o.dirty_pages_.fetch_sub(1, std::memory_order_relaxed) -
                     1);
    o.Uncommit(page);
    PushClean(page);
    ++n;
  }
  return n;
}

// The decay rule (page_alloc.h). Protocol: period_end_ only moves forward,
// by CAS; the one thread whose CAS succeeds for an expired period reads and
// resets the low-water mark and purges that many pages. Other threads see
// either the old deadline (their CAS fails) or the new one (not expired), so
// each period is purged at most once. The mark is approximate (relaxed,
// racy-min): a lost update can only make a period purge fewer or a few
// more pages than ideal, never touch a page handed out (purging pops pages
// from the bag like any Alloc).
void PageAlloc::Handle::MaybeDecay() noexcept {
  PageAlloc& o = *owner_;
  const std::uint64_t decay_ms = o.decay_ms_.load(std::memory_order_relaxed);
  if (decay_ms == 0) return;
  const std::uint64_t now = o.NowMs();
  std::uint64_t end = o.period_end_.load(std::memory_order_relaxed);
  if (now < end) return;
  if (!o.period_end_.compare_exchange_strong(end, now + decay_ms,
                                             std::memory_order_relaxed)) {
    return;
  }
  const std::size_t current = o.dirty_pages_.load(std::memory_order_relaxed);
  // end == 0: the first period starts now; nothing has been tracked yet.
  const std::size_t unused =
      end == 0 ? 0 : o.period_min_.exchange(current, std::memory_order_relaxed);
  if (unused != 0) {
    const std::size_t n = ReleaseDirty(unused < current ? unused : current);
    o.decay_uncommits_.fetch_add(n, std::memory_order_relaxed);
  }
  o.period_min_.store(o.dirty_pages_.load(std::memory_order_relaxed),
                      std::memory_order_relaxed);
  // Once per period (not at the start of the first): give back the regions
  // that became wholly free, if pages were uncommitted since the last sweep.
  if (end != 0 && o.clean_pages_.load(std::memory_order_relaxed) >
                      o.swept_clean_.load(std::memory_order_relaxed)) {
    UnmapFreeRegions();
  }
}

std::size_t PageAlloc::Handle::UnmapFreeRegions() noexcept {
  PageAlloc& o = *owner_;
  const std::size_t group = o.page_size_ >= kStampAlignment
                                ? 1
                                : kStampAlignment / o.page_size_;
  if (o.clean_pages_.load(std::memory_order_relaxed) < group) return 0;
  if (o.sweeping_.exchange(true, std::memory_order_acquire)) return 0;
  // Scratch for the page pointers: a temporary mapping (no malloc here),
  // bounded so that one sweep stays short; what does not fit waits for the
  // next sweep.
  constexpr std::size_t kMaxPages = std::size_t{1} << 17;  // 8 GiB of 64 KiB
  std::size_t want = o.clean_pages_.load(std::memory_order_relaxed) + 64;
  if (want > kMaxPages) want = kMaxPages;
  auto** pages =
      static_cast<void**>(mmap_alloc::Map(want * sizeof(void*)));
  std::size_t unmapped = 0;
  if (pages != nullptr) {
    std::size_t n = 0;
    while (n < want && clean_.Pop(&pages[n])) ++n;
    o.clean_pages_.fetch_sub(n, std::memory_order_relaxed);
    std::sort(pages, pages + n, [](void* a, void* b) {
      return reinterpret_cast<std::uintptr_t>(a) <
             reinterpret_cast<std::uintptr_t>(b);
    });
    // Compact the survivors to the front while unmapping complete regions.
    std::size_t keep = 0;
    for (std::size_t i = 0; i < n;) {
      const std::uintptr_t region =
          reinterpret_cast<std::uintptr_t>(pages[i]) & ~(kStampAlignment - 1);
      std::size_t j = i;
      while (j < n && (reinterpret_cast<std::uintptr_t>(pages[j]) &
                       ~(kStampAlignment - 1)) == region) {
        ++j;
      }
      const std::size_t bytes = group * o.page_size_;
      if (j - i == group &&
          mmap_alloc::Unmap(reinterpret_cast<void*>(region), bytes)) {
        unmapped += bytes;
      } else {
        for (std::size_t k = i; k < j; ++k) pages[keep++] = pages[k];
      }
      i = j;
    }
    for (std::size_t i = 0; i < keep; i += 16) {
      const std::size_t k = keep - i < 16 ? keep - i : 16;
      if (clean_.BulkAdd(pages + i, k)) {
        o.clean_pages_.fetch_add(k, std::memory_order_relaxed);
      }
      // else OOM in the bag: those pages stay mapped, lost to reuse.
    }
    mmap_alloc::Unmap(pages, want * sizeof(void*));
    o.mapped_bytes_.fetch_sub(unmapped, std::memory_order_relaxed);
    o.unmapped_bytes_.fetch_add(unmapped, std::memory_order_relaxed);
  }
  o.swept_clean_.store(o.clean_pages_.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
  o.sweeping_.store(false, std::memory_order_release);
  return unmapped;
}

void* PageAlloc::Handle::Refill() noexcept {
  PageAlloc& o = *owner_;
  std::size_t units = o.refill_units_;
  char* region = static_cast<char*>(o.source_.Carve(units));
  if (region == nullptr) {
    // Out of address space or memory: free regions of this and the other
    // page sizes, and cached large blocks, may be exactly what is missing.
    UnmapFreeRegions();
    if (void (*hook)() = g_pressure_hook.load(std::memory_order_acquire)) {
      hook();
    }
    region = static_cast<char*>(o.source_.Carve(o.refill_units_));
    if (region == nullptr && o.refill_units_ > o.min_refill_units_) {
      // One page's worth may still fit where a whole refill does not
      // (2 MiB pages come two to a refill).
      units = o.min_refill_units_;
      region = static_cast<char*>(o.source_.Carve(units));
    }
    if (region == nullptr) return nullptr;
  }
  const std::size_t bytes = units * o.source_.page_size();
  o.mapped_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  // The region is aligned to max(page_size, 2 MiB): stamp every 2 MiB
  // boundary, i.e. the first page of each small-page group / every medium
  // page.
  for (std::size_t off = 0; off < bytes; off += kStampAlignment) {
    WriteAllocType(region + off, o.type_);
  }
  // Hand out the first page; the rest are clean (fresh) pages. Pushing them
  // in batches of kBatch keeps this allocation-free (no array sized at run
  // time).
  constexpr std::size_t kBatch = 16;
  void* batch[kBatch];
  std::size_t k = 0;
  for (std::size_t off = o.page_size_; off < bytes; off += o.page_size_) {
    batch[k++] = region + off;
    if (k == kBatch || off + o.page_size_ >= bytes) {
      // false only on OOM: the pages stay mapped, lost to reuse.
      if (clean_.BulkAdd(batch, k)) {
        o.clean_pages_.fetch_add(k, std::memory_order_relaxed);
      }
      k = 0;
    }
  }
  return region;
}

void PageAlloc::Handle::Free(void* page) noexcept {
  PageAlloc& o = *owner_;
  // Reserve a dirty slot first (the count may exceed the items in the bag,
  // never fall short, so it never underflows when a pop decrements it).
  const std::size_t limit = o.DirtyLimit();
  if (o.dirty_pages_.fetch_add(1, std::memory_order_relaxed) < limit) {
    if (dirty_.Push(page)) {
      MaybeDecay();
      return;
    }
    o.dirty_pages_.fetch_sub(1, std::memory_order_relaxed);
    o.Uncommit(page);  // OOM in the bag: at least give the memory back
    return;
  }
  o.NoteDirtyCount(o.dirty_pages_.fetch_sub(1, std::memory_order_relaxed) - 1);
  o.Uncommit(page);
  PushClean(page);
  MaybeDecay();
}

void PageAlloc::Handle::Free(void* page, bool uncommit_hint) noexcept {
  if (!uncommit_hint) {
    Free(page);
    return;
  }
  PageAlloc& o = *owner_;
  const std::size_t keep = mmap_alloc::PageSize();
  if (keep < o.page_size_) {
    mmap_alloc::Uncommit(static_cast<char*>(page) + keep, o.page_size_ - keep);
  }
  o.uncommits_.fetch_add(1, std::memory_order_relaxed);
  PushClean(page);
}

}  // namespace elfmalloc
