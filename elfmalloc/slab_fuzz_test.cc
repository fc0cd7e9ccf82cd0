// Operation-sequence fuzz test of Slab (slab.h) against a simple model.
//
// One entry function, SlabFuzzOne, decodes bytes into a slab layout (page
// size, object size, cutoff factor) and a sequence of single-threaded
// operations on one Slab, and checks every result against a model that
// knows, per object, whether it is free (its bit is set), pending (taken
// from the bit-set by the owner's iterator but not yet returned by Next) or
// live (handed out), plus the claimed flag and the iterator's position:
//   Claim / Unclaim (returned flag and count), ClaimAvailable and
//   CompletingFreeDone (the completing-free handshake, against the model's
//   claimed and done bits), Iterate and Next (exactly the
//   lowest object of the next non-empty word, in order; nullptr at the end),
//   TakeRemaining + BulkFree of the iterator's pending objects (the owner
//   letting go), Free of a live object and of an already free one (double
//   free), BulkFree of any subset of one word's live and free objects, and
//   re-initialising a wholly free slab with another layout. After each free
//   the FreeResult must be the transition the state machine of slab.h
//   prescribes for the model's exact before/after counts (claimed: kNone;
//   reaching n: kBecameFull if it was at or above the cutoff, else
//   kBecameFullUnlisted; crossing the cutoff: kBecameAvailable; nothing
//   fresh: kDoubleFree). AvailableCount and IsClaimed must match the model
//   at every check; live objects carry a pattern (whole object up to 256
//   bytes, else both ends) that must survive every slab operation, so a
//   bit-set or header write that lands in an object is caught; Find and the
//   AllocType stamp must classify every object.
//
// Drivers: the tests below (seeded random inputs; under every config,
// ASan/UBSan and TSan included), and libFuzzer (built with
// -DALLOCATORS_LIBFUZZER by elfc/build_fuzzers.sh, which then defines
// LLVMFuzzerTestOneInput instead of the tests).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "elfmalloc/alloc_type.h"
#include "elfmalloc/size_classes.h"
#include "elfmalloc/slab.h"
#include "elfmalloc/slab_metadata.h"
#include "mmap_alloc/mmap_alloc.h"

#ifndef ALLOCATORS_LIBFUZZER
#include "gtest/gtest.h"
#endif

namespace elfmalloc {
namespace {

#define SLAB_FUZZ_CHECK(cond, ...)                                         \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "slab_fuzz: FAILED %s:%d: CHECK(%s): ", __FILE__, \
                   __LINE__, #cond);                                       \
      std::fprintf(stderr, __VA_ARGS__);                                   \
      std::fprintf(stderr, "\n");                                          \
      std::abort();                                                        \
    }                                                                      \
  } while (0)

class Reader {
 public:
  Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  std::uint8_t Byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint16_t U16() {
    const std::uint16_t lo = Byte();
    return static_cast<std::uint16_t>(lo | (Byte() << 8));
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

// Two 2 MiB-aligned pages (one per page size), mapped once: a 256 KiB slab
// at the start of a 2 MiB group is that group's stamp, as in elfmalloc.
void* PageFor(std::size_t page_size) {
  static void* const small_page = [] {
    mmap_alloc::MapOptions o;
    o.align = kStampAlignment;
    return mmap_alloc::Map(kStampAlignment, o);
  }();
  static void* const medium_page = [] {
    mmap_alloc::MapOptions o;
    o.align = kMediumPageSize;
    return mmap_alloc::Map(kMediumPageSize, o);
  }();
  return page_size == kMediumPageSize ? medium_page : small_page;
}

enum class State : std::uint8_t { kFree, kPending, kLive };

// What the inputs did (the seeded tests check that every transition of the
// state machine was exercised).
struct Counts {
  std::uint64_t ops = 0;
  std::uint64_t layouts = 0;
  std::uint64_t taken = 0;  // objects returned by Next
  std::uint64_t results[5] = {};  // by FreeResult
};
Counts g_counts;

void Count(FreeResult r) { ++g_counts.results[static_cast<int>(r)]; }

class SlabModel {
 public:
  explicit SlabModel(Reader& r) : r_(r) {}

  void Run() {
    if (!NewLayout()) return;
    int ops = 0;
    while (!r_.done() && ops++ < 3000) {
      ++g_counts.ops;
      Step();
    }
    // Nothing to clean up: the page is re-initialised by the next input.
  }

 private:
  static constexpr std::size_t kNone = ~std::size_t{0};

  // Picks a layout and initialises the slab with every object free.
  bool NewLayout() {
    const std::uint8_t b = r_.Byte();
    // 32 KiB pages (no general allocator class uses them) keep the
    // sequential iterator covered; the others are low-first.
    std::size_t page = (b & 1) != 0   ? kMediumPageSize
                       : (b & 4) != 0 ? kLowFirstMinPage / 2
                                      : kSmallPageSize;
    std::size_t size;
    if ((b & 2) != 0) {
      const SizeClass c(static_cast<std::uint8_t>(r_.Byte() % kNumSizeClasses));
      size = ClassSize(c);
      page = ClassPageSize(c);
    } else {
      // Any size, at most a quarter of the page.
      size = 1 + r_.U16() % (page / 4);
    }
    static constexpr double kCutoffs[] = {0.01, 0.1, 0.25, 0.5, 0.6,
                                          0.75, 0.9, 0.99, 1.0};
    const double cutoff = kCutoffs[r_.Byte() % std::size(kCutoffs)];
    const SlabMetadata m = ComputeMetadata(size, page, cutoff, page);
    if (!m.valid()) return false;
    meta_ = m;
    type_ = page == kMediumPageSize ? AllocType::kMediumSlab
                                    : AllocType::kSmallSlab;
    Reinit();
    ++g_counts.layouts;
    return true;
  }

  // Initialises the slab with the current layout, every object free.
  void Reinit() {
    slab_ = Slab::Init(PageFor(meta_.page_size), &meta_, type_);
    SLAB_FUZZ_CHECK(slab_ == PageFor(meta_.page_size),
                    "Init returned another address");
    n_ = meta_.n_objects;
    cutoff_ = meta_.cutoff_objects;
    state_.assign(n_, State::kFree);
    keys_.assign(n_, 0);
    live_pos_.assign(n_, kNone);
    live_.clear();
    pending_.clear();
    pending_head_ = 0;
    count_ = static_cast<std::int64_t>(n_);
    claimed_ = false;
    done_ = false;
    iter_valid_ = false;
  }

  std::size_t BitOf(std::size_t i) const { return i * meta_.bits_per_object; }
  std::size_t WordOf(std::size_t i) const { return BitOf(i) / kBitsPerWord; }
  std::uint64_t MaskOf(std::size_t i) const {
    return std::uint64_t{1} << (BitOf(i) % kBitsPerWord);
  }
  // The objects whose bit lies in word w: [*first, *last), possibly empty.
  void ObjectsInWord(std::size_t w, std::size_t* first,
                     std::size_t* last) const {
    const std::size_t bpo = meta_.bits_per_object;
    *first = std::min(n_, (w * kBitsPerWord + bpo - 1) / bpo);
    *last = std::min(n_, ((w + 1) * kBitsPerWord + bpo - 1) / bpo);
  }

  // ------------------------------------------------ per-object bookkeeping

  // Live objects are kept in a vector (with each one's position) so that a
  // random one is found in O(1) even on slabs of 200 000 objects; pending
  // objects all lie in the word the iterator loaded last, in order.
  void MakeLive(std::size_t i) {
    state_[i] = State::kLive;
    live_pos_[i] = live_.size();
    live_.push_back(i);
    WritePattern(i);
  }
  void MakeFreeFromLive(std::size_t i) {
    const std::size_t pos = live_pos_[i];
    live_[pos] = live_.back();
    live_pos_[live_[pos]] = pos;
    live_.pop_back();
    live_pos_[i] = kNone;
    state_[i] = State::kFree;
    ++count_;
  }
  std::size_t PendingCount() const { return pending_.size() - pending_head_; }

  // --------------------------------------------------------- patterns

  void WritePattern(std::size_t i) {
    char* p = static_cast<char*>(slab_->ObjectAt(i));
    const std::uint64_t k = (++seed_ * 0x9e3779b97f4a7c15ULL) ^ i;
    keys_[i] = k;
    const std::size_t sz = meta_.object_size;
    if (sz <= 256) {
      for (std::size_t j = 0; j < sz; ++j) {
        p[j] = static_cast<char>(k >> (8 * (j % 8)));
      }
    } else {
      std::memcpy(p, &k, 8);
      std::memcpy(p + sz - 8, &k, 8);
    }
  }

  void CheckPattern(std::size_t i) const {
    const char* p = static_cast<const char*>(slab_->ObjectAt(i));
    const std::uint64_t k = keys_[i];
    const std::size_t sz = meta_.object_size;
    if (sz <= 256) {
      for (std::size_t j = 0; j < sz; ++j) {
        SLAB_FUZZ_CHECK(p[j] == static_cast<char>(k >> (8 * (j % 8))),
                        "object %zu (size %zu) corrupted at byte %zu", i, sz,
                        j);
      }
    } else {
      std::uint64_t a, z;
      std::memcpy(&a, p, 8);
      std::memcpy(&z, p + sz - 8, 8);
      SLAB_FUZZ_CHECK(a == k && z == k, "object %zu (size %zu) corrupted", i,
                      sz);
    }
  }

  // ------------------------------------------------------- transitions

  // The FreeResult the state machine prescribes for k fresh frees.
  FreeResult Expected(std::int64_t k) const {
    if (claimed_) return FreeResult::kNone;
    const std::int64_t n = static_cast<std::int64_t>(n_);
    const std::int64_t cutoff = static_cast<std::int64_t>(cutoff_);
    const std::int64_t before = count_;
    const std::int64_t after = before + k;
    if (after == n) {
      return before >= cutoff ? FreeResult::kBecameFull
                              : FreeResult::kBecameFullUnlisted;
    }
    if (before < cutoff && after >= cutoff) return FreeResult::kBecameAvailable;
    return FreeResult::kNone;
  }

  // After a free made the slab wholly free while unclaimed, the freer owns
  // the page: sometimes it is re-initialised (with another layout), as the
  // allocator would recycle it.
  void AfterFree(FreeResult got) {
    if ((got == FreeResult::kBecameFull ||
         got == FreeResult::kBecameFullUnlisted) &&
        (r_.Byte() & 3) == 0) {
      if (!NewLayout()) Reinit();
    }
  }

  // --------------------------------------------------------- operations

  void OpClaim() {
    const bool got = slab_->Claim();
    SLAB_FUZZ_CHECK(got == !claimed_, "Claim() = %d with claimed = %d", got,
                    claimed_);
    claimed_ = true;
  }

  // slab.h, "The completing free": a claim of an AVAILABLE slab meets a
  // completing free still at work iff every object is free and the done bit
  // is not set; it sets the claimed bit either way.
  void OpClaimAvailable() {
    const Slab::ClaimResult got = slab_->ClaimAvailable();
    const Slab::ClaimResult want =
        claimed_ ? Slab::ClaimResult::kWasClaimed
        : count_ == static_cast<std::int64_t>(n_) && !done_
            ? Slab::ClaimResult::kCompleting
            : Slab::ClaimResult::kClaimed;
    SLAB_FUZZ_CHECK(got == want, "ClaimAvailable() = %d, model %d",
                    static_cast<int>(got), static_cast<int>(want));
    claimed_ = true;
    if (got == Slab::ClaimResult::kCompleting) {
      // The claimer leaves the slab; the completing free's done step finds
      // its claim and takes the page, which the allocator adopts again.
      OpCompletingFreeDone();
    }
  }

  // The completing free's done step: sets the done bit, reports the
  // claimed bit. When it reports a claim on a wholly free slab, the freer
  // owns the page: it goes back and comes out again adopted.
  void OpCompletingFreeDone() {
    const bool got = slab_->CompletingFreeDone();
    SLAB_FUZZ_CHECK(got == claimed_, "CompletingFreeDone() = %d, claimed %d",
                    got, claimed_);
    done_ = true;
    if (got && count_ == static_cast<std::int64_t>(n_) && !iter_valid_) {
      slab_->Adopt();
      claimed_ = true;
      done_ = false;
    }
  }

  // The owner lets go: pending objects go back first (TakeRemaining +
  // BulkFree, as the allocator does), then Unclaim.
  void OpUnclaim() {
    if (claimed_ && iter_valid_) ReturnPending();
    const Slab::UnclaimResult u = slab_->Unclaim();
    SLAB_FUZZ_CHECK(u.was_claimed == claimed_, "Unclaim().was_claimed = %d",
                    u.was_claimed);
    SLAB_FUZZ_CHECK(u.count == count_, "Unclaim().count = %lld, model %lld",
                    static_cast<long long>(u.count),
                    static_cast<long long>(count_));
    claimed_ = false;
    done_ = false;  // Unclaim ends the period
    iter_valid_ = false;
    if (count_ == static_cast<std::int64_t>(n_) && (r_.Byte() & 1) != 0) {
      if (!NewLayout()) Reinit();
    }
  }

  void ReturnPending() {
    const Slab::LocalIter::Remaining rem = iter_.TakeRemaining();
    std::uint64_t want = 0;
    std::size_t word = 0;
    for (std::size_t k = pending_head_; k < pending_.size(); ++k) {
      want |= MaskOf(pending_[k]);
      word = WordOf(pending_[k]);
    }
    SLAB_FUZZ_CHECK(rem.mask == want, "TakeRemaining mask %#llx, model %#llx",
                    static_cast<unsigned long long>(rem.mask),
                    static_cast<unsigned long long>(want));
    if (want == 0) return;
    SLAB_FUZZ_CHECK(rem.word == word, "TakeRemaining word %zu, model %zu",
                    rem.word, word);
    const FreeResult got = slab_->BulkFree(rem.mask, rem.word);
    SLAB_FUZZ_CHECK(got == FreeResult::kNone,
                    "BulkFree of pending objects while claimed = %d",
                    static_cast<int>(got));
    for (std::size_t k = pending_head_; k < pending_.size(); ++k) {
      state_[pending_[k]] = State::kFree;
      ++count_;
    }
    pending_.clear();
    pending_head_ = 0;
  }

  void OpIterate() {
    if (!claimed_) return;
    if (iter_valid_) {
      if ((r_.Byte() & 1) != 0) {
        ReturnPending();
      } else {
        // The owner keeps what the old iterator took: it is live now.
        (void)iter_.TakeRemaining();
        for (std::size_t k = pending_head_; k < pending_.size(); ++k) {
          MakeLive(pending_[k]);
        }
        pending_.clear();
        pending_head_ = 0;
      }
    }
    iter_ = slab_->Iterate();
    iter_valid_ = true;
    iter_word_ = 0;
  }

  void OpNext() {
    if (!claimed_ || !iter_valid_) return;
    const int k = 1 + r_.Byte() % 32;
    if (meta_.page_size >= kLowFirstMinPage) {
      // A low-first slab's Next() takes the lowest free object alone
      // (nothing is ever pending), or reports none.
      for (int j = 0; j < k; ++j) {
        std::size_t want = 0;
        while (want < meta_.n_objects && state_[want] != State::kFree) ++want;
        void* got = iter_.Next();
        if (want == meta_.n_objects) {
          SLAB_FUZZ_CHECK(got == nullptr, "Next() = %p with no object free",
                          got);
          return;
        }
        SLAB_FUZZ_CHECK(got == slab_->ObjectAt(want),
                        "Next() = %p, model's lowest free object %zu at %p",
                        got, want, slab_->ObjectAt(want));
        --count_;
        MakeLive(want);
        ++g_counts.taken;
      }
      return;
    }
    for (int j = 0; j < k; ++j) {
      // The model's next object: the lowest pending one, after loading
      // words until one has a free object.
      while (PendingCount() == 0 && iter_word_ < meta_.bitset_words) {
        pending_.clear();
        pending_head_ = 0;
        std::size_t first, last;
        ObjectsInWord(iter_word_, &first, &last);
        for (std::size_t i = first; i < last; ++i) {
          if (state_[i] == State::kFree) {
            state_[i] = State::kPending;
            pending_.push_back(i);
            --count_;
          }
        }
        ++iter_word_;
      }
      void* got = iter_.Next();
      if (PendingCount() == 0) {
        SLAB_FUZZ_CHECK(got == nullptr, "Next() = %p after the last word", got);
        return;
      }
      const std::size_t want = pending_[pending_head_++];
      SLAB_FUZZ_CHECK(got == slab_->ObjectAt(want),
                      "Next() = %p, model object %zu at %p", got, want,
                      slab_->ObjectAt(want));
      MakeLive(want);
      ++g_counts.taken;
    }
  }

  std::size_t PickLive() {
    if (live_.empty()) return kNone;
    return live_[(static_cast<std::size_t>(r_.U16()) * live_.size()) >> 16];
  }

  void OpFree() {
    const std::size_t i = PickLive();
    if (i == kNone) return;
    CheckPattern(i);
    void* p = slab_->ObjectAt(i);
    SLAB_FUZZ_CHECK(Slab::Find(p, meta_.page_size) == slab_, "Find(%p)", p);
    SLAB_FUZZ_CHECK(ReadAllocType(p) == type_, "stamp of object %zu", i);
    const Slab::BitPosition pos = slab_->PositionOf(p);
    SLAB_FUZZ_CHECK(pos.word == WordOf(i) && pos.mask == MaskOf(i),
                    "PositionOf object %zu", i);
    const FreeResult want = Expected(1);
    const FreeResult got = slab_->Free(p);
    SLAB_FUZZ_CHECK(got == want,
                    "Free(object %zu) = %d, model %d (count %lld, n %zu, "
                    "cutoff %zu, claimed %d)",
                    i, static_cast<int>(got), static_cast<int>(want),
                    static_cast<long long>(count_), n_, cutoff_, claimed_);
    MakeFreeFromLive(i);
    Count(got);
    AfterFree(got);
  }

  void OpDoubleFree() {
    // A free object near a random position (free objects are common; give
    // up after a short scan if there are none around).
    const std::size_t start = (static_cast<std::size_t>(r_.U16()) * n_) >> 16;
    for (std::size_t k = 0; k < 256 && k < n_; ++k) {
      const std::size_t i = (start + k) % n_;
      if (state_[i] != State::kFree) continue;
      const FreeResult got = slab_->Free(slab_->ObjectAt(i));
      SLAB_FUZZ_CHECK(got == FreeResult::kDoubleFree,
                      "double Free(object %zu) = %d", i, static_cast<int>(got));
      Count(got);
      return;
    }
  }

  // Any subset of one word's live and free objects (a word with a live
  // object, if there is one).
  void OpBulkFree() {
    const std::size_t li = PickLive();
    const std::size_t w = li != kNone && (r_.Byte() & 3) != 0
                              ? WordOf(li)
                              : r_.Byte() % meta_.bitset_words;
    const std::uint8_t sel = r_.Byte();
    std::size_t first, last;
    ObjectsInWord(w, &first, &last);
    std::uint64_t mask = 0;
    std::int64_t fresh = 0;
    int k = 0;
    for (std::size_t i = first; i < last; ++i) {
      if (state_[i] == State::kPending) continue;
      if (((sel >> (k++ % 8)) & 1) == 0) continue;
      mask |= MaskOf(i);
      if (state_[i] == State::kLive) {
        CheckPattern(i);
        ++fresh;
      }
    }
    FreeResult want;
    if (mask == 0) {
      want = FreeResult::kNone;
    } else if (fresh == 0) {
      want = FreeResult::kDoubleFree;
    } else {
      want = Expected(fresh);
    }
    const FreeResult got = slab_->BulkFree(mask, w);
    SLAB_FUZZ_CHECK(got == want,
                    "BulkFree(%#llx, word %zu) = %d, model %d (fresh %lld, "
                    "count %lld, n %zu, cutoff %zu, claimed %d)",
                    static_cast<unsigned long long>(mask), w,
                    static_cast<int>(got), static_cast<int>(want),
                    static_cast<long long>(fresh),
                    static_cast<long long>(count_), n_, cutoff_, claimed_);
    for (std::size_t i = first; i < last; ++i) {
      if ((mask & MaskOf(i)) != 0 && state_[i] == State::kLive) {
        MakeFreeFromLive(i);
      }
    }
    Count(got);
    AfterFree(got);
  }

  // Frees every live object (last taken first, then a rotation): drives
  // the slab towards full.
  void OpFreeAll() {
    const std::size_t rot = r_.Byte();
    while (!live_.empty()) {
      const std::size_t i = live_[rot % live_.size()];
      CheckPattern(i);
      const FreeResult want = Expected(1);
      const FreeResult got = slab_->Free(slab_->ObjectAt(i));
      SLAB_FUZZ_CHECK(got == want, "Free(object %zu) = %d, model %d", i,
                      static_cast<int>(got), static_cast<int>(want));
      MakeFreeFromLive(i);
      Count(got);
      if (got == FreeResult::kBecameFull ||
          got == FreeResult::kBecameFullUnlisted) {
        AfterFree(got);
        return;
      }
    }
  }

  void OpCheck() {
    SLAB_FUZZ_CHECK(slab_->AvailableCount() == count_,
                    "AvailableCount() = %lld, model %lld",
                    static_cast<long long>(slab_->AvailableCount()),
                    static_cast<long long>(count_));
    SLAB_FUZZ_CHECK(slab_->IsClaimed() == claimed_, "IsClaimed() = %d",
                    slab_->IsClaimed());
    SLAB_FUZZ_CHECK(slab_->type() == type_ && slab_->metadata() == &meta_,
                    "header changed");
    for (std::size_t i : live_) CheckPattern(i);
  }

  void Step() {
    switch (r_.Byte() % 14) {
      case 0:
        OpClaim();
        break;
      case 1:
        OpUnclaim();
        break;
      case 2:
        OpIterate();
        break;
      case 3:
      case 4:
        OpNext();
        break;
      case 5:
      case 6:
        OpFree();
        break;
      case 7:
        OpDoubleFree();
        break;
      case 8:
        OpBulkFree();
        break;
      case 9:
        OpFreeAll();
        break;
      case 10:
        OpCheck();
        break;
      case 11:
        // Claim and take a batch in one go (the allocator's refill).
        if (!claimed_) OpClaim();
        OpIterate();
        for (int j = 0; j < 4; ++j) OpNext();
        break;
      case 12:
        OpClaimAvailable();
        break;
      case 13:
        OpCompletingFreeDone();
        break;
    }
  }

  Reader& r_;
  SlabMetadata meta_;
  AllocType type_ = AllocType::kSmallSlab;
  Slab* slab_ = nullptr;
  std::size_t n_ = 0;
  std::size_t cutoff_ = 0;
  std::vector<State> state_;
  std::vector<std::uint64_t> keys_;
  std::vector<std::size_t> live_;      // live objects, any order
  std::vector<std::size_t> live_pos_;  // index in live_, or kNone
  std::vector<std::size_t> pending_;   // [pending_head_, end): ascending
  std::size_t pending_head_ = 0;
  std::int64_t count_ = 0;
  bool claimed_ = false;
  bool done_ = false;  // the completing free's done bit (slab.h)
  Slab::LocalIter iter_;
  bool iter_valid_ = false;
  std::size_t iter_word_ = 0;
  std::uint64_t seed_ = 0;
};

void SlabFuzzOne(const std::uint8_t* data, std::size_t size) {
  Reader r(data, size);
  SlabModel m(r);
  m.Run();
}

}  // namespace
}  // namespace elfmalloc

#ifdef ALLOCATORS_LIBFUZZER

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  elfmalloc::SlabFuzzOne(data, size);
  return 0;
}

#else  // !ALLOCATORS_LIBFUZZER

namespace elfmalloc {
namespace {

// SplitMix64 bytes for seed `s`.
std::vector<std::uint8_t> RandomInput(std::uint64_t s, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::uint64_t x = s * 0x2545f4914f6cdd1dULL;
  for (std::size_t i = 0; i < n; ++i) {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v[i] = static_cast<std::uint8_t>(z ^ (z >> 31));
  }
  return v;
}

std::uint64_t Inputs() {
  const char* e = std::getenv("SLAB_FUZZ_INPUTS");
  if (e != nullptr && e[0] != '\0') return std::strtoull(e, nullptr, 10);
#if defined(THREAD_SANITIZER)
  return 600;  // single-threaded: TSan adds nothing but time
#else
  return 6000;
#endif
}

TEST(SlabFuzzTest, SeededRandomInputs) {
  const std::uint64_t n = Inputs();
  for (std::uint64_t s = 1; s <= n; ++s) {
    const std::vector<std::uint8_t> in =
        RandomInput(s, 64 + (s * 0x9e3779b97f4a7c15ULL >> 54));
    SlabFuzzOne(in.data(), in.size());
  }
  const Counts& c = g_counts;
  std::printf("%llu operations on %llu layouts, %llu objects taken; frees: "
              "%llu none, %llu became available, %llu became full, %llu "
              "became full unlisted, %llu double\n",
              static_cast<unsigned long long>(c.ops),
              static_cast<unsigned long long>(c.layouts),
              static_cast<unsigned long long>(c.taken),
              static_cast<unsigned long long>(c.results[0]),
              static_cast<unsigned long long>(c.results[1]),
              static_cast<unsigned long long>(c.results[2]),
              static_cast<unsigned long long>(c.results[3]),
              static_cast<unsigned long long>(c.results[4]));
  // Every transition of the state machine happened.
  for (std::uint64_t k : c.results) EXPECT_GT(k, n / 20);
  EXPECT_GT(c.layouts, n);
}

// Inputs that drive one layout for long: a one-object slab, a tiny-object
// slab with many bit-set words, a large-object medium slab (the layouts
// whose transitions the reference got wrong: cutoff == n, and bulk frees
// from below the cutoff to n).
TEST(SlabFuzzTest, ChosenLayouts) {
  for (std::uint64_t s = 1; s <= 200; ++s) {
    for (const std::vector<std::uint8_t>& head :
         {std::vector<std::uint8_t>{0, 0xff, 0xff, 8},   // 64 KiB-ish objects
          std::vector<std::uint8_t>{2, 0, 2},             // 8-byte class
          std::vector<std::uint8_t>{3, kNumSizeClasses - 1, 8},  // 1 MiB
          std::vector<std::uint8_t>{0, 0, 0, 0}}) {       // 1-byte objects
      std::vector<std::uint8_t> in = head;
      const std::vector<std::uint8_t> rest = RandomInput(s, 800);
      in.insert(in.end(), rest.begin(), rest.end());
      SlabFuzzOne(in.data(), in.size());
    }
  }
}

}  // namespace
}  // namespace elfmalloc

#endif  // ALLOCATORS_LIBFUZZER
