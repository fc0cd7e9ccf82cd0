// Large allocations: the heap of 2 MiB units in arenas, and direct mappings
// for what the arenas do not take. See large_alloc.h.
#include "elfmalloc/large_alloc.h"

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/base/attributes.h"
#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "elfmalloc/platform.h"
#include "elfmalloc/spin_lock.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

namespace {

constexpr std::size_t kUnit = kStampAlignment;  // 2 MiB
// 1 GiB: a block that needs more is direct. The bit sets below are sized for
// it.
constexpr std::size_t kMaxArenaUnits = 512;
// 64 MiB: the first arena (a program with a few large blocks reserves this
// much address space, none of it committed).
constexpr std::size_t kMinArenaUnits = 32;
constexpr std::size_t kMaxArenas = 64;
constexpr std::size_t kWords = kMaxArenaUnits / 64;
// A block placed on a unit whose resident prefix reaches more than this, and
// more than the block's own region, past the block's end gives the excess
// back at once. So a live block holds at most max(1 MiB, its region) of
// resident memory it does not use (the tail of its last unit), and churn
// through blocks of a few MiB does not pay a madvise and refaults per
// operation (purging every tail above 1 MiB: 647 madvises and 280k page
// faults in 2000 operations on 1-16 MiB blocks).
constexpr std::size_t kTailPurgeBytes = std::size_t{1} << 20;

// Packed units (large_alloc.h, "Packed units"): 4 KiB pages, 512 per unit.
constexpr std::size_t kPackedPage = 4096;
constexpr std::size_t kPackedPages = kUnit / kPackedPage;
constexpr std::size_t kPackedWords = kPackedPages / 64;
// The largest alignment a packed unit takes (every block that fits a unit
// with its alignment's worth of pages before it is packed).
constexpr std::size_t kPackedMaxAlign = std::size_t{512} << 10;


}  // namespace

// One arena: `units` units of address space from `base`, and what the heap
// knows of each unit. Invariants, all under g_lock:
//   * a unit is free (its bit in free_bits set), in a live block, or being
//     purged (bit clear, no block: PurgeList below); free_units counts the
//     set bits;
//   * resident[i] (a page multiple, at most kUnit): no page of unit i at or
//     past base + i * kUnit + resident[i] has been touched since it was
//     mapped or last purged, so it is resident-free and reads as zero. A
//     block covering a unit raises it to the block's extent there when the
//     block is placed; a purge sets it to 0;
//   * freed_ms[i]: when free unit i was last freed; last_free_ms: the
//     latest of them (an arena whose units are all free is unmapped a decay
//     period after it).
// The structure is mapped with mmap_alloc (never malloc) and unmapped with
// its arena, which happens only while every unit is free.
struct LargeArena {
  char* base;
  std::size_t units;
  std::size_t free_units;
  std::uint64_t last_free_ms;
  std::uint64_t free_bits[kWords];
  std::uint32_t resident[kMaxArenaUnits];
  std::uint64_t freed_ms[kMaxArenaUnits];
};

// A packed unit: its header page. Invariants, all under g_lock:
//   * page 0 is the header; every other page is free (free_bits), in a live
//     block, or being purged (neither: a freed block whose pages are being
//     madvised, PurgeList; they turn free after). free_pages counts the free
//     pages, and its entry in g_packed_slots the longest run of them;
//   * start_bits[i] is set iff a live block starts at page i; the block is
//     pages [i, i + run_pages[i]), none of them free, and was asked for
//     requested[i] bytes at alignment 1 << align_shift[i];
//   * dirty_bits[i]: page i may be resident (touched since the unit was
//     made or the page last purged); a clear page reads as zero. Every
//     page of a live block is dirty (set when the block takes it), so a
//     freed block's pages need no counting;
//     dirty_free counts the pages both free and dirty; their bytes, summed
//     over the units, are g_packed_dirty;
//   * freed_ms: when a block of the unit was last freed;
//   * the unit has an entry in g_packed_slots from when it is made until
//     its last page turns free, when it goes back to its arena in the same
//     critical section (its stamp then reads kFreedLarge). Pages are taken
//     and freed only while it has the entry.
// The LargeHeader fields hdr.packed and the run fields of a live block are
// read without the lock by the block's owner (usable size, requested size):
// they change only under the lock, by operations on that same block.
struct PackedUnit {
  LargeHeader hdr;
  std::size_t slot;  // its entry in g_packed_slots; kNoSlot before
  std::size_t free_pages;
  std::size_t dirty_free;
  std::uint64_t freed_ms;
  std::uint64_t free_bits[kPackedWords];
  std::uint64_t start_bits[kPackedWords];
  std::uint64_t dirty_bits[kPackedWords];
  std::uint16_t run_pages[kPackedPages];
  std::uint32_t requested[kPackedPages];
  std::uint8_t align_shift[kPackedPages];
};
static_assert(sizeof(PackedUnit) <= kPackedPage);

namespace {

// Live large blocks (regions, headers included). Updated outside the heap
// lock, so they live on a cache line of their own: beside the lock word,
// each update takes the lock's line away from the thread about to take it
// (with two threads replacing 256 KiB-2 MiB blocks, the update is then the
// hottest instruction of the allocation path).
// (One aligned struct: aligned variables of their own were placed apart by
// the compiler, one of them beside the lock again.)
struct alignas(64) LargeCounters {
  std::atomic<std::size_t> mapped_bytes{0};
  std::atomic<std::size_t> allocations{0};
};
ABSL_CONST_INIT LargeCounters g_live;

// The heap. Everything below is written under g_lock (on the lock's cache
// line or after it: the holder writes them); the atomics are relaxed so
// that statistics and the decay check read them without it.
alignas(64) ABSL_CONST_INIT SpinLock g_lock;
ABSL_CONST_INIT LargeArena* g_arenas[kMaxArenas] = {};
ABSL_CONST_INIT std::size_t g_narenas = 0;
ABSL_CONST_INIT std::atomic<std::size_t> g_arena_count{0};  // g_narenas
ABSL_CONST_INIT std::atomic<std::size_t> g_reserved_units{0};
// Sum of resident[i] over the free units.
ABSL_CONST_INIT std::atomic<std::size_t> g_cached_bytes{0};
ABSL_CONST_INIT std::atomic<std::size_t> g_reuses{0};
ABSL_CONST_INIT std::atomic<std::size_t> g_cache_max_bytes{0};
ABSL_CONST_INIT std::atomic<std::uint64_t> g_cache_decay_ms{0};
// No free unit with resident pages and no wholly free arena expires before
// this (UINT64_MAX: nothing pending), so that LargeCacheDecay is one load
// while nothing is pending and a clock read and a compare until something
// expires. Lowered (to now + decay) on every free; recomputed exactly by
// each decay pass.
ABSL_CONST_INIT std::atomic<std::uint64_t> g_next_expiry_ms{UINT64_MAX};
// The packed units, in a dense table of (unit, longest free run, free
// dirty pages) so that a placement reads one array instead of every unit's
// header (walking a list of headers, one per 2 MiB unit, took 80% of the
// placement's time in cache and TLB misses), and the bytes of their free
// resident pages. At
// most kMaxPackedUnits (8 GiB of packed blocks); beyond, blocks take units
// of their own. 64 KiB of zero-initialised data, touched as units are made.
struct PackedSlot {
  PackedUnit* unit;
  std::uint16_t longest_free;
  std::uint16_t dirty_free;  // a copy of unit->dirty_free
  // The lock id (spin_lock.h) of the thread that last placed a block in
  // the unit: the placement prefers the caller's own units (FindPagesLocked).
  std::uint32_t user;
};
static_assert(kPackedPages <= UINT16_MAX);
constexpr std::size_t kMaxPackedUnits = 4096;
constexpr std::size_t kNoSlot = SIZE_MAX;
ABSL_CONST_INIT PackedSlot g_packed_slots[kMaxPackedUnits] = {};
ABSL_CONST_INIT std::size_t g_packed_count = 0;
ABSL_CONST_INIT std::atomic<std::size_t> g_packed_dirty{0};

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

std::size_t UnitsFor(std::size_t bytes) { return (bytes + kUnit - 1) / kUnit; }

void AddRelaxed(std::atomic<std::size_t>* a, std::size_t d) {
  a->store(a->load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
}
void SubRelaxed(std::atomic<std::size_t>* a, std::size_t d) {
  a->store(a->load(std::memory_order_relaxed) - d, std::memory_order_relaxed);
}

// The offset of the header from the mapping's start, for header space h.
std::size_t HeaderOffset(std::size_t h) {
  return (h - 1) & ~(kStampAlignment - 1);
}

void* Publish(void* base, std::size_t region, std::size_t requested,
              std::size_t h, std::size_t m, LargeArena* arena) {
  char* u = static_cast<char*>(base) + h;
  LargeHeader* hdr = reinterpret_cast<LargeHeader*>(static_cast<char*>(base) +
                                                    HeaderOffset(h));
  hdr->base = base;
  hdr->region_size = region;
  hdr->requested = requested;
  hdr->header_space = h;
  hdr->map_align = m;
  hdr->arena = arena;
  hdr->packed = nullptr;
  WriteAllocType(hdr, AllocType::kLarge);
  return u;
}

void UnmapKeepErrno(void* base, std::size_t bytes) {
  const int saved = errno;
  mmap_alloc::Unmap(base, bytes);
  errno = saved;
}

// ---------------------------------------------------------------------------
// Bit sets of units.

bool TestBit(const std::uint64_t* w, std::size_t i) {
  return ((w[i / 64] >> (i % 64)) & 1) != 0;
}
// Calls f(word index, mask) for the words covering bits [i, i + n): the
// first and last words with partial masks, the words between whole.
template <typename F>
void ForEachWord(std::size_t i, std::size_t n, F f) {
  if (n == 0) return;
  const std::size_t last = (i + n - 1) / 64;
  std::uint64_t mask = ~std::uint64_t{0} << (i % 64);
  for (std::size_t w = i / 64; w < last; ++w) {
    f(w, mask);
    mask = ~std::uint64_t{0};
  }
  f(last, mask & (~std::uint64_t{0} >> (63 - (i + n - 1) % 64)));
}
void SetBits(std::uint64_t* w, std::size_t i, std::size_t n) {
  ForEachWord(i, n, [w](std::size_t k, std::uint64_t m) { w[k] |= m; });
}
void ClearBits(std::uint64_t* w, std::size_t i, std::size_t n) {
  ForEachWord(i, n, [w](std::size_t k, std::uint64_t m) { w[k] &= ~m; });
}
// Counts the set bits of w in [i, i + n).
std::size_t CountBits(const std::uint64_t* w, std::size_t i, std::size_t n) {
  std::size_t c = 0;
  ForEachWord(i, n, [&](std::size_t k, std::uint64_t m) {
    c += static_cast<std::size_t>(absl::popcount(w[k] & m));
  });
  return c;
}
// The first index in [from, end) whose bit is `value`, or end.
std::size_t NextWithBit(const std::uint64_t* w, std::size_t from,
                        std::size_t end, bool value) {
  while (from < end) {
    std::uint64_t word = value ? w[from / 64] : ~w[from / 64];
    word &= ~std::uint64_t{0} << (from % 64);
    if (word != 0) {
      const std::size_t i = (from & ~std::size_t{63}) +
                            static_cast<std::size_t>(absl::countr_zero(word));
      return i < end ? i : end;
    }
    from = (from & ~std::size_t{63}) + 64;
  }
  return end;
}

// ---------------------------------------------------------------------------
// Purges: units taken out of the heap under the lock (marked in use, so no
// allocation can reach them), madvised after it, and put back, resident-free,
// under it again. Arenas removed from the table under the lock (only when
// wholly free: nothing references them) are unmapped after it.

struct PurgeList {
  static constexpr std::size_t kMax = 32;
  struct Run {
    LargeArena* arena;
    std::size_t first;
    std::size_t n;
    std::size_t bytes;  // from the first unit's start: what may be resident
  };
  Run runs[kMax];
  std::size_t n_runs = 0;
  LargeArena* dead[kMaxArenas];
  std::size_t n_dead = 0;
  // Free resident pages of packed units, taken out of their free sets.
  struct PackedRun {
    PackedUnit* unit;
    std::size_t first;
    std::size_t n;
  };
  PackedRun packed[kMax];
  std::size_t n_packed = 0;
  bool full() const { return n_runs == kMax; }
};


// Runs of set bits in the kPackedWords words word(0), word(1), ... (page i
// is bit i % 64 of word i / 64), found a word at a time: a word of ones
// extends the run that reaches it, its trailing ones end that run, and only
// the runs inside a word are walked one by one (a packed unit holds a few
// blocks, so a word has few). Walking them a run at a time with
// NextWithBit costs ~600 of the ~2,800 instructions a 256 KiB-2 MiB
// replacement spends in the heap (callgrind, bigblock-mid).
//
// Calls f(first, length) for every maximal run, in order.
template <typename Word, typename F>
void ForEachRun(Word word, F f) {
  std::size_t start = 0;
  std::size_t run = 0;
  for (std::size_t w = 0; w < kPackedWords; ++w) {
    const std::uint64_t x = word(w);
    if (x == ~std::uint64_t{0}) {
      if (run == 0) start = w * 64;
      run += 64;
      continue;
    }
    // x has a zero: its trailing ones end the run that reached this word.
    std::size_t pos = static_cast<std::size_t>(absl::countr_one(x));
    if (pos != 0 && run == 0) start = w * 64;
    run += pos;
    if (run != 0 && !f(start, run)) return;
    run = 0;
    for (;;) {
      const std::uint64_t rest = x >> pos;  // pos < 64: bit pos is zero
      if (rest == 0) break;
      pos += static_cast<std::size_t>(absl::countr_zero(rest));
      const std::size_t r =
          static_cast<std::size_t>(absl::countr_one(x >> pos));
      if (pos + r == 64) {  // reaches the top: may go on in the next word
        start = w * 64 + pos;
        run = r;
        break;
      }
      if (!f(w * 64 + pos, r)) return;
      pos += r;
    }
  }
  if (run != 0) f(start, run);
}

// The first page of the first run of at least k set bits of
// word(0..kPackedWords), or kPackedPages.
template <typename Word>
std::size_t FirstRunOf(Word word, std::size_t k) {
  std::size_t found = kPackedPages;
  ForEachRun(word, [&](std::size_t first, std::size_t n) {
    if (n < k) return true;
    found = first;
    return false;
  });
  return found;
}

// Under the lock: the longest run of free pages of u.
std::size_t LongestFreeRun(const PackedUnit* u) {
  std::size_t longest = 0;
  ForEachRun([u](std::size_t w) { return u->free_bits[w]; },
             [&](std::size_t, std::size_t n) {
               if (n > longest) longest = n;
               return true;
             });
  return longest;
}

// Under the lock: u's longest free run and free dirty pages, in its table
// entry (after every change of its free set).
void SetLongestLocked(PackedUnit* u) {
  PackedSlot& slot = g_packed_slots[u->slot];
  slot.longest_free = static_cast<std::uint16_t>(LongestFreeRun(u));
  slot.dirty_free = static_cast<std::uint16_t>(u->dirty_free);
}

// Under the lock: pages [s, s + k) of u, in no block and not free, turn
// free; `dirty` of them are dirty (all of a block's, none of a purged run's:
// the callers know, so no page is counted).
void FreePagesLocked(PackedUnit* u, std::size_t s, std::size_t k,
                     std::size_t dirty) {
  SetBits(u->free_bits, s, k);
  u->free_pages += k;
  u->dirty_free += dirty;
  AddRelaxed(&g_packed_dirty, dirty * kPackedPage);
  SetLongestLocked(u);
}

// Under the lock: free pages [s, s + k) of u, `dirty` of them dirty, leave
// the free set (for a block or a purge).
void TakePagesLocked(PackedUnit* u, std::size_t s, std::size_t k,
                     std::size_t dirty) {
  ClearBits(u->free_bits, s, k);
  u->free_pages -= k;
  u->dirty_free -= dirty;
  SubRelaxed(&g_packed_dirty, dirty * kPackedPage);
  SetLongestLocked(u);
}

bool PackedUnitIsEmpty(const PackedUnit* u) {
  return u->free_pages == kPackedPages - 1;
}

// Under the lock: units [first, first + n) of a, all free, leave the heap
// (for a block, or for a purge). Returns whether any was resident.
bool TakeUnitsLocked(LargeArena* a, std::size_t first, std::size_t n) {
  ClearBits(a->free_bits, first, n);
  a->free_units -= n;
  std::size_t resident = 0;
  for (std::size_t i = first; i < first + n; ++i) resident += a->resident[i];
  SubRelaxed(&g_cached_bytes, resident);
  return resident != 0;
}

// Under the lock: takes free units [first, first + n) of a out of the heap
// for a purge (all are free, some resident).
void TakeForPurgeLocked(LargeArena* a, std::size_t first, std::size_t n,
                        PurgeList* out) {
  TakeUnitsLocked(a, first, n);
  out->runs[out->n_runs++] = {a, first, n,
                              (n - 1) * kUnit + a->resident[first + n - 1]};
}

// Under the lock: removes a wholly free arena from the table.
void RemoveArenaLocked(std::size_t index, PurgeList* out) {
  LargeArena* a = g_arenas[index];
  std::size_t resident = 0;
  for (std::size_t i = 0; i < a->units; ++i) resident += a->resident[i];
  SubRelaxed(&g_cached_bytes, resident);
  g_reserved_units.fetch_sub(a->units, std::memory_order_relaxed);
  g_arenas[index] = g_arenas[--g_narenas];
  g_arenas[g_narenas] = nullptr;
  g_arena_count.store(g_narenas, std::memory_order_relaxed);
  out->dead[out->n_dead++] = a;
}

void ReturnUnitLocked(PackedUnit* u, std::uint64_t now);

// Purges what TakeForPurgeLocked took and unmaps the dead arenas; returns
// the bytes given back. Called without the lock.
std::size_t FinishPurges(PurgeList* list) {
  const int saved = errno;
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < list->n_runs; ++i) {
    const PurgeList::Run& r = list->runs[i];
    if (r.bytes != 0) {
      mmap_alloc::Uncommit(r.arena->base + r.first * kUnit, r.bytes);
      bytes += r.bytes;
    }
  }
  for (std::size_t i = 0; i < list->n_packed; ++i) {
    const PurgeList::PackedRun& r = list->packed[i];
    mmap_alloc::Uncommit(reinterpret_cast<char*>(r.unit) + r.first * kPackedPage,
                         r.n * kPackedPage);
    bytes += r.n * kPackedPage;
  }
  if (list->n_runs != 0 || list->n_packed != 0) {
    SpinLockHolder l(&g_lock);
    for (std::size_t i = 0; i < list->n_runs; ++i) {
      const PurgeList::Run& r = list->runs[i];
      for (std::size_t j = r.first; j < r.first + r.n; ++j) {
        r.arena->resident[j] = 0;
      }
      SetBits(r.arena->free_bits, r.first, r.n);
      r.arena->free_units += r.n;
    }
    const std::uint64_t now = CoarseMonotonicMs();
    for (std::size_t i = 0; i < list->n_packed; ++i) {
      const PurgeList::PackedRun& r = list->packed[i];
      ClearBits(r.unit->dirty_bits, r.first, r.n);
      FreePagesLocked(r.unit, r.first, r.n, 0);
      if (PackedUnitIsEmpty(r.unit)) ReturnUnitLocked(r.unit, now);
    }
  }
  for (std::size_t i = 0; i < list->n_dead; ++i) {
    LargeArena* a = list->dead[i];
    bytes += a->units * kUnit;
    mmap_alloc::Unmap(a->base, a->units * kUnit);
    mmap_alloc::Unmap(a, sizeof(LargeArena));
  }
  list->n_runs = 0;
  list->n_dead = 0;
  list->n_packed = 0;
  errno = saved;
  return bytes;
}

// Under the lock: adds to *out the maximal runs of free resident units of a
// that satisfy pred(unit), until out is full. Returns false if it filled up.
template <typename Pred>
bool CollectResidentRunsLocked(LargeArena* a, Pred pred, PurgeList* out) {
  std::size_t i = 0;
  while (i < a->units) {
    i = NextWithBit(a->free_bits, i, a->units, true);
    if (i == a->units) break;
    if (a->resident[i] == 0 || !pred(i)) {
      ++i;
      continue;
    }
    std::size_t j = i + 1;
    while (j < a->units && TestBit(a->free_bits, j) && a->resident[j] != 0 &&
           pred(j)) {
      ++j;
    }
    if (out->full()) return false;
    TakeForPurgeLocked(a, i, j - i, out);
    i = j;
  }
  return true;
}

// Under the lock: adds to *out the maximal runs of free resident pages of
// the packed units that satisfy pred(unit), taking them out of the free
// sets, until out is full. Returns false if it filled up.
template <typename Pred>
bool CollectPackedRunsLocked(Pred pred, PurgeList* out) {
  for (std::size_t t = 0; t < g_packed_count; ++t) {
    PackedUnit* u = g_packed_slots[t].unit;
    if (u->dirty_free == 0 || !pred(u)) continue;
    std::size_t i = 1;
    while (i < kPackedPages) {
      i = NextWithBit(u->free_bits, i, kPackedPages, true);
      if (i == kPackedPages) break;
      if (!TestBit(u->dirty_bits, i)) {
        ++i;
        continue;
      }
      std::size_t j = i + 1;
      while (j < kPackedPages && TestBit(u->free_bits, j) &&
             TestBit(u->dirty_bits, j)) {
        ++j;
      }
      if (out->n_packed == PurgeList::kMax) return false;
      TakePagesLocked(u, i, j - i, j - i);  // free and dirty
      out->packed[out->n_packed++] = {u, i, j - i};
      i = j;
    }
  }
  return true;
}

// The cap on the resident bytes of free units: the configured bytes, or
// twice what the live large blocks hold if that is more (a proportional
// part, like the dirty-page threshold's, page_alloc.h). A program churning
// through a working set of large blocks reuses the freed ones; the decay
// period still returns them when it stops. 0 configured: nothing is kept.
std::size_t CacheLimit() {
  const std::size_t max = g_cache_max_bytes.load(std::memory_order_relaxed);
  if (max == 0) return 0;
  const std::size_t live = g_live.mapped_bytes.load(std::memory_order_relaxed);
  return live > max / 2 ? 2 * live : max;
}

// Under the lock: takes the free resident units freed longest ago until the
// rest is within the cap (or the list is full); with the cap at 0, also
// every wholly free arena.
void EnforceCapLocked(PurgeList* out) {
  const std::size_t limit = CacheLimit();
  if (limit == 0) {
    for (std::size_t k = g_narenas; k-- > 0;) {
      if (g_arenas[k]->free_units == g_arenas[k]->units) {
        RemoveArenaLocked(k, out);
      }
    }
  }
  auto over = [limit] {
    return g_cached_bytes.load(std::memory_order_relaxed) +
               g_packed_dirty.load(std::memory_order_relaxed) >
           limit;
  };
  while (over() && !out->full()) {
    // The oldest free time among resident free units; every unit freed then
    // or before goes (units freed together share the time).
    std::uint64_t oldest = UINT64_MAX;
    for (std::size_t k = 0; k < g_narenas; ++k) {
      const LargeArena* a = g_arenas[k];
      for (std::size_t i = NextWithBit(a->free_bits, 0, a->units, true);
           i < a->units; i = NextWithBit(a->free_bits, i + 1, a->units, true)) {
        if (a->resident[i] != 0 && a->freed_ms[i] < oldest) {
          oldest = a->freed_ms[i];
        }
      }
    }
    if (oldest == UINT64_MAX) break;
    for (std::size_t k = 0; k < g_narenas; ++k) {
      LargeArena* a = g_arenas[k];
      if (!CollectResidentRunsLocked(
              a, [a, oldest](std::size_t i) { return a->freed_ms[i] <= oldest; },
              out)) {
        break;
      }
    }
  }
  // Then free pages of packed units, unit by unit, until within the cap.
  if (over()) {
    CollectPackedRunsLocked([&](const PackedUnit*) { return over(); }, out);
  }
}

// Under the lock: something freed at `now` expires a decay period later.
void LowerExpiryLocked(std::uint64_t now) {
  const std::uint64_t decay = g_cache_decay_ms.load(std::memory_order_relaxed);
  if (decay != 0 &&
      now + decay < g_next_expiry_ms.load(std::memory_order_relaxed)) {
    g_next_expiry_ms.store(now + decay, std::memory_order_relaxed);
  }
}

// Under the lock: units [first, first + n) of a go back to the heap.
void FreeUnitsLocked(LargeArena* a, std::size_t first, std::size_t n,
                     std::uint64_t now) {
  SetBits(a->free_bits, first, n);
  a->free_units += n;
  a->last_free_ms = now;
  std::size_t resident = 0;
  for (std::size_t i = first; i < first + n; ++i) {
    a->freed_ms[i] = now;
    resident += a->resident[i];
  }
  AddRelaxed(&g_cached_bytes, resident);
  LowerExpiryLocked(now);
}

// Under the lock: u, wholly free, goes back to its arena as a free unit
// whose resident prefix reaches its last dirty page.
void ReturnUnitLocked(PackedUnit* u, std::uint64_t now) {
  if (u->slot != kNoSlot) {
    // The last entry takes its place.
    PackedSlot& last = g_packed_slots[--g_packed_count];
    g_packed_slots[u->slot] = last;
    last.unit->slot = u->slot;
    last = {};
    u->slot = kNoSlot;
    SubRelaxed(&g_packed_dirty, u->dirty_free * kPackedPage);
  }
  std::size_t top = 1;  // the header page
  for (std::size_t w = kPackedWords; w-- > 0;) {
    if (u->dirty_bits[w] != 0) {
      top = w * 64 + 64 - static_cast<std::size_t>(absl::countl_zero(u->dirty_bits[w]));
      break;
    }
  }
  LargeArena* a = u->hdr.arena;
  const std::size_t i =
      static_cast<std::size_t>(reinterpret_cast<char*>(u) - a->base) / kUnit;
  // A second free of one of its blocks finds this (alloc_type.h).
  WriteAllocType(&u->hdr, AllocType::kFreedLarge);
  a->resident[i] = static_cast<std::uint32_t>(top * kPackedPage);
  FreeUnitsLocked(a, i, 1, now);
}


// Under the lock: a block's region [0, region) from unit `first` of a may be
// written from now on: every unit's resident prefix covers the block's part.
void CoverLocked(LargeArena* a, std::size_t first, std::size_t region) {
  const std::size_t n = UnitsFor(region);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t part =
        k + 1 < n ? kUnit : region - (n - 1) * kUnit;
    if (a->resident[first + k] < part) {
      a->resident[first + k] = static_cast<std::uint32_t>(part);
    }
  }
}

// Under the lock: where n units go. Ordinarily the free run that fits with
// the most of its first n units resident, then the shortest (best fit),
// then the first, from its start.
// For a block that is growing (realloc), the longest free run, from the
// start of its upper half when it holds twice n: the block then has room to
// grow in place, and so do the next growing blocks placed in the halves
// left (four buffers grown by realloc to 4 MiB side by side: each grows in
// place instead of moving at every unit boundary). false if no run fits.
bool FindRunLocked(std::size_t n, bool growth, LargeArena** arena,
                   std::size_t* first) {
  if (growth) {
    std::size_t longest = 0;
    for (std::size_t k = 0; k < g_narenas; ++k) {
      LargeArena* a = g_arenas[k];
      if (a->free_units < n || a->free_units <= longest) continue;
      std::size_t i = 0;
      while (i < a->units) {
        i = NextWithBit(a->free_bits, i, a->units, true);
        if (i == a->units) break;
        const std::size_t j = NextWithBit(a->free_bits, i, a->units, false);
        if (j - i >= n && j - i > longest) {
          longest = j - i;
          *arena = a;
          *first = longest >= 2 * n ? i + longest / 2 : i;
        }
        i = j;
      }
    }
    return longest != 0;
  }
  // Ranked by the bytes the block would have to fault in (its units' part
  // not yet resident), then by run length: resident free units are reused
  // before fresh ones, so the pages a program touches stay a compact set
  // (ranked by length alone, churn through blocks of 1-16 MiB spread over
  // twice the address space and kept 132 MiB resident where glibc peaks at
  // 72).
  std::size_t best_len = SIZE_MAX;
  std::size_t best_fault = SIZE_MAX;
  for (std::size_t k = 0; k < g_narenas; ++k) {
    LargeArena* a = g_arenas[k];
    if (a->free_units < n) continue;
    std::size_t i = 0;
    while (i < a->units) {
      i = NextWithBit(a->free_bits, i, a->units, true);
      if (i == a->units) break;
      const std::size_t j = NextWithBit(a->free_bits, i, a->units, false);
      const std::size_t len = j - i;
      if (len >= n) {
        std::size_t resident = 0;
        for (std::size_t u = i; u < i + n; ++u) resident += a->resident[u];
        const std::size_t fault = n * kUnit - resident;
        if (fault < best_fault || (fault == best_fault && len < best_len)) {
          best_fault = fault;
          best_len = len;
          *arena = a;
          *first = i;
          if (fault == 0 && len == n) return true;
        }
      }
      i = j;
    }
  }
  return best_len != SIZE_MAX;
}

// A new arena for a block of n units, or nullptr (errno from mmap_alloc).
// Mapped outside the lock; see large_alloc.h for the sizes.
LargeArena* NewArena(std::size_t n) {
  std::size_t want = g_reserved_units.load(std::memory_order_relaxed);
  if (want < kMinArenaUnits) want = kMinArenaUnits;
  if (want > kMaxArenaUnits) want = kMaxArenaUnits;
  if (want < n) want = n;
  mmap_alloc::MapOptions o;
  o.align = kUnit;
  o.noreserve = true;
  char* base = static_cast<char*>(mmap_alloc::Map(want * kUnit, o));
  if (base == nullptr && want > n) {
    want = n;  // e.g. RLIMIT_AS: exactly what this block needs
    base = static_cast<char*>(mmap_alloc::Map(want * kUnit, o));
  }
  if (base == nullptr) return nullptr;
  auto* a = static_cast<LargeArena*>(mmap_alloc::Map(sizeof(LargeArena)));
  if (a == nullptr) {
    UnmapKeepErrno(base, want * kUnit);
    return nullptr;
  }
  // Fresh mappings are zero: resident, freed_ms and the bits start at 0.
  a->base = base;
  a->units = want;
  a->free_units = want;
  a->last_free_ms = CoarseMonotonicMs();
  SetBits(a->free_bits, 0, want);
  return a;
}

// Where a block of `region` bytes goes, with the resident prefixes its units
// had before (for calloc).
struct Placed {
  LargeArena* arena = nullptr;
  std::size_t first = 0;
  std::size_t n = 0;
  std::uint32_t old_resident[kMaxArenaUnits];
};

// Places a block of `region` bytes (n = UnitsFor(region) <= kMaxArenaUnits
// units) in an arena, mapping a new one if no free run fits. false (errno
// set) if no arena could be mapped or the table is full.
bool PlaceInArena(std::size_t region, bool want_old_resident, bool growth,
                  Placed* out) {
  const std::size_t n = UnitsFor(region);
  LargeArena* fresh = nullptr;
  char* tail = nullptr;  // a resident tail past the block, given back
  std::size_t tail_bytes = 0;
  bool placed = false;
  for (int attempt = 0; attempt < 2 && !placed; ++attempt) {
    {
      SpinLockHolder l(&g_lock);
      if (fresh != nullptr) {
        if (g_narenas == kMaxArenas) break;  // fresh is unmapped below
        g_arenas[g_narenas++] = fresh;
        g_arena_count.store(g_narenas, std::memory_order_relaxed);
        g_reserved_units.fetch_add(fresh->units, std::memory_order_relaxed);
        fresh = nullptr;
      }
      LargeArena* a = nullptr;
      std::size_t first = 0;
      if (FindRunLocked(n, growth, &a, &first)) {
        if (want_old_resident) {
          for (std::size_t k = 0; k < n; ++k) {
            out->old_resident[k] = a->resident[first + k];
          }
        }
        if (TakeUnitsLocked(a, first, n)) {
          g_reuses.fetch_add(1, std::memory_order_relaxed);
        }
        CoverLocked(a, first, region);
        // A resident tail reaching far past the block goes back now (it is
        // the block's address space: nobody else touches it meanwhile).
        const std::size_t last = first + n - 1;
        const std::size_t part = region - (n - 1) * kUnit;
        const std::size_t tail_resident =
            a->resident[last] > part ? a->resident[last] - part : 0;
        if (tail_resident > kTailPurgeBytes && tail_resident > region) {
          tail = a->base + last * kUnit + part;
          tail_bytes = a->resident[last] - part;
          a->resident[last] = static_cast<std::uint32_t>(part);
        }
        out->arena = a;
        out->first = first;
        out->n = n;
        placed = true;
      }
    }
    if (!placed && attempt == 0) {
      fresh = NewArena(n);
      if (fresh == nullptr) return false;
    }
  }
  if (fresh != nullptr) {  // the table was full
    UnmapKeepErrno(fresh->base, fresh->units * kUnit);
    UnmapKeepErrno(fresh, sizeof(LargeArena));
  }
  if (tail != nullptr) {
    // madvise only: the unit stays the block's.
    const int saved = errno;
    mmap_alloc::Uncommit(tail, tail_bytes);
    errno = saved;
  }
  if (!placed) errno = ENOMEM;
  return placed;
}

// PlaceInArena, and once more after giving back every free unit and arena
// if that failed: out of address space (RLIMIT_AS) or memory, free arenas
// may be exactly what is missing.
bool PlaceOrRelease(std::size_t region, bool want_old_resident, bool growth,
                    Placed* out) {
  if (PlaceInArena(region, want_old_resident, growth, out)) return true;
  if (g_cached_bytes.load(std::memory_order_relaxed) +
          g_reserved_units.load(std::memory_order_relaxed) ==
      0) {
    return false;
  }
  LargeCacheRelease();
  return PlaceInArena(region, want_old_resident, growth, out);
}

// Clears [u, u + size) where an arena block's units may hold old data.
void ZeroResident(const Placed& pl, const char* u, std::size_t size) {
  const char* end = u + size;
  for (std::size_t k = 0; k < pl.n; ++k) {
    char* unit = pl.arena->base + (pl.first + k) * kUnit;
    const char* lo = unit > u ? unit : u;
    const char* hi = unit + pl.old_resident[k];
    if (hi > end) hi = end;
    if (lo < hi) std::memset(const_cast<char*>(lo), 0, static_cast<std::size_t>(hi - lo));
  }
}

// A free of an arena block's units (or its trailing units, on a shrink):
// back to the heap, then the cap.
void ReleaseUnits(LargeArena* a, std::size_t first, std::size_t n) {
  PurgeList purges;
  {
    SpinLockHolder l(&g_lock);
    FreeUnitsLocked(a, first, n, CoarseMonotonicMs());
    EnforceCapLocked(&purges);
  }
  FinishPurges(&purges);
}

// ---------------------------------------------------------------------------
// Packed units (large_alloc.h, "Packed units").

// Whether a block of `body` bytes aligned to h goes to a packed unit: it
// fits one after h bytes (the header page, or the first aligned page).
bool Packable(std::size_t body, std::size_t h) {
  return h <= kPackedMaxAlign && body <= kUnit - h &&
         mmap_alloc::PageSize() == kPackedPage;
}

// Under the lock: where k pages aligned to `align` pages go among the
// packed units: the first place whose pages are all dirty (resident), or
// else the place that would fault in the fewest pages, then the shortest
// free run (best fit), the first among equals; each free run offers its
// first aligned page and its last aligned place. false if none fits.
// Resident pages first, as for units (a working set of 64 blocks of
// 256 KiB-2 MiB placed first-fit faulted in 39 pages per replacement); the
// first resident place rather than the best-fitting one, since ranking
// every place on every allocation took 40% of that workload's time.
// Unaligned blocks (align 1, nearly all) first look for the first run of
// k pages both free and dirty, in the units with that many such pages,
// with no page counted (ranking the free runs of every unit until one is
// wholly resident costs ~1,000 instructions per allocation in bigblock-mid);
// the block takes the run's first pages, so it may split a free run whose
// head is not resident. A unit in which the calling thread placed the last
// block comes before the others (the first other unit with such a run is
// the fallback): the pages a thread reuses are then mostly ones its own
// core wrote, and two threads touch fewer of each other's units. With two
// threads replacing blocks of 256 KiB-2 MiB (bigblock-mid), first-fit over
// all units ran at 0.90M replacements/s, this at 0.97M (mimalloc, whose
// heaps are per thread, 1.01M); one thread is unchanged.
bool FindPagesLocked(std::size_t k, std::size_t align, PackedUnit** unit,
                     std::size_t* first, std::size_t* dirty) {
  if (align == 1) {
    const std::uint32_t me = internal::ThreadId();
    PackedUnit* other = nullptr;  // the first place in another's unit
    std::size_t other_first = 0;
    for (std::size_t t = 0; t < g_packed_count; ++t) {
      const PackedSlot& slot = g_packed_slots[t];
      if (slot.longest_free < k || slot.dirty_free < k) continue;
      const bool mine = slot.user == me;
      if (!mine && other != nullptr) continue;
      PackedUnit* u = slot.unit;
      const std::size_t s = FirstRunOf(
          [u](std::size_t w) { return u->free_bits[w] & u->dirty_bits[w]; },
          k);
      if (s == kPackedPages) continue;
      if (!mine) {
        other = u;
        other_first = s;
        continue;
      }
      *unit = u;
      *first = s;
      *dirty = k;
      return true;
    }
    if (other != nullptr) {
      *unit = other;
      *first = other_first;
      *dirty = k;
      return true;
    }
  }
  std::size_t best_fault = SIZE_MAX;
  std::size_t best_len = SIZE_MAX;
  for (std::size_t t = 0; t < g_packed_count; ++t) {
    if (g_packed_slots[t].longest_free < k) continue;
    PackedUnit* u = g_packed_slots[t].unit;
    std::size_t i = 1;
    while (i < kPackedPages) {
      i = NextWithBit(u->free_bits, i, kPackedPages, true);
      if (i == kPackedPages) break;
      const std::size_t j = NextWithBit(u->free_bits, i, kPackedPages, false);
      const std::size_t lo = (i + align - 1) / align * align;
      if (lo + k <= j) {
        const std::size_t hi = (j - k) / align * align;
        for (std::size_t s : {lo, hi}) {
          const std::size_t fault = k - CountBits(u->dirty_bits, s, k);
          if (fault < best_fault ||
              (fault == best_fault && j - i < best_len)) {
            best_fault = fault;
            best_len = j - i;
            *unit = u;
            *first = s;
            *dirty = k - fault;
            if (fault == 0) return true;
          }
        }
      }
      i = j;
    }
  }
  return best_fault != SIZE_MAX;
}

// Under the lock: a block of k pages at page s of u (free pages, `dirty` of
// them dirty), asked for `requested` bytes at alignment 1 << shift.
// *was_dirty receives the dirty bits its pages had (for calloc).
void StartBlockLocked(PackedUnit* u, std::size_t s, std::size_t k,
                      std::size_t dirty, std::size_t requested,
                      unsigned shift, std::uint64_t* was_dirty) {
  if (was_dirty != nullptr) {
    std::memcpy(was_dirty, u->dirty_bits, sizeof(u->dirty_bits));
  }
  TakePagesLocked(u, s, k, dirty);
  g_packed_slots[u->slot].user = internal::ThreadId();
  SetBits(u->dirty_bits, s, k);
  SetBits(u->start_bits, s, 1);
  u->run_pages[s] = static_cast<std::uint16_t>(k);
  u->requested[s] = static_cast<std::uint32_t>(requested);
  u->align_shift[s] = static_cast<std::uint8_t>(shift);
}

// A packed unit made on a unit of the heap (nullptr, errno ENOMEM, if none
// can be had). Not yet on the list: the caller's until it puts it there.
// Its resident pages count as freed now (the decay period starts).
PackedUnit* NewPackedUnit() {
  Placed pl;
  if (!PlaceOrRelease(kUnit, true, false, &pl)) return nullptr;
  char* base = pl.arena->base + pl.first * kUnit;
  auto* u = reinterpret_cast<PackedUnit*>(base);
  u->hdr.base = base;
  u->hdr.region_size = kUnit;
  u->hdr.requested = 0;
  u->hdr.header_space = kPackedPage;
  u->hdr.map_align = kUnit;
  u->hdr.arena = pl.arena;
  u->hdr.packed = u;
  u->slot = kNoSlot;
  u->free_pages = kPackedPages - 1;
  u->dirty_free = 0;
  u->freed_ms = CoarseMonotonicMs();
  std::memset(u->free_bits, 0, sizeof(u->free_bits));
  std::memset(u->start_bits, 0, sizeof(u->start_bits));
  std::memset(u->dirty_bits, 0, sizeof(u->dirty_bits));
  SetBits(u->free_bits, 1, kPackedPages - 1);
  // The pages the unit had resident before it was taken (the header page
  // is written now).
  std::size_t resident_pages =
      (pl.old_resident[0] + kPackedPage - 1) / kPackedPage;
  if (resident_pages < 1) resident_pages = 1;
  SetBits(u->dirty_bits, 0, resident_pages);
  u->dirty_free = resident_pages - 1;
  WriteAllocType(&u->hdr, AllocType::kLarge);
  return u;
}

// Whether p is the start of the block with units (or a mapping) of its own
// that hdr governs (a freed one reads kFreedLarge and never gets here).
bool IsUnitBlockStart(const LargeHeader* hdr, const void* p) {
  return static_cast<const char*>(hdr->base) + hdr->header_space == p;
}

// LargeFree's and LargeRealloc's check of such a block: one compare, made
// in every build.
void CheckUnitBlockStart(const LargeHeader* hdr, const void* p,
                         const char* op) {
  if (ABSL_PREDICT_FALSE(!IsUnitBlockStart(hdr, p))) {
    DieBadLargeBlock(p, op, LargeBlockState::kInterior);
  }
}

// A block of `body` bytes (a page multiple, Packable) aligned to h, in a
// packed unit; nullptr (errno ENOMEM) if no unit can be had.
void* PackedAlloc(std::size_t body, std::size_t h, std::size_t requested,
                  bool zero) {
  const std::size_t k = body / kPackedPage;
  const std::size_t align = h / kPackedPage;
  const unsigned shift = static_cast<unsigned>(absl::countr_zero(h));
  std::uint64_t was_dirty[kPackedWords];
  std::uint64_t* dirty_out = zero ? was_dirty : nullptr;
  PackedUnit* u = nullptr;
  std::size_t s = 0;
  {
    SpinLockHolder l(&g_lock);
    std::size_t dirty;
    if (FindPagesLocked(k, align, &u, &s, &dirty)) {
      StartBlockLocked(u, s, k, dirty, requested, shift, dirty_out);
    }
  }
  if (u == nullptr) {
    u = NewPackedUnit();
    if (u == nullptr) return nullptr;
    s = align;  // the first aligned page after the header: k fits after it
    SpinLockHolder l(&g_lock);
    if (g_packed_count == kMaxPackedUnits) {
      // The table is full: the unit goes back, the block takes units of
      // its own.
      ReturnUnitLocked(u, CoarseMonotonicMs());
      errno = ENOMEM;
      return nullptr;
    }
    u->slot = g_packed_count++;
    g_packed_slots[u->slot].unit = u;
    SetLongestLocked(u);
    AddRelaxed(&g_packed_dirty, u->dirty_free * kPackedPage);
    if (u->dirty_free != 0) LowerExpiryLocked(u->freed_ms);
    StartBlockLocked(u, s, k, CountBits(u->dirty_bits, s, k), requested,
                     shift, dirty_out);
  }
  g_live.mapped_bytes.fetch_add(body, std::memory_order_relaxed);
  g_live.allocations.fetch_add(1, std::memory_order_relaxed);
  char* p = reinterpret_cast<char*>(u) + s * kPackedPage;
  if (zero) {
    // Only pages that may hold old data; the rest are zero and stay
    // untouched.
    for (std::size_t i = 0; i < k && i * kPackedPage < requested; ++i) {
      if (TestBit(was_dirty, s + i)) {
        const std::size_t left = requested - i * kPackedPage;
        std::memset(p + i * kPackedPage, 0,
                    left < kPackedPage ? left : kPackedPage);
      }
    }
  }
  return p;
}

// Under the lock: what p is in u (LargeBlockState).
LargeBlockState PackedStateLocked(const PackedUnit* u, const void* p,
                                  std::size_t* page) {
  const std::uintptr_t off = reinterpret_cast<std::uintptr_t>(p) -
                             reinterpret_cast<std::uintptr_t>(u);
  const std::size_t s = off / kPackedPage;
  *page = s;
  if (s == 0 || s >= kPackedPages) return LargeBlockState::kInterior;
  if (off % kPackedPage == 0 && TestBit(u->start_bits, s)) {
    return LargeBlockState::kLive;
  }
  return TestBit(u->free_bits, s) ? LargeBlockState::kFreed
                                  : LargeBlockState::kInterior;
}

// Takes the lock and returns the first page of p's block in u; reports and
// aborts if p is not a live block's start. The caller unlocks.
std::size_t LockLiveBlock(PackedUnit* u, const void* p, const char* op) {
  g_lock.Lock();
  std::size_t s = 0;
  const LargeBlockState state = PackedStateLocked(u, p, &s);
  if (ABSL_PREDICT_FALSE(state != LargeBlockState::kLive)) {
    g_lock.Unlock();
    DieBadLargeBlock(p, op, state);
  }
  return s;
}

// Under the lock: the pages [s, s + k) of a freed block of u turn free, u
// goes back to its arena if it is now wholly free, and the cap is enforced.
void ReleasePagesLocked(PackedUnit* u, std::size_t s, std::size_t k,
                        PurgeList* purges) {
  const std::uint64_t now = CoarseMonotonicMs();
  FreePagesLocked(u, s, k, k);  // a block's pages are all dirty
  if (PackedUnitIsEmpty(u)) {
    ReturnUnitLocked(u, now);
  } else {
    u->freed_ms = now;
    LowerExpiryLocked(now);
  }
  EnforceCapLocked(purges);
}

void PackedFree(PackedUnit* u, void* p, const char* op) {
  PurgeList purges;
  const std::size_t s = LockLiveBlock(u, p, op);
  const std::size_t k = u->run_pages[s];
  ClearBits(u->start_bits, s, 1);
  g_live.mapped_bytes.fetch_sub(k * kPackedPage, std::memory_order_relaxed);
  g_live.allocations.fetch_sub(1, std::memory_order_relaxed);
  ReleasePagesLocked(u, s, k, &purges);
  g_lock.Unlock();
  FinishPurges(&purges);
}

void* AllocImpl(std::size_t size, std::size_t align, bool zero, bool growth);

// LargeRealloc of a block in a packed unit: in place when its pages hold the
// new size (a shrink frees the pages past it) or the pages after it are
// free; otherwise a new block placed to grow (a block that grows past its
// unit is likely to grow again) and a copy.
void* PackedRealloc(PackedUnit* u, void* p, std::size_t new_size) {
  const int saved_errno = errno;
  std::size_t body;
  if (!PageRound(new_size, &body) ||
      body > std::numeric_limits<std::size_t>::max() / 2 - kUnit) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::size_t k2 = body / kPackedPage;
  std::size_t k = 0;
  unsigned shift = 0;
  PurgeList purges;
  bool in_place = false;
  {
    const std::size_t s = LockLiveBlock(u, p, "realloc");
    k = u->run_pages[s];
    shift = u->align_shift[s];
    if (k2 <= k) {
      // The pages past the new end are freed like a block's (the block
      // keeps its first page, so the unit stays).
      if (k2 < k) ReleasePagesLocked(u, s + k2, k - k2, &purges);
      in_place = true;
    } else if (s + k2 <= kPackedPages &&
               NextWithBit(u->free_bits, s + k, s + k2, false) == s + k2) {
      TakePagesLocked(u, s + k, k2 - k,
                      CountBits(u->dirty_bits, s + k, k2 - k));
      SetBits(u->dirty_bits, s + k, k2 - k);
      in_place = true;
    }
    if (in_place) {
      u->run_pages[s] = static_cast<std::uint16_t>(k2);
      u->requested[s] = static_cast<std::uint32_t>(new_size);
      g_live.mapped_bytes.fetch_add(body, std::memory_order_relaxed);
      g_live.mapped_bytes.fetch_sub(k * kPackedPage, std::memory_order_relaxed);
    }
    g_lock.Unlock();
  }
  if (in_place) {
    FinishPurges(&purges);
    return p;
  }
  const std::size_t align = std::size_t{1} << shift;
  void* q = AllocImpl(new_size, align > kPackedPage ? align : 0, false,
                      /*growth=*/true);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, k * kPackedPage);  // k < k2: the new block is larger
  PackedFree(u, p, "realloc");
  errno = saved_errno;
  return q;
}

void* AllocImpl(std::size_t size, std::size_t align, bool zero,
                bool growth) {
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
  const std::size_t region = h + body;
  if (!growth && Packable(body, h)) {
    if (void* p = PackedAlloc(body, h, size, zero)) {
      errno = saved_errno;
      return p;
    }
    // No unit to be had: the paths below fail the same way, or find a
    // mapping of its own.
  }
  if (h <= kUnit && UnitsFor(region) <= kMaxArenaUnits) {
    Placed pl;
    if (PlaceOrRelease(region, zero, growth, &pl)) {
      char* base = pl.arena->base + pl.first * kUnit;
      if (zero) ZeroResident(pl, base + h, size);
      g_live.mapped_bytes.fetch_add(region, std::memory_order_relaxed);
      g_live.allocations.fetch_add(1, std::memory_order_relaxed);
      errno = saved_errno;
      return Publish(base, region, size, h, kUnit, pl.arena);
    }
    if (errno != ENOMEM) return nullptr;
    // The table is full (or the arenas' rounding is what does not fit):
    // a mapping of its own.
  }
  mmap_alloc::MapOptions o;
  o.align = m;
  void* base = mmap_alloc::Map(region, o);  // fresh mappings are zero
  if (base == nullptr) {
    LargeCacheRelease();
    base = mmap_alloc::Map(region, o);
    if (base == nullptr) return nullptr;  // errno from mmap_alloc
  }
  g_live.mapped_bytes.fetch_add(region, std::memory_order_relaxed);
  g_live.allocations.fetch_add(1, std::memory_order_relaxed);
  errno = saved_errno;
  return Publish(base, region, size, h, m, nullptr);
}

// Under no lock: the decay pass. Takes what expired (see large_alloc.h) and
// recomputes g_next_expiry_ms; `all` releases everything free regardless of
// time (malloc_trim). Returns the bytes given back.
std::size_t PurgePass(bool all, bool try_lock) {
  std::size_t bytes = 0;
  for (;;) {
    PurgeList purges;
    bool more = false;
    {
      if (try_lock) {
        if (!g_lock.TryLock()) return bytes;
      } else {
        g_lock.Lock();
      }
      const std::uint64_t now = CoarseMonotonicMs();
      const std::uint64_t decay =
          g_cache_decay_ms.load(std::memory_order_relaxed);
      auto expired = [&](std::uint64_t t) {
        return all || (decay != 0 && now - t >= decay);
      };
      for (std::size_t k = g_narenas; k-- > 0;) {
        LargeArena* a = g_arenas[k];
        if (a->free_units == a->units && expired(a->last_free_ms)) {
          if (purges.n_dead == kMaxArenas) {
            more = true;
            break;
          }
          RemoveArenaLocked(k, &purges);
          continue;
        }
        if (!CollectResidentRunsLocked(
                a, [&](std::size_t i) { return expired(a->freed_ms[i]); },
                &purges)) {
          more = true;
          break;
        }
      }
      if (!CollectPackedRunsLocked(
              [&](const PackedUnit* u) { return expired(u->freed_ms); },
              &purges)) {
        more = true;
      }
      std::uint64_t next = UINT64_MAX;
      if (decay != 0) {
        for (std::size_t k = 0; k < g_narenas; ++k) {
          const LargeArena* a = g_arenas[k];
          if (a->free_units == a->units && a->last_free_ms + decay < next) {
            next = a->last_free_ms + decay;
          }
          for (std::size_t i = NextWithBit(a->free_bits, 0, a->units, true);
               i < a->units;
               i = NextWithBit(a->free_bits, i + 1, a->units, true)) {
            if (a->resident[i] != 0 && a->freed_ms[i] + decay < next) {
              next = a->freed_ms[i] + decay;
            }
          }
        }
        for (std::size_t t = 0; t < g_packed_count; ++t) {
          const PackedUnit* u = g_packed_slots[t].unit;
          if (u->dirty_free != 0 && u->freed_ms + decay < next) {
            next = u->freed_ms + decay;
          }
        }
      }
      g_next_expiry_ms.store(more ? now : next, std::memory_order_relaxed);
      g_lock.Unlock();
    }
    // Purged pages may have emptied packed units, now free units: another
    // pass sees them.
    const bool emptied = purges.n_packed != 0;
    bytes += FinishPurges(&purges);
    if (!more && !(all && emptied)) return bytes;
    try_lock = false;
  }
}

// Growth of an arena block that cannot grow in place: its pages move, not
// copied, to a mapping of its own (a direct block from then on), grown by
// mremap there and later. The arena's range stays mapped and empty
// (mmap_alloc::MoveTo with keep_source), so no other mapping can take the
// hole, and its units go back to the heap without resident pages. A buffer
// grown by realloc to a few MiB thus costs one move and a few mremaps, not
// a copy and a fault per page at every unit boundary (copying: 100k
// operations/s on buffers grown to 4 MiB; moving: 1.9M). nullptr (errno
// set) if the kernel refuses (before Linux 5.7, MREMAP_DONTUNMAP is
// unknown): then the block is as it was and the caller copies.
void* MoveOutAndGrow(void* p, std::size_t region, std::size_t new_size) {
  LargeHeader* hdr = LargeHeaderOf(p);
  LargeArena* a = hdr->arena;
  char* base = static_cast<char*>(hdr->base);
  const std::size_t h = hdr->header_space;
  const std::size_t old_region = hdr->region_size;
  mmap_alloc::MapOptions reserve;
  reserve.perm = mmap_alloc::Perm::kNone;
  reserve.align = kUnit;
  char* target = static_cast<char*>(mmap_alloc::Map(old_region, reserve));
  if (target == nullptr) return nullptr;
  if (!mmap_alloc::MoveTo(base, old_region, target, /*keep_source=*/true)) {
    UnmapKeepErrno(target, old_region);
    return nullptr;
  }
  void* grown = mmap_alloc::Remap(target, old_region, region, kUnit);
  if (grown == nullptr) {
    // Back where it was (replacing the empty range, which is ours).
    if (!mmap_alloc::MoveTo(target, old_region, base)) {
      ABSL_RAW_LOG(FATAL, "elfmalloc: realloc(%p): cannot move a large block "
                   "back into its arena (errno %d)", p, errno);
    }
    return nullptr;
  }
  const std::size_t first = static_cast<std::size_t>(base - a->base) / kUnit;
  const std::size_t n = UnitsFor(old_region);
  PurgeList purges;
  {
    SpinLockHolder l(&g_lock);
    // The moved pages left nothing resident behind; a resident tail past
    // the block in its last unit stays.
    for (std::size_t k = 0; k + 1 < n; ++k) a->resident[first + k] = 0;
    if (a->resident[first + n - 1] <= old_region - (n - 1) * kUnit) {
      a->resident[first + n - 1] = 0;
    }
    FreeUnitsLocked(a, first, n, CoarseMonotonicMs());
    EnforceCapLocked(&purges);
  }
  FinishPurges(&purges);
  g_live.mapped_bytes.fetch_add(region, std::memory_order_relaxed);
  g_live.mapped_bytes.fetch_sub(old_region, std::memory_order_relaxed);
  return Publish(grown, region, new_size, h, kUnit, nullptr);
}

}  // namespace

void* LargeAlloc(std::size_t size, std::size_t align) noexcept {
  return AllocImpl(size, align, false, false);
}

void* LargeAllocZeroed(std::size_t size) noexcept {
  return AllocImpl(size, 0, true, false);
}

void* LargeAllocForGrowth(std::size_t size) noexcept {
  return AllocImpl(size, 0, false, true);
}

void LargeFree(void* p) noexcept {
  if (p == nullptr) return;
  LargeHeader* hdr = LargeHeaderOf(p);
  if (hdr->packed != nullptr) return PackedFree(hdr->packed, p, "free");
  CheckUnitBlockStart(hdr, p, "free");
  char* base = static_cast<char*>(hdr->base);
  const std::size_t region = hdr->region_size;
  LargeArena* a = hdr->arena;
  g_live.mapped_bytes.fetch_sub(region, std::memory_order_relaxed);
  g_live.allocations.fetch_sub(1, std::memory_order_relaxed);
  if (a == nullptr) {
    UnmapKeepErrno(base, region);
    return;
  }
  // The header stays mapped while its unit is free: a second free of p
  // finds this stamp and is reported as a double free (alloc_type.h)
  // instead of freeing the units twice. (A purge zeroes it: then the
  // second free reads an unstamped region and is reported as a foreign
  // pointer.)
  WriteAllocType(hdr, AllocType::kFreedLarge);
  ReleaseUnits(a, static_cast<std::size_t>(base - a->base) / kUnit,
               UnitsFor(region));
}

namespace {
// The first page of p's block in packed unit u (p is a live block's start).
std::size_t PackedPageOf(const PackedUnit* u, const void* p) {
  return static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(p) -
                                  reinterpret_cast<std::uintptr_t>(u)) /
         kPackedPage;
}
}  // namespace

void DieBadLargeBlock(const void* p, const char* op,
                      LargeBlockState state) noexcept {
  if (state == LargeBlockState::kFreed) {
    ABSL_RAW_LOG(FATAL,
                 "elfmalloc: double free of %p (a large block, already "
                 "freed)",
                 p);
  }
  ABSL_RAW_LOG(FATAL,
               "elfmalloc: %s(%p): not the start of a large block (an "
               "interior pointer)",
               op, p);
  std::abort();  // not reached: FATAL aborts
}

LargeBlockState LargeStateOf(const void* p) noexcept {
  const LargeHeader* hdr = LargeHeaderOf(p);
  if (const PackedUnit* u = hdr->packed) {
    SpinLockHolder l(&g_lock);
    std::size_t s;
    return PackedStateLocked(u, p, &s);
  }
  return IsUnitBlockStart(hdr, p) ? LargeBlockState::kLive
                                  : LargeBlockState::kInterior;
}

std::size_t LargeUsableSize(const void* p) noexcept {
  const LargeHeader* hdr = LargeHeaderOf(p);
  if (const PackedUnit* u = hdr->packed) {
    return std::size_t{u->run_pages[PackedPageOf(u, p)]} * kPackedPage;
  }
  return hdr->region_size - hdr->header_space;
}

std::size_t LargeRequestedSize(const void* p) noexcept {
  const LargeHeader* hdr = LargeHeaderOf(p);
  if (const PackedUnit* u = hdr->packed) {
    return u->requested[PackedPageOf(u, p)];
  }
  return hdr->requested;
}

void* LargeBlockContaining(const void* a) noexcept {
  const std::uintptr_t addr = reinterpret_cast<std::uintptr_t>(a);
  if (addr < 2 * kUnit) return nullptr;  // null page and the like
  std::uintptr_t unit = addr & ~(kUnit - 1);
  // a's own unit header is read only past that header's page: the page
  // may be a guard (PROT_NONE) that the block below ends with.
  if (addr - unit < mmap_alloc::PageSize()) unit -= kUnit;
  for (std::size_t i = 0; i < kMaxArenaUnits && unit != 0;
       ++i, unit -= kUnit) {
    // Mapped units below a belong to one block up to its header (a block's
    // pages are all readable but its guard), or a lies in no block.
    if (!mmap_alloc::IsMappedBoundary(reinterpret_cast<const void*>(unit))) {
      return nullptr;
    }
    const auto* h = reinterpret_cast<const LargeHeader*>(unit);
    // A unit inside a block starts with the program's bytes: a header is a
    // live stamp that names its own unit as the base of an arena block.
    if (h->region.type.load(std::memory_order_relaxed) != AllocType::kLarge ||
        reinterpret_cast<std::uintptr_t>(h->base) != unit ||
        h->arena == nullptr) {
      continue;
    }
    if (const PackedUnit* u = h->packed) {
      // The nearest block start at or below a's page in this unit.
      if (addr - unit >= kUnit) return nullptr;
      for (std::size_t s = (addr - unit) / kPackedPage; s > 0; --s) {
        if (TestBit(u->start_bits, s)) {
          if ((addr - unit) / kPackedPage >= s + u->run_pages[s]) {
            return nullptr;
          }
          return reinterpret_cast<char*>(unit) + s * kPackedPage;
        }
        if (TestBit(u->free_bits, s)) return nullptr;
      }
      return nullptr;
    }
    // The first block header below a: a lies in it, or in no block.
    if (addr - unit >= h->region_size) return nullptr;
    return reinterpret_cast<char*>(unit) + h->header_space;
  }
  return nullptr;
}

void* LargeRealloc(void* p, std::size_t new_size) noexcept {
  // Success leaves errno as it was (a refused mremap falls back to a copy).
  LargeHeader* hdr = LargeHeaderOf(p);
  if (hdr->packed != nullptr) return PackedRealloc(hdr->packed, p, new_size);
  CheckUnitBlockStart(hdr, p, "realloc");
  const int saved_errno = errno;
  const std::size_t h = hdr->header_space;
  const std::size_t old_region = hdr->region_size;
  std::size_t body;
  if (!PageRound(new_size, &body) ||
      body > std::numeric_limits<std::size_t>::max() / 2 - h) {
    errno = ENOMEM;
    return nullptr;
  }
  const std::size_t region = h + body;
  if (LargeArena* a = hdr->arena) {
    char* base = static_cast<char*>(hdr->base);
    const std::size_t first = static_cast<std::size_t>(base - a->base) / kUnit;
    const std::size_t n_old = UnitsFor(old_region);
    const std::size_t n_new = UnitsFor(region);
    bool in_place = n_new <= n_old;
    if (n_new < n_old) {
      ReleaseUnits(a, first + n_new, n_old - n_new);
    }
    {
      SpinLockHolder l(&g_lock);
      if (n_new > n_old && first + n_new <= a->units &&
          NextWithBit(a->free_bits, first + n_old, first + n_new, false) ==
              first + n_new) {
        // The units after the block are free: taken.
        TakeUnitsLocked(a, first + n_old, n_new - n_old);
        in_place = true;
      }
      if (in_place) CoverLocked(a, first, region);
    }
    if (in_place) {
      hdr->region_size = region;
      hdr->requested = new_size;
      g_live.mapped_bytes.fetch_add(region, std::memory_order_relaxed);
      g_live.mapped_bytes.fetch_sub(old_region, std::memory_order_relaxed);
      return p;
    }
    if (void* q = MoveOutAndGrow(p, region, new_size)) {
      errno = saved_errno;
      return q;
    }
    errno = saved_errno;
  } else {
    const std::size_t m = hdr->map_align;
    if (region == old_region ||
        (region < old_region && region >= old_region - old_region / 8)) {
      // Same pages, or a shrink by less than an eighth: keep the block as
      // it is (glibc keeps small shrinks too); the slack stays usable.
      hdr->requested = new_size;
      return p;
    }
    void* base = mmap_alloc::Remap(hdr->base, old_region, region, m);
    if (base != nullptr) {
      // The header moved with its page; rewrite what changed.
      g_live.mapped_bytes.fetch_add(region, std::memory_order_relaxed);
      g_live.mapped_bytes.fetch_sub(old_region, std::memory_order_relaxed);
      return Publish(base, region, new_size, h, m, nullptr);
    }
    errno = saved_errno;
  }
  // A new block and a copy.
  void* q = LargeAlloc(new_size, h > mmap_alloc::PageSize() ? h : 0);
  if (q == nullptr) return nullptr;
  const std::size_t old_usable = old_region - h;
  std::memcpy(q, p, old_usable < body ? old_usable : body);
  LargeFree(p);
  errno = saved_errno;
  return q;
}

void SetLargeCacheLimits(std::size_t max_bytes,
                         std::uint64_t decay_ms) noexcept {
  g_cache_max_bytes.store(max_bytes, std::memory_order_relaxed);
  g_cache_decay_ms.store(decay_ms, std::memory_order_relaxed);
  PurgeList purges;
  {
    SpinLockHolder l(&g_lock);
    EnforceCapLocked(&purges);
    // The next decay pass recomputes the expiry under the new period.
    g_next_expiry_ms.store(decay_ms != 0 ? 0 : UINT64_MAX,
                           std::memory_order_relaxed);
  }
  FinishPurges(&purges);
}

std::size_t LargeCacheRelease() noexcept { return PurgePass(true, false); }

std::size_t LargeCacheDecay() noexcept {
  const std::uint64_t next = g_next_expiry_ms.load(std::memory_order_relaxed);
  if (next == UINT64_MAX || CoarseMonotonicMs() < next) return 0;
  // Opportunistic (it runs on magazine refills): a busy lock means another
  // large-block operation, or a section this thread's signal handler
  // interrupted (a fork child of that handler must not wait for it).
  return PurgePass(false, true);
}

// Not taken again when the forking thread holds it (fork from a signal
// handler: spin_lock.h).
void LargeCachePreFork() noexcept { g_lock.LockForFork(); }
void LargeCachePostFork() noexcept { g_lock.UnlockAfterFork(); }

const char* LargeHeapInconsistency() noexcept {
  SpinLockHolder l(&g_lock);
  std::size_t packed_dirty = 0;
  for (std::size_t t = 0; t < g_packed_count; ++t) {
    const PackedUnit* u = g_packed_slots[t].unit;
    if (u->slot != t) return "a packed unit's slot does not name its entry";
    if (TestBit(u->free_bits, 0)) return "a packed unit's header page is free";
    std::size_t free_pages = 0, dirty_free = 0, longest = 0, run = 0;
    for (std::size_t i = 1; i < kPackedPages; ++i) {
      const bool free = TestBit(u->free_bits, i);
      free_pages += free ? 1 : 0;
      dirty_free += free && TestBit(u->dirty_bits, i) ? 1 : 0;
      run = free ? run + 1 : 0;
      if (run > longest) longest = run;
      if (TestBit(u->start_bits, i)) {
        const std::size_t k = u->run_pages[i];
        if (k == 0 || i + k > kPackedPages) return "a block's run is wrong";
        for (std::size_t j = i; j < i + k; ++j) {
          if (TestBit(u->free_bits, j)) return "a live block's page is free";
          if (!TestBit(u->dirty_bits, j)) {
            return "a live block's page is not dirty";
          }
          if (j != i && TestBit(u->start_bits, j)) return "blocks overlap";
        }
      }
    }
    if (free_pages != u->free_pages) return "free_pages is wrong";
    if (dirty_free != u->dirty_free) return "dirty_free is wrong";
    if (longest != g_packed_slots[t].longest_free ||
        dirty_free != g_packed_slots[t].dirty_free) {
      return "the table's entry is wrong";
    }
    packed_dirty += dirty_free * kPackedPage;
  }
  if (packed_dirty != g_packed_dirty.load(std::memory_order_relaxed)) {
    return "g_packed_dirty is not the sum of the units' free dirty pages";
  }
  return nullptr;
}

LargeStats GetLargeStats() noexcept {
  LargeStats s;
  s.mapped_bytes = g_live.mapped_bytes.load(std::memory_order_relaxed);
  s.allocations = g_live.allocations.load(std::memory_order_relaxed);
  s.cached_bytes = g_cached_bytes.load(std::memory_order_relaxed) +
                   g_packed_dirty.load(std::memory_order_relaxed);
  s.reuses = g_reuses.load(std::memory_order_relaxed);
  s.reserved_bytes = g_reserved_units.load(std::memory_order_relaxed) * kUnit;
  s.arenas = g_arena_count.load(std::memory_order_relaxed);
  return s;
}

}  // namespace elfmalloc
