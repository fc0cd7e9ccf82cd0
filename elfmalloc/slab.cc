// Slab initialisation and the transition logic shared by Free and BulkFree;
// the protocol is documented in slab.h.
#include "elfmalloc/slab.h"

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>

#include "absl/base/macros.h"

namespace elfmalloc {

Slab* Slab::Init(void* page, const SlabMetadata* meta, AllocType type,
                 std::uint8_t tag) noexcept {
  ABSL_ASSERT(meta != nullptr && meta->valid());
  ABSL_ASSERT(reinterpret_cast<std::uintptr_t>(page) % meta->page_size == 0);
  // The stamp (the header's first word) is only ever stored to atomically,
  // never constructed: on a 2 MiB boundary it classifies the pointers of the
  // sibling slabs of its group, which other threads may be freeing right now,
  // so it must not read as anything but `type` even transiently. (A
  // placement-new of the whole Slab value-initialised it to 0 first: a
  // concurrent free into a sibling slab could read kUnstamped, and TSan
  // reports the race: GeneralAllocatorTest.ConcurrentProducerConsumer,
  // SlabTest.ReinitialisingAGroupsFirstSlabKeepsItsStamp.) The other header
  // atomics are constructed in place; nothing is allocated.
  WriteAllocType(page, type);
  Slab* s = static_cast<Slab*>(page);
  if (tag != kNoTag && meta->page_size >= kTagGranule) {
    // This slab's bytes of its region's tag table (alloc_type.h).
    WriteRegionTags(page, meta->page_size, tag);
  }
  ::new (&s->meta_) std::atomic<const SlabMetadata*>(meta);
  ::new (&s->state_) std::atomic<std::uint64_t>(
      static_cast<std::uint64_t>(meta->n_objects) << kCountShift);
  ::new (&s->handle_) std::atomic<std::uintptr_t>(0);
  char* words = static_cast<char*>(page) + kSlabHeaderSize;
  for (std::size_t w = 0; w < meta->bitset_words; ++w) {
    ::new (words + w * sizeof(std::uint64_t))
        std::atomic<std::uint64_t>(meta->InitialWord(w));
  }
  return s;
}

Slab::LocalIter::LocalIter(Slab* slab) noexcept
    : slab_(slab),
      objects_(reinterpret_cast<char*>(slab) +
               slab->metadata()->objects_offset),
      shift_(slab->metadata()->granule_shift),
      words_(slab->metadata()->bitset_words),
      low_first_(slab->metadata()->page_size >= kLowFirstMinPage) {}

Slab::ClaimResult Slab::ClaimAvailable() noexcept {
  const std::uint64_t prev =
      state_.fetch_or(kClaimedBit, std::memory_order_acq_rel);
  if ((prev & kClaimedBit) != 0) return ClaimResult::kWasClaimed;
  // Every object free and the completing free not done: it may still read
  // the slab (its revoke), so only it may give the page back, and it will,
  // since its done step now sees our claimed bit. A count of n here always
  // has a completing free in this period: the slab was AVAILABLE (count >=
  // cutoff, not n: a period never starts wholly free, see Unclaim's callers),
  // so the free that reached n reported kBecameFull.
  if (CountOf(prev) == static_cast<std::int64_t>(metadata()->n_objects) &&
      (prev & kDoneBit) == 0) {
    return ClaimResult::kCompleting;
  }
  return ClaimResult::kClaimed;
}

FreeResult Slab::AddAvailable(std::uint64_t k) noexcept {
  // acq_rel: release publishes this freer's bit (and object accesses) to
  // whoever later decides a transition; acquire lets the thread that sees the
  // count reach n inherit every earlier freer's accesses before recycling.
  const std::uint64_t prev =
      state_.fetch_add(k << kCountShift, std::memory_order_acq_rel);
  if ((prev & kClaimedBit) != 0) return FreeResult::kNone;
  const SlabMetadata* m = metadata();
  const std::int64_t n = static_cast<std::int64_t>(m->n_objects);
  const std::int64_t cutoff = static_cast<std::int64_t>(m->cutoff_objects);
  const std::int64_t before = CountOf(prev);
  const std::int64_t after = before + static_cast<std::int64_t>(k);
  ABSL_ASSERT(after <= n);
  // FULL is checked first, so a free that both crosses the cutoff and
  // completes the slab reports FULL (QUIRK fix, see slab.h).
  if (after == n) {
    return before >= cutoff ? FreeResult::kBecameFull
                            : FreeResult::kBecameFullUnlisted;
  }
  if (before < cutoff && after >= cutoff) return FreeResult::kBecameAvailable;
  return FreeResult::kNone;
}

FreeResult Slab::BulkFree(std::uint64_t mask, std::size_t word) noexcept {
  ABSL_ASSERT(word < metadata()->bitset_words);
  ABSL_ASSERT((mask & ~metadata()->InitialWord(word)) == 0);
  if (mask == 0) return FreeResult::kNone;
  const std::uint64_t prev =
      Bitset()[word].fetch_or(mask, std::memory_order_release);
  const std::uint64_t fresh = mask & ~prev;
  if (fresh == 0) return FreeResult::kDoubleFree;
  return AddAvailable(static_cast<std::uint64_t>(std::popcount(fresh)));
}

}  // namespace elfmalloc
