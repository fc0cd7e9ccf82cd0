// SlabAllocator: refresh, remote-free transitions and the release policy.
// The protocol and the race-freedom arguments are in slab_allocator.h and
// slab.h; each step below names the transition it makes.
#include "elfmalloc/slab_allocator.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/optimization.h"
#include "mmap_alloc/mmap_alloc.h"

namespace elfmalloc {

SlabClass::SlabClass(PageAlloc* pages, const Options& o) noexcept
    : pages_(pages),
      meta_(ComputeMetadata(
          o.object_size, pages->page_size(), o.cutoff,
          o.usable_size == 0 ? pages->page_size() : o.usable_size,
          o.zero_object_tails ? sizeof(std::uint64_t) : 0)),
      bag_arena_(o.bag_arena),
      bag_queues_(o.available_queues) {
  if (bag_arena_ == nullptr) {
    // A block of its own: built now, so that running out of memory shows
    // in valid().
    available_ = AvailableBag(bag_queues_);
    bag_state_.store(kBagBuilt, std::memory_order_relaxed);
  }
  if (!pages->valid() || !meta_.valid()) return;
  if (bag_arena_ == nullptr && !available_.valid()) return;
  const std::size_t usable = meta_.usable_size < meta_.page_size
                                 ? meta_.usable_size
                                 : meta_.page_size;
  uncommit_on_free_ = usable >= o.eager_uncommit_threshold;
  tag_ = o.tag;
  zero_object_tails_ = o.zero_object_tails;
  keep_previous_slab_ = o.keep_previous_slab;
  header_survives_uncommit_ =
      kSlabHeaderSize + meta_.bitset_words * sizeof(std::uint64_t) <=
      mmap_alloc::PageSize();
  valid_ = true;
}

void SlabClass::BuildBag() noexcept {
  // kBagNone also after ResetBagInForkChild, in a child whose parent had
  // another thread building it.
  for (std::uint32_t s = bag_state_.load(std::memory_order_acquire);
       s != kBagBuilt; s = bag_state_.load(std::memory_order_acquire)) {
    if (s == kBagNone &&
        bag_state_.compare_exchange_strong(s, kBagBuilding,
                                           std::memory_order_acquire)) {
      // In a block of the arena the bag cannot fail to build. An arena
      // holds a block for every class it serves and spares (BagArena);
      // should it run out, the bag takes a bsalloc block of its own.
      if (bag_storage_ == nullptr) bag_storage_ = bag_arena_->Take();
      available_ = bag_storage_ != nullptr
                       ? AvailableBag(bag_queues_, {}, bag_storage_)
                       : AvailableBag(bag_queues_);
      bag_state_.store(kBagBuilt, std::memory_order_release);
      return;
    }
  }
}

SlabClass::~SlabClass() {
  if (!valid_) return;
  if (bag_state_.load(std::memory_order_acquire) != kBagBuilt) {
    return;  // never used: no slab was ever listed
  }
  // No SlabAllocator is left, so nothing races with this drain. A listed
  // slab is normally not wholly free (a free completing it revokes it and
  // returns its page), except when that revoke lost the race with the
  // listing push (slab.h, AVAILABLE -> FULL): such slabs go back here.
  auto bag = available_.NewHandle();
  auto pages = pages_->NewHandle();
  Slab* s = nullptr;
  while (bag.Pop(&s)) {
    if (s->AvailableCount() == static_cast<std::int64_t>(meta_.n_objects)) {
      pages.Free(s, uncommit_on_free_);
      pages_in_use_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

SlabAllocator::SlabAllocator(SlabClass* cls) noexcept
    : cls_(cls),
      pages_(cls->pages_->NewHandle()),
      available_(cls->available().NewHandle()) {}

SlabAllocator::SlabAllocator(SlabAllocator&& o) noexcept
    : cls_(std::exchange(o.cls_, nullptr)),
      current_(std::exchange(o.current_, nullptr)),
      iter_(std::exchange(o.iter_, Slab::LocalIter())),
      previous_(std::exchange(o.previous_, nullptr)),
      previous_iter_(std::exchange(o.previous_iter_, Slab::LocalIter())),
      pages_(std::move(o.pages_)),
      available_(std::move(o.available_)) {}

SlabAllocator& SlabAllocator::operator=(SlabAllocator&& o) noexcept {
  if (this != &o) {
    Release();
    cls_ = std::exchange(o.cls_, nullptr);
    current_ = std::exchange(o.current_, nullptr);
    iter_ = std::exchange(o.iter_, Slab::LocalIter());
    previous_ = std::exchange(o.previous_, nullptr);
    previous_iter_ = std::exchange(o.previous_iter_, Slab::LocalIter());
    pages_ = std::move(o.pages_);
    available_ = std::move(o.available_);
  }
  return *this;
}

void* SlabAllocator::AllocSlow() noexcept {
  if (cls_ == nullptr) return nullptr;  // default-constructed
  // Refresh always yields a slab with an available object: its count is at
  // least the cutoff (>= 1), and the count never exceeds the set bits (a
  // free sets its bit before counting it; the owner clears bits before
  // uncounting them). The second attempt is only defensive; exhaustion is
  // reported as nullptr, never a crash (the reference panicked).
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!Refresh()) return nullptr;
    if (void* p = iter_.Next()) return p;
  }
  return nullptr;
}

bool SlabAllocator::Refresh() noexcept {
  // Once per slab's worth of allocations: drives the page allocator's decay
  // rule even when slabs circulate through the available bag only.
  pages_.Tick();
  const SlabMetadata& m = cls_->meta_;
  const auto cutoff = static_cast<std::int64_t>(m.cutoff_objects);
  if (current_ != nullptr && cls_->keep_previous_slab_ &&
      current_->AvailableCount() < cutoff) {
    // Few objects came back: keep the slab claimed as the previous one,
    // which the next batches take from first ("The previous slab"); the one
    // before it goes. (The count read here only decides which slab to
    // keep; Release of either is the usual unclaim.)
    if (previous_ != nullptr) ReleaseSlab(previous_, previous_iter_);
    previous_ = current_;
    previous_iter_ = current_->Iterate();
    current_ = nullptr;
    iter_ = Slab::LocalIter();
  }
  if (current_ != nullptr) {
    // CLAIMED -> unclaimed, by the owner (us). The iterator is exhausted, so
    // there is nothing pending to give back.
    Slab* const mine = current_;
    current_ = nullptr;
    iter_ = Slab::LocalIter();
    const Slab::UnclaimResult r = mine->Unclaim();
    ABSL_RAW_CHECK(r.was_claimed, "current slab was not claimed");
    if (r.count == static_cast<std::int64_t>(m.n_objects)) {
      // Every object came back while we owned it: no free can follow, and
      // the slab is in no bag, so it is ours alone.
      mine->Adopt();
      current_ = mine;
      iter_ = mine->Iterate();
      return true;
    }
    if (r.count >= cutoff) {
      // Enough objects came back while we owned it. No free can have listed
      // it (frees see the claimed bit until our Unclaim, and later ones
      // start from a count >= cutoff, so none crosses it). A free that
      // completes it meanwhile reports kBecameFull, and its revoke fails
      // (never listed): then whichever of its done step and our claim comes
      // second in the state word's order decides (slab.h, "The completing
      // free").
      switch (mine->ClaimAvailable()) {
        case Slab::ClaimResult::kClaimed:
          current_ = mine;
          iter_ = mine->Iterate();
          return true;
        case Slab::ClaimResult::kCompleting:
          break;  // the completing free gives its page back
        case Slab::ClaimResult::kWasClaimed:
          ABSL_RAW_LOG(FATAL, "re-claim of an unlisted slab failed");
      }
    }
    // Otherwise FLOATING: the slab belongs to its objects now; the free that
    // brings the count back to the cutoff lists it.
  }
  Slab* s = nullptr;
  while (available_.Pop(&s)) {
    // AVAILABLE -> CLAIMED: the bag gave this listing to us alone, and a
    // revoke of it now fails (exactly one of pop and revoke wins), so nobody
    // else claims it. If its completing free is still acting on it, that
    // free returns the page and we look further.
    const Slab::ClaimResult c = s->ClaimAvailable();
    if (c == Slab::ClaimResult::kClaimed) break;
    ABSL_RAW_CHECK(c == Slab::ClaimResult::kCompleting,
                   "slab popped from the available bag was claimed");
    s = nullptr;
  }
  if (s == nullptr) {
    void* page = pages_.Alloc();
    if (page == nullptr) return false;
    cls_->pages_in_use_.fetch_add(1, std::memory_order_relaxed);
    s = static_cast<Slab*>(page);
    // The page is exclusively ours. A page this class returned FULL is still
    // a valid wholly free slab of this layout (count n, every bit set,
    // handle 0; its claimed and done bits are whatever its last period left,
    // and Adopt resets them): reuse it as is, unless its bit-set may have
    // been uncommitted (then it reads as zeroes).
    const SlabMetadata* old_layout = s->metadata();
    if (old_layout != &m || !cls_->header_survives_uncommit_ ||
        s->AvailableCount() != static_cast<std::int64_t>(m.n_objects)) {
      s = Slab::Init(page, &m, cls_->pages_->type(), cls_->tag_);
      if (cls_->zero_object_tails_ && old_layout != nullptr &&
          old_layout != &m) {
        ZeroObjectTails(page, m);
      }
    }
    s->Adopt();
  }
  current_ = s;
  iter_ = s->Iterate();
  return true;
}

void SlabAllocator::ZeroObjectTails(void* page, const SlabMetadata& m) noexcept {
  // The page is exclusively ours and holds no object: plain stores. With
  // zero_object_tails the layout has guard words (ComputeMetadata's
  // guard_bytes): the word before object 0 and the one after the last
  // object are those, never the bit-set.
  char* const objects = static_cast<char*>(page) + m.objects_offset;
  char* last = objects - sizeof(std::uint64_t);
  for (std::size_t i = 0; i <= m.n_objects; ++i, last += m.object_size) {
    std::memset(last, 0, sizeof(std::uint64_t));
  }
  std::memset(objects + m.n_objects * m.object_size, 0,
              sizeof(std::uint64_t));
}

void SlabAllocator::OnFree(Slab* s, FreeResult r) noexcept {
  switch (r) {
    case FreeResult::kNone:
    case FreeResult::kDoubleFree:  // ignored: nothing changed
      return;
    case FreeResult::kBecameAvailable:
      // FLOATING -> AVAILABLE: our free was the one that crossed the cutoff
      // while unclaimed, so we alone list it. If the push fails (out of
      // memory) the slab floats until a free completes it (then the revoke
      // fails and it stays mapped): memory is lost, nothing is corrupted.
      available_.Push(s);
      return;
    case FreeResult::kBecameFull:
      // AVAILABLE -> FULL, we are the completing free (slab.h). Until our
      // done step, no period of this slab can end, so the revoke can only
      // remove this period's listing. Success proves that no popper has or
      // will get it: the page is ours to return. Failure: a popper got the
      // listing or its push has not landed (the slab is then listed wholly
      // free and reused from the bag), or the owner is re-claiming it; the
      // done step tells whether that claimer already met the slab and left
      // it to us.
      if (SlabClass::AvailableBag::Revoke(s) || s->CompletingFreeDone()) {
        ReturnPage(s);
      }
      return;
    case FreeResult::kBecameFullUnlisted:
      // FLOATING -> FULL: never listed in this period, so nobody else can
      // reach it.
      ReturnPage(s);
      return;
  }
}

void SlabAllocator::ReturnPage(Slab* s) noexcept {
  cls_->pages_in_use_.fetch_sub(1, std::memory_order_relaxed);
  pages_.Free(s, cls_->uncommit_on_free_);
}

void SlabAllocator::Release() noexcept {
  if (current_ == nullptr && previous_ == nullptr) return;
  pages_.Tick();
  if (current_ != nullptr) {
    Slab* const s = std::exchange(current_, nullptr);
    ReleaseSlab(s, iter_);
  }
  if (previous_ != nullptr) {
    Slab* const s = std::exchange(previous_, nullptr);
    ReleaseSlab(s, previous_iter_);
  }
}

void SlabAllocator::ReleaseSlab(Slab* s, Slab::LocalIter& it) noexcept {
  // Objects the iterator took but never handed out go back first (the slab
  // is still claimed, so this makes no transition).
  const Slab::LocalIter::Remaining rest = it.TakeRemaining();
  it = Slab::LocalIter();
  if (rest.mask != 0) s->BulkFree(rest.mask, rest.word);
  // CLAIMED -> unclaimed, by the owner.
  const Slab::UnclaimResult r = s->Unclaim();
  ABSL_RAW_CHECK(r.was_claimed, "released slab was not claimed");
  const SlabMetadata& m = cls_->meta_;
  if (r.count == static_cast<std::int64_t>(m.n_objects)) {
    // Wholly free: no object is live and every freer is done (slab.h's
    // proof), so nobody else can touch it.
    ReturnPage(s);
  } else if (r.count >= static_cast<std::int64_t>(m.cutoff_objects)) {
    // AVAILABLE: no free will cross the cutoff (the count is already past
    // it), so we list it. A free completing it before our push lands
    // reports kBecameFull and its revoke fails: the slab is listed wholly
    // free, which is fine (it is reused, or returned by ~SlabClass).
    available_.Push(s);
  }
  // Otherwise FLOATING: the free that crosses the cutoff lists it.
}

}  // namespace elfmalloc
