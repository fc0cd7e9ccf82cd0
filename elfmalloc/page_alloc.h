// PageAlloc: the per-page-size cache of slab pages (the reference's PageAlloc,
// a "CoarseAllocator"). elfmalloc has three: 64 KiB small pages, 256 KiB
// mid pages and 2 MiB medium pages; every size class's slabs come from one
// of them.
//
// Pages are kept in two bagpipes (scalable weak bags, //bagpipe):
//   * dirty: pages returned still committed (fast to reuse, cost RSS);
//   * clean: pages whose memory went back to the OS (uncommitted), and the
//     never-used pages of a refill.
// Alloc() prefers dirty pages, then clean ones, then refills from the memory
// source.
//
// Memory return (beyond the reference, which only had the byte threshold):
// dirty pages go back to the OS (uncommitted, then cached clean) by two rules.
//   * Threshold: Free() caches a page dirty only while fewer than
//     max(max_dirty_bytes, in-use bytes >> dirty_active_shift) of dirty pages
//     are cached; above it the page is uncommitted at once. The proportional
//     part (1/8 of the pages in use by default, jemalloc's old lg_dirty_mult
//     rule) keeps a big working set that frees and reallocates in bursts
//     (a producer-consumer handing over hundreds of MiB) from paying an
//     madvise, a TLB shootdown and a page fault per page, while the RSS it
//     can cost stays a bounded fraction of what is in use. (QUIRK fixed: the reference compared its byte
//     threshold, target_overhead, against a page count, and against the bag's
//     size *guess*; we keep an exact dirty-page count and compare bytes with
//     bytes.)
//   * Decay: time is cut into periods of decay_ms. During a period we track
//     the smallest number of dirty pages seen (the low-water mark). Pages
//     below that mark were cached for the whole period without anyone
//     needing them, so when the period ends that many pages are uncommitted
//     (the "unused for a whole period" rule of tcmalloc's release and
//     mimalloc's reset delay, without jemalloc's smoothstep curve). A steady
//     churn keeps its working set dirty (the mark stays near zero); after a
//     burst of frees the surplus is returned within two periods.
//   Periods are checked on page-allocator traffic and on Handle::Tick()
//   (which the slab allocators call whenever a thread claims or releases a
//   slab, and the general allocator's optional background decay thread
//   every quarter period; never on the per-object path), using CLOCK_MONOTONIC_COARSE (vDSO, no system call).
//   Without that thread, a process that stops allocating altogether keeps
//   its dirty pages until ReleaseDirty() (malloc_trim) or its next page
//   operation.
// Stamping (pointer classification, alloc_type.h): a refill carves a run of
// pages aligned to max(page_size, 2 MiB) and writes the AllocType stamp at
// every 2 MiB boundary in it: small pages come in 2 MiB-aligned groups of 32
// with the first stamped; each medium page is stamped. So for every page p
// handed out and every q in (p, p + page_size], ReadAllocType(q) is the
// stamp. Uncommitting never drops a stamp: a page on a 2 MiB boundary keeps
// its first OS page (which holds the stamp other pages of its group depend
// on) and only the rest is uncommitted. (The reference's full uncommit of a
// group's first small page zeroed the stamp under its live siblings.)
//
// Contents of a page from Alloc() are unspecified (a previous slab's data, or
// zeroes after an uncommit). On a 2 MiB boundary the first word holds this
// PageAlloc's stamp, which classifies the pointers of the whole group, so
// users must leave it as it is (a Slab's header starts with the same
// AllocType); other pages' first word may read 0 until Slab::Init writes
// the type. Slab::Init overwrites everything else it needs.
// Unmapping: a page is never unmapped on its own (a group's first page
// carries its siblings' stamp), but a whole 2 MiB region is, once every
// one of its pages is free and uncommitted: UnmapFreeRegions sorts the
// clean pages it takes out of the bag and unmaps each region it holds
// entirely (a region's pages are exactly the pages_per_group pages
// inside it, each in the clean bag at most once, so holding all of them
// proves nobody else can reach the region). The decay rule sweeps after
// each purge that left a region's worth of clean pages; ReleaseDirty
// callers (malloc_trim) and a refill that cannot map memory sweep too.
// So address space once carved for one page size serves another page
// size or a large block later (under RLIMIT_AS, or after a phase of many
// small blocks), and free slab regions stop counting as mapped. Regions are
// mapped MAP_NORESERVE (memory_source.h): untouched slab pages do not count
// against the commit charge. Destroying a PageAlloc unmaps the pages still
// cached (pages handed out and not returned stay mapped: their owner is
// responsible for them).
//
// Threads: PageAlloc is shared; each thread uses its own Handle (bagpipe
// handles are per-thread). Handles must not outlive their PageAlloc.
// Internal memory: bagpipe (bsalloc); pages come from mmap_alloc.
#ifndef ELFMALLOC_PAGE_ALLOC_H_
#define ELFMALLOC_PAGE_ALLOC_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/attributes.h"
#include "bagpipe/bagpipe.h"
#include "bagpipe/faa_queue.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/memory_source.h"

namespace elfmalloc {

class PageAlloc {
 public:
  static constexpr std::size_t kDefaultMaxDirtyBytes = std::size_t{16} << 20;
  static constexpr std::uint64_t kDefaultDecayMs = 1000;

  struct Options {
    std::size_t page_size = 0;          // power of two, >= OS page
    AllocType type = AllocType::kUnstamped;  // stamp to write
    std::size_t pages_per_refill = 0;   // 0: 2 MiB worth (>= 2 pages)
    // Dirty pages above this are uncommitted at once (threshold rule).
    std::size_t max_dirty_bytes = kDefaultMaxDirtyBytes;
    // The threshold grows to (pages in use) >> dirty_active_shift when that
    // is larger; 0 disables the proportional part.
    unsigned dirty_active_shift = 3;
    // Decay period in milliseconds; 0 disables the decay rule.
    std::uint64_t decay_ms = kDefaultDecayMs;
    // Milliseconds on a monotonic clock; nullptr: CLOCK_MONOTONIC_COARSE.
    // For tests.
    std::uint64_t (*clock_ms)() = nullptr;
    std::size_t dirty_queues = 8;       // bagpipe sizes (as the reference)
    std::size_t clean_queues = 2;
    // Where the two bags are built: BagStorageBytes(*this) bytes aligned
    // to a cache line that outlive the PageAlloc, or nullptr for a bsalloc
    // block of their own each (a whole page for each). An owner of several
    // page allocators packs their bags into one block: elfmalloc's three
    // took six pages, touched in every process, for 7 KiB of bags.
    void* bag_storage = nullptr;
  };
  // The bytes of Options::bag_storage for o's queue counts.
  static std::size_t BagStorageBytes(const Options& o) noexcept;
  // Elfmalloc's two configurations.
  static Options SmallPages() noexcept;   // 64 KiB, kSmallSlab, groups of 32
  static Options MidPages() noexcept;     // 256 KiB, kSmallSlab, groups of 8
  static Options MediumPages() noexcept;  // 2 MiB, kMediumSlab, 2 per refill

  explicit PageAlloc(const Options& options) noexcept;
  ~PageAlloc();
  PageAlloc(const PageAlloc&) = delete;
  PageAlloc& operator=(const PageAlloc&) = delete;

  // False if the bags could not be created (out of memory) or the options
  // are invalid; nothing else may be called then.
  bool valid() const noexcept { return valid_; }
  std::size_t page_size() const noexcept { return page_size_; }
  // The stamp written on every page (Options::type).
  AllocType type() const noexcept { return type_; }

  // Run-time changes of the memory-return rules (elfc_set_option). The
  // threshold applies from the next Free; a new decay period starts now, so
  // a shorter period takes effect at once instead of after the old one.
  void set_max_dirty_bytes(std::size_t bytes) noexcept;
  void set_decay_ms(std::uint64_t ms) noexcept;
  std::size_t max_dirty_bytes() const noexcept {
    return max_dirty_pages_.load(std::memory_order_relaxed) * page_size_;
  }
  std::uint64_t decay_ms() const noexcept {
    return decay_ms_.load(std::memory_order_relaxed);
  }

  // Called when a refill cannot map memory, before it tries once more
  // (the general allocator releases its caches and free regions there).
  // Process-wide; nullptr: none.
  static void SetPressureHook(void (*hook)()) noexcept;

  struct Stats {
    std::size_t mapped_bytes;   // carved from the source and still mapped
    std::size_t dirty_pages;    // cached committed pages
    std::size_t clean_pages;    // cached pages not backed by memory (fresh
                                // or uncommitted)
    std::size_t uncommits;      // pages uncommitted so far (any rule)
    std::size_t decay_uncommits;  // of which by the decay rule
    std::size_t unmapped_bytes;   // regions given back by UnmapFreeRegions
  };
  Stats GetStats() const noexcept;

  class Handle {
   public:
    Handle() noexcept = default;
    // A page aligned to page_size(), or nullptr when memory is exhausted.
    void* Alloc() noexcept;
    // Returns a page obtained from Alloc() of the same PageAlloc.
    void Free(void* page) noexcept;
    // As Free(page), but with uncommit_hint the page's memory goes back to
    // the OS at once, except its first OS page (the slab header and, for
    // every class elfmalloc has, its bit-set, so that a wholly free slab can
    // be reused without re-initialisation), and the page is cached clean.
    // For large slabs whose dirty pages would cost much RSS (the reference's
    // eager decommit). Without the hint this is Free(page).
    void Free(void* page, bool uncommit_hint) noexcept;
    // Uncommits up to max_pages cached dirty pages now (they move to the
    // clean bag); returns how many. ReleaseDirty(SIZE_MAX) empties the dirty
    // cache (malloc_trim).
    std::size_t ReleaseDirty(std::size_t max_pages) noexcept;
    // Applies the decay rule if a period has ended (a clock read otherwise).
    // Alloc and Free do this themselves; users call it on their own coarse
    // events too (a slab allocator on every slab claim and release), so that
    // a program whose slabs circulate without reaching the page allocator
    // still returns the pages freed by an earlier burst.
    void Tick() noexcept { MaybeDecay(); }
    // Gives the address space of wholly free 2 MiB regions back to the OS
    // (see "Unmapping" above): takes the clean pages out of their bag,
    // unmaps every region all of whose pages are among them, and puts the
    // others back. Returns the bytes unmapped. One sweep at a time (others
    // return 0 at once).
    std::size_t UnmapFreeRegions() noexcept;
    bool valid() const noexcept { return owner_ != nullptr; }

   private:
    friend class PageAlloc;
    // Unmaps the pages still cached when the last reference to a bag goes.
    struct UnmapPage {
      std::size_t size;
      void operator()(void* page) const noexcept;
    };
    using Bag = bagpipe::Bagpipe<bagpipe::FaaQueue<void*>, UnmapPage>;
    explicit Handle(PageAlloc* owner) noexcept;
    void* Refill() noexcept;
    // The decay rule: called on every Alloc/Free; cheap unless a period
    // has ended.
    void MaybeDecay() noexcept;
    void PushClean(void* page) noexcept;

    PageAlloc* owner_ = nullptr;
    Bag::Handle dirty_;
    Bag::Handle clean_;
  };
  // One per thread.
  Handle NewHandle() noexcept { return Handle(this); }

 private:
  using Bag = Handle::Bag;

  // Uncommits a page, keeping its stamp page resident if it carries one.
  void Uncommit(void* page) noexcept;
  // The threshold rule's current limit in pages.
  std::size_t DirtyLimit() const noexcept;
  std::uint64_t NowMs() const noexcept;
  // Lowers period_min_ to v if v is smaller (racy-min: concurrent updates
  // may lose a lower value; the rule only needs an approximate mark).
  void NoteDirtyCount(std::size_t v) noexcept;

  bool valid_ = false;
  std::size_t page_size_;
  AllocType type_;
  // Atomic: set_max_dirty_bytes / set_decay_ms may change them while
  // other threads read them (relaxed: each read is a plain load on x86).
  std::atomic<std::size_t> max_dirty_pages_;
  unsigned dirty_active_shift_;
  std::size_t refill_units_;  // source pages per refill
  // Source pages of one page: what a refill falls back to when a whole
  // refill cannot be mapped (memory pressure).
  std::size_t min_refill_units_ = 1;
  std::atomic<std::uint64_t> decay_ms_;
  std::uint64_t (*clock_ms_)();
  MmapSource source_;         // page size max(page_size, 2 MiB)
  Bag dirty_;
  Bag clean_;
  // dirty_pages_: exact count of pages in (or being pushed to) the dirty bag;
  // see Handle::Free for the reservation protocol.
  std::atomic<std::size_t> dirty_pages_{0};
  std::atomic<std::size_t> clean_pages_{0};
  std::atomic<std::size_t> mapped_bytes_{0};
  std::atomic<std::size_t> uncommits_{0};
  std::atomic<std::size_t> decay_uncommits_{0};
  std::atomic<std::size_t> unmapped_bytes_{0};
  // Sweeps (UnmapFreeRegions): one at a time; swept_clean_ is the clean
  // count a sweep left behind, so the decay rule sweeps again only when
  // pages were uncommitted since (a clean bag of fragments is not rescanned
  // every period).
  std::atomic<bool> sweeping_{false};
  std::atomic<std::size_t> swept_clean_{0};
  // Decay state. period_end_ is the deadline of the current period (0: not
  // started); the thread whose CAS moves it forward owns the purge of that
  // period. period_min_ is the low-water mark of dirty_pages_ in the period.
  std::atomic<std::uint64_t> period_end_{0};
  std::atomic<std::size_t> period_min_{0};
};

}  // namespace elfmalloc

#endif  // ELFMALLOC_PAGE_ALLOC_H_
