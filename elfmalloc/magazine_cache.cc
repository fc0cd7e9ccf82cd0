// MagazineCache: construction (one lazily committed mapping for the stack
// and the coalescer) and the coalescing flush. See magazine_cache.h.
#include "elfmalloc/magazine_cache.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/base/macros.h"
#include "absl/numeric/bits.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

bool Coalescer::Init(std::size_t cells) noexcept {
  ABSL_ASSERT(cells_ == nullptr && absl::has_single_bit(cells) &&
              cells <= kMaxCoalescerCells);
  const std::size_t bytes = cells * (sizeof(Cell) + sizeof(std::uint32_t));
  // Fresh mappings are zero: every cell starts empty. The kernel commits the
  // pages on first touch.
  void* m = mmap_alloc::Map(bytes);
  if (m == nullptr) return false;
  map_ = m;
  map_bytes_ = bytes;
  touched_ = reinterpret_cast<std::uint32_t*>(static_cast<Cell*>(m) + cells);
  table_shift_ = 64 - static_cast<std::size_t>(absl::countr_zero(cells));
  // cells_ last: it is what has_table() and a flush test, and a fork child
  // of a signal handler that interrupted this finds either no table or a
  // whole one.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  cells_ = static_cast<Cell*>(m);
  return true;
}

void Coalescer::Reset() noexcept {
  if (map_ != nullptr) mmap_alloc::Unmap(map_, map_bytes_);
  cells_ = nullptr;
  touched_ = nullptr;
  table_shift_ = 0;
  busy_ = false;
  map_bytes_ = 0;
  map_ = nullptr;
}

Coalescer& Coalescer::operator=(Coalescer&& o) noexcept {
  if (this != &o) {
    Reset();
    cells_ = std::exchange(o.cells_, nullptr);
    touched_ = std::exchange(o.touched_, nullptr);
    table_shift_ = std::exchange(o.table_shift_, 0);
    busy_ = std::exchange(o.busy_, false);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    map_ = std::exchange(o.map_, nullptr);
  }
  return *this;
}

namespace {
ABSL_CONST_INIT std::atomic<SharedRefill> g_shared_refill{nullptr};
}  // namespace

void SetSharedRefill(SharedRefill refill) noexcept {
  g_shared_refill.store(refill, std::memory_order_release);
}

MagazineCache::MagazineCache(SlabClass* cls, std::size_t capacity,
                             Coalescer* shared, void** stack,
                             std::size_t* burst_budget,
                             void** nursery) noexcept
    : burst_budget_(burst_budget), slabs_(cls) {
  const std::size_t size = cls->metadata().object_size;
  // Bursts (magazine_cache.h) for the adaptive classes at their default
  // capacity; a capacity given by the caller is fixed.
  std::size_t burst = capacity;
  if (capacity == 0) {
    capacity = MagazineCapacity(size);
    burst = MagazineBurstCapacity(size);
  } else {
    stack = nullptr;  // sized for the default capacity only
  }
  if (stack == nullptr || capacity <= kNurseryEntries) nursery = nullptr;
  // The stack is sized for the burst capacity: the kernel commits it only
  // as far as it is used, so an idle cache costs address space only.
  const std::size_t bytes = burst * sizeof(void*);
  void* m = stack;
  if (m == nullptr) {
    m = mmap_alloc::Map(bytes);
    if (m == nullptr) return;  // capacity 0: frees go straight to the slabs
    map_ = m;
    map_bytes_ = bytes;
  }
  if (shared != nullptr) {
    coalescer_ = shared;
  } else {
    std::size_t table = absl::bit_ceil(2 * capacity);
    if (table > kMaxCoalescerCells) table = kMaxCoalescerCells;
    own_coalescer_.Init(table);  // without one, flushes free runs directly
  }
  max_capacity_ = static_cast<std::uint32_t>(capacity);
  burst_capacity_ = static_cast<std::uint32_t>(burst);
  // Adaptive only up to kAdaptiveMaxSize (see magazine_cache.h).
  std::size_t min = capacity;
  if (size <= kAdaptiveMaxSize) {
    min = (std::size_t{8} << 10) / (size == 0 ? 1 : size);
    if (min < 8) min = 8;
    if (min > capacity) min = capacity;
  }
  min_capacity_ = static_cast<std::uint32_t>(min);
  if (nursery != nullptr) {
    full_stack_ = static_cast<void**>(m);
    hot_->Set(nursery, 0, static_cast<std::uint32_t>(kNurseryEntries));
  } else {
    hot_->Set(static_cast<void**>(m), 0, max_capacity_);
  }
}

void MagazineCache::Graduate(std::uint32_t capacity) noexcept {
  void** full = std::exchange(full_stack_, nullptr);
  const std::uint32_t top = hot_->top();
  void** const nursery = hot_->stack();
  for (std::uint32_t i = 0; i < top; ++i) full[i] = nursery[i];
  hot_->Set(full, top, capacity);
}

MagazineCache::~MagazineCache() { Destroy(); }

void MagazineCache::Destroy() noexcept {
  if (hot_->stack() != nullptr) {
    Flush(0);
    if (map_ != nullptr) mmap_alloc::Unmap(map_, map_bytes_);
    map_ = nullptr;
    map_bytes_ = 0;
  }
  own_coalescer_.Reset();
  coalescer_ = &own_coalescer_;
  // Empty again: both fast paths fail (a bound state outlives the cache).
  // The capacity first: SetCapacity gives a grown one back to the budget.
  SetCapacity(0);
  hot_->Set(nullptr, 0, 0);
  full_stack_ = nullptr;
  slabs_.Release();
}

void MagazineCache::TakeCoalescer(MagazineCache& o) noexcept {
  // own_coalescer_ already moved: a cache that used its own table keeps
  // using it (at its new address), one that shared a heap's keeps sharing.
  coalescer_ = o.coalescer_ == &o.own_coalescer_ ? &own_coalescer_
                                                 : o.coalescer_;
  o.coalescer_ = &o.own_coalescer_;
}

void MagazineCache::TakeHot(MagazineCache& o) noexcept {
  hot_->Set(o.hot_->stack(), o.hot_->top(), o.hot_->capacity());
  o.hot_->Set(nullptr, 0, 0);
}

MagazineCache::MagazineCache(MagazineCache&& o) noexcept
    : max_capacity_(std::exchange(o.max_capacity_, 0)),
      min_capacity_(std::exchange(o.min_capacity_, 0)),
      refills_(std::exchange(o.refills_, 0)),
      burst_capacity_(std::exchange(o.burst_capacity_, 0)),
      activity_(std::exchange(o.activity_, 0)),
      burst_budget_(std::exchange(o.burst_budget_, nullptr)),
      from_slabs_(o.from_slabs_.exchange(0, std::memory_order_relaxed)),
      to_slabs_(o.to_slabs_.exchange(0, std::memory_order_relaxed)),
      slabs_(std::move(o.slabs_)),
      own_coalescer_(std::move(o.own_coalescer_)),
      full_stack_(std::exchange(o.full_stack_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      map_(std::exchange(o.map_, nullptr)) {
  TakeCoalescer(o);
  TakeHot(o);
}

MagazineCache& MagazineCache::operator=(MagazineCache&& o) noexcept {
  if (this != &o) {
    Destroy();
    TakeHot(o);
    max_capacity_ = std::exchange(o.max_capacity_, 0);
    min_capacity_ = std::exchange(o.min_capacity_, 0);
    refills_ = std::exchange(o.refills_, 0);
    burst_capacity_ = std::exchange(o.burst_capacity_, 0);
    activity_ = std::exchange(o.activity_, 0);
    burst_budget_ = std::exchange(o.burst_budget_, nullptr);
    from_slabs_.store(o.from_slabs_.exchange(0, std::memory_order_relaxed),
                      std::memory_order_relaxed);
    to_slabs_.store(o.to_slabs_.exchange(0, std::memory_order_relaxed),
                    std::memory_order_relaxed);
    slabs_ = std::move(o.slabs_);
    own_coalescer_ = std::move(o.own_coalescer_);
    TakeCoalescer(o);
    full_stack_ = std::exchange(o.full_stack_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    map_ = std::exchange(o.map_, nullptr);
  }
  return *this;
}

void* MagazineCache::AllocSlow() noexcept {
  // Refill a quarter of the stack from the slabs in one tight loop (the
  // slab iterator hands out a bit-set word's objects without atomics), so
  // a run of allocations past an empty stack costs a pop each instead of a
  // call chain each. With capacity 0, one object.
  // A refill means this thread reuses the class: back to the full
  // magazine at once.
  ++refills_;
  // A quarter of the default capacity, also in a magazine a burst grew.
  std::size_t want = max_capacity_ / 4 > 0 ? max_capacity_ / 4 : 1;
  bool shared_refill = false;
  const std::size_t size = slabs_.metadata().object_size;
  if (in_nursery()) {
    // While the nursery has taken less than kSharedRefillBudgetBytes, it
    // refills from the shared source, a nursery's worth at most; past
    // that the thread uses the class more than lightly ("Nursery",
    // "Shared refills").
    const std::size_t taken =
        static_cast<std::size_t>(from_slabs_.load(std::memory_order_relaxed)) *
        size;
    if (taken >= kSharedRefillBudgetBytes) {
      Graduate(max_capacity_);
    } else {
      shared_refill = true;
      if (want > kNurseryEntries) want = kNurseryEntries;
    }
  }
  if (!in_nursery() && hot_->capacity() < max_capacity_) {
    hot_->SetCapacity(max_capacity_);
  }
  void* one;
  void** out = hot_->capacity() != 0 ? hot_->stack() : &one;
  std::size_t got = 0;
  if (shared_refill) {
    // A nursery's refills come from the shared source, if there is one and
    // it can serve ("Shared refills").
    const SharedRefill shared = g_shared_refill.load(std::memory_order_acquire);
    if (shared != nullptr) {
      std::size_t n = kSharedRefillBytes / (size == 0 ? 1 : size);
      n = n == 0 ? 1 : (n < want ? n : want);
      got = shared(slabs_.slab_class(), out, n);
    }
  }
  if (got == 0) got = slabs_.AllocBatch(out, want);
  if (got == 0) return nullptr;
  Add(from_slabs_, static_cast<std::int64_t>(got));
  if (hot_->capacity() == 0) return one;
  // The batch is in descending address order, so pops hand the objects
  // out in ascending order, the slab's first ones first (AllocBatch).
  // The stack was empty: it now holds got objects; hand out the top.
  hot_->SetTop(static_cast<std::uint32_t>(got - 1));
  return out[got - 1];
}

// The activity at an overflow from which the magazine grows (see "Bursts"):
// 4 refills of a quarter magazine since the last overflows, that is a
// whole magazine's worth allocated from the slabs.
constexpr std::uint32_t kBurstActivity = 4;

void MagazineCache::FreeSlow(void* p) noexcept {
  if (hot_->capacity() == 0) {
    Add(to_slabs_, 1);
    slabs_.Free(p);
    return;
  }
  if (in_nursery()) {
    // The nursery is full: the thread caches more of the class than it
    // holds. A thread that has only freed objects of the class so far
    // starts at the free-only minimum (see "Nursery"), unless that minimum
    // is no larger than the nursery (the 256-byte class: 32 objects) and
    // would leave no room for p. (Above 256 B the minimum is the default.)
    const bool free_only = from_slabs_.load(std::memory_order_relaxed) == 0;
    Graduate(free_only && min_capacity_ > kNurseryEntries ? min_capacity_
                                                          : max_capacity_);
    const bool moved = TryFree(p);
    ABSL_ASSERT(moved);
    (void)moved;
    return;
  }
  activity_ = activity_ / 2 + refills_;
  refills_ = 0;
  const std::uint32_t capacity = hot_->capacity();
  if (activity_ == 0 && capacity > min_capacity_) {
    // Free-only for a while: hold less. The flush comes first, so that the
    // top never exceeds the capacity (MagazineHot's invariant).
    const std::uint32_t half = capacity / 2;
    const std::uint32_t less = half > min_capacity_ ? half : min_capacity_;
    Flush(less / 2);
    SetCapacity(less);
  } else {
    if (activity_ >= kBurstActivity && capacity < burst_capacity_) {
      // A burst: this thread frees what it allocated in many refills. Hold
      // more, so that the next round runs out of the magazine.
      Grow();
    }
    Flush(hot_->capacity() / 2);
  }
  const bool cached = TryFree(p);
  ABSL_ASSERT(cached);
  (void)cached;
}

// The capacity above max_capacity_: what the cache holds of its budget.
std::size_t MagazineCache::Grown(std::uint32_t capacity) const noexcept {
  return capacity > max_capacity_ ? capacity - max_capacity_ : 0;
}

void MagazineCache::SetCapacity(std::uint32_t capacity) noexcept {
  const std::size_t before = Grown(hot_->capacity()), after = Grown(capacity);
  if (burst_budget_ != nullptr && after != before) {
    const std::size_t size = slabs_.metadata().object_size;
    // Grow checked the room; a shrink gives back what this cache held.
    *burst_budget_ = *burst_budget_ + before * size - after * size;
  }
  hot_->SetCapacity(capacity);
}

void MagazineCache::Grow() noexcept {
  std::uint32_t want = hot_->capacity() * 2;
  if (want > burst_capacity_) want = burst_capacity_;
  if (burst_budget_ != nullptr) {
    // The room: what the budget has left, plus what this cache holds.
    const std::size_t size = slabs_.metadata().object_size;
    const std::size_t room = *burst_budget_ / size + Grown(hot_->capacity());
    if (want > max_capacity_ + room) {
      want = static_cast<std::uint32_t>(max_capacity_ + room);
    }
  }
  if (want > hot_->capacity()) SetCapacity(want);
}

void MagazineCache::Flush(std::size_t from) noexcept {
  const std::size_t top = hot_->top();
  if (top <= from) return;
  Add(to_slabs_, static_cast<std::int64_t>(top - from));
  // Every cached object is of this cache's class, so the layout comes from
  // the class, not from each slab's header (64 KiB-aligned headers share
  // cache sets; reading one per object missed).
  const SlabMetadata& m = slabs_.metadata();
  const std::uintptr_t page_mask = ~(std::uintptr_t{m.page_size} - 1);
  const std::size_t objects_offset = m.objects_offset;
  const std::size_t shift = m.granule_shift;
  // Locals, so that the loop keeps them in registers across the rare
  // collision frees.
  void** const stack = hot_->stack();
  Coalescer& co = *coalescer_;
  using Cell = Coalescer::Cell;
  // No table, or one that an interrupted flush is using (see "The
  // Coalescer"): every run is freed at once.
  const bool use_table = co.cells_ != nullptr && !co.busy_;
  if (use_table) {
    co.busy_ = true;
    // Ordered before the table's use as a signal handler on this thread
    // sees it (no other thread reads it).
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  Cell* const cells = co.cells_;
  std::uint32_t* const touched = co.touched_;
  const std::size_t table_shift = co.table_shift_;
  std::size_t n_touched = 0;
  // A run of objects in one bit-set word (objects freed in allocation order,
  // the common case) is merged in registers and enters the table once.
  auto commit = [&](Slab* s, std::size_t word, std::uint64_t mask) {
    if (ABSL_PREDICT_FALSE(!use_table)) {
      slabs_.BulkFree(s, word, mask);
      return;
    }
    // Fibonacci hashing of the bit-set word's address (the reference's
    // ((p >> 3) >> 18) * (p >> 3) left the low bits of nearby words equal).
    const std::uint64_t key = (reinterpret_cast<std::uintptr_t>(s) >> 3) + word;
    const std::size_t idx =
        static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> table_shift);
    Cell& c = cells[idx];
    if (c.slab == nullptr) {
      c = Cell{s, word, mask};
      touched[n_touched++] = static_cast<std::uint32_t>(idx);
    } else if (c.slab == s && c.word == word) {
      // The same object twice in one batch is a double free; the OR keeps
      // one, which is what a double free of a free object does anyway.
      c.mask |= mask;
    } else {
      slabs_.BulkFree(s, word, mask);  // collision: free this run at once
    }
  };
  Slab* run_slab = nullptr;
  std::size_t run_word = 0;
  std::uint64_t run_mask = 0;
  for (std::size_t i = from; i < top; ++i) {
    void* p = stack[i];
    const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    Slab* s = reinterpret_cast<Slab*>(a & page_mask);
    const std::size_t bit = ((a & ~page_mask) - objects_offset) >> shift;
    const std::size_t word = bit / kBitsPerWord;
    const std::uint64_t mask = std::uint64_t{1} << (bit % kBitsPerWord);
    ABSL_ASSERT(word == s->PositionOf(p).word &&
                mask == s->PositionOf(p).mask);
    if (s == run_slab && word == run_word) {
      run_mask |= mask;
      continue;
    }
    if (run_slab != nullptr) commit(run_slab, run_word, run_mask);
    run_slab = s;
    run_word = word;
    run_mask = mask;
  }
  if (run_slab != nullptr) commit(run_slab, run_word, run_mask);
  for (std::size_t k = 0; k < n_touched; ++k) {
    Cell& c = cells[touched[k]];
    slabs_.BulkFree(c.slab, c.word, c.mask);
    c = Cell{nullptr, 0, 0};
  }
  if (use_table) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    co.busy_ = false;
  }
  hot_->SetTop(static_cast<std::uint32_t>(from));
}

}  // namespace elfmalloc
