// Slab ("slag"): one page of equal-sized objects with an availability bit-set,
// shared by one allocating owner and any number of remote freeing threads.
//
// Layout (see slab_metadata.h): the Slab header below occupies the first
// kSlabHeaderSize bytes of its page, the bit-set words follow, then objects.
// The header's FIRST field is the region header (alloc_type.h): its stamp
// and, in the slab on a 2 MiB boundary (the "leader"), the region's tag
// table, where every slab of 64 KiB or more has its tag bytes. Only
// alloc_type.h's functions write them (Init calls them); a slab never
// touches its region header otherwise, and a slab that is not a leader
// leaves its copy's tag bytes unused. TagOf reads the tag in the same cache
// line as the stamp. Slabs smaller than 64 KiB share a byte and get no tag
// (TagOf is unspecified for them), and so do slabs initialised with kNoTag
// (TagOf reads whatever the byte holds, 0 in fresh memory, so users should
// not give 0 a meaning).
//
// ---------------------------------------------------------------------------
// The state word and the state machine
// ---------------------------------------------------------------------------
// `state_` packs the *claimed* bit (bit 0), the completing free's *done* bit
// (bit 1, see "The completing free" below) and the *available count* (bits
// 2..63, a two's-complement count, so state = count * 4 + done * 2 +
// claimed). A set bit in the bit-set means "object available". The count
// tracks available objects not yet taken by the owner; it can transiently
// lag the bit-set (see Free).
// Keeping the claimed bit and the count in ONE word is what makes the
// transitions race-free: every operation below is a single RMW on that word,
// so all of them are totally ordered and each sees whether the slab was
// claimed at that instant and the exact count before it.
//
// States (n = n_objects, cutoff = cutoff_objects):
//
//   CLAIMED    one thread (the owner) holds the claimed bit. Only the owner
//              takes objects (LocalIter: exchange a bit-set word with 0, then
//              subtract its popcount from the count). Any thread may free
//              objects (Free/BulkFree); while claimed, frees never report a
//              transition: the owner decides the slab's fate when it lets go.
//   FLOATING   unclaimed with count < cutoff: referenced by nobody; its
//              objects are live in user hands. Only frees touch it.
//   AVAILABLE  unclaimed with cutoff <= count < n: listed (or about to be
//              listed) in the size class's available bag, from which exactly
//              one thread may pop it and claim it (-> CLAIMED).
//   FULL       unclaimed with count == n (every object free): goes back to
//              the page allocator (revoked from the available bag first if it
//              was listed).
//
// Transitions and who makes them:
//   * CLAIMED -> (unclaimed): only the owner, by Unclaim(), which returns the
//     count at that instant c. The owner then acts on c: c == n -> give the
//     page back or Adopt() it again (no free can follow); c >= cutoff ->
//     ClaimAvailable() again (or list it itself); otherwise the slab is
//     FLOATING and the owner forgets it. No free can have made a
//     transition decision for this period yet, because frees before the
//     Unclaim in the word's order saw the claimed bit.
//   * FLOATING -> AVAILABLE: the ONE free whose fetch_add moves the count from
//     below cutoff to [cutoff, n) while unclaimed (kBecameAvailable); that
//     thread lists the slab. While unclaimed the count only grows (only the
//     owner subtracts, and there is no owner), so exactly one free crosses.
//   * AVAILABLE -> FULL: the ONE free that makes the count n
//     (kBecameFull), the *completing free*: it revokes the slab from the bag
//     and gives the page back if the revoke succeeds; if it fails, a popper
//     got the listing or the listing push has not landed yet (the slab is
//     then listed wholly free and reused from the bag). See below.
//   * FLOATING -> FULL directly: a free that jumps from below cutoff to n
//     (a one-object slab, cutoff == n, or a BulkFree): kBecameFullUnlisted;
//     the slab was never listed in this period, so the freer gives the page
//     back without revoking. (QUIRK fixed: the reference reported Available
//     for cutoff == n, so one-object slabs never went back; and a bulk free
//     from below cutoff to n tried a revoke that must fail, so the slab
//     floated forever.)
//   * AVAILABLE -> CLAIMED: the thread that popped it from the bag, or the
//     owner re-claiming its own unlisted slab after an Unclaim above the
//     cutoff, by ClaimAvailable() (the bag hands each listing to one thread,
//     and a successful revoke excludes the pop).
//
// The completing free. Between its count RMW and its revoke, the completing
// free F is preempted for as long as the scheduler likes, and meanwhile a
// popper P may claim the wholly free slab, use it, and let it go again (a new
// period, listed again, or its page given back and reused). F's revoke must
// not act on that later period: a revoke that finds the slab's next listing
// succeeds and gives back the page of a slab with live objects, which the
// page allocator hands out again: blocks handed out twice (threadtest with
// 2 KiB blocks on 2..4 threads meets the interleaving in about one run in
// 200). So a period cannot end while its completing free is still acting
// on the slab:
//   * F: count -> n (kBecameFull); revoke; success -> give the page back.
//     Failure -> CompletingFreeDone(): fetch_or the done bit. If the word
//     was claimed, a claimer met the slab before F was done and left it
//     (below): F gives the page back. Otherwise F never touches the slab
//     again; whoever claims it later sees the done bit.
//   * A claimer (ClaimAvailable: fetch_or the claimed bit) that sees count n
//     without the done bit knows F is still acting: it forgets the slab,
//     leaving its claimed bit set for F's done step to see (kCompleting).
//     A count of n with the done bit set means F is gone: the claimer owns
//     a wholly free slab.
// The two RMWs are ordered on the one word, so exactly one side knows the
// other is finished: if the claim comes first, F's done step sees it and
// F, alone with the slab, returns it; if the done step comes first, the
// claimer sees it and owns the slab. Neither waits. A count of n with no
// completing free does not occur in a listed or re-claimed slab: an owner
// whose Unclaim finds every object free (no free can follow) keeps it
// (Adopt) or returns it. Unclaim clears the done bit with the claimed bit,
// ending the period; Adopt() also resets a page taken from the page
// allocator, whatever its last period left.
//
// Why Free sets the bit FIRST and increments the count second (the reference
// did the opposite, and that order is NOT race-free): a free that makes the
// count reach n lets its thread hand the page back, and after that no other
// freer may touch the slab. With "count, then bit", thread A can increment
// (n-2 -> n-1) and be preempted before setting its bit; B's increment reaches
// n, B recycles the page, and A's late fetch_or lands in the page's next life
// (for a slab re-used without re-initialisation this re-lists an object that
// was already handed out: a double allocation). With "bit, then count", a
// freer's last access to the slab is its count increment, so the thread
// whose increment (in the word's total order, with acquire) reaches n happens
// after every bit of every free and every prior access to the objects.
// Proof that count == n really means "all n objects free": per object, the
// count receives +1 per free (after its bit is set) and -1 per take (after
// its bit is cleared by the owner's exchange); takes alternate with frees, and
// while unclaimed all of the last owner's subtractions precede the Unclaim
// RMW, so each object contributes at most 1, and exactly 1 only if its last
// event was a completed free. Hence count == n => every object free and every
// freer done.
// The price of this order is that the owner may take a bit whose increment has
// not landed yet, so the count can dip below the number of set bits, even
// below zero. That is harmless: the count is stored shifted left by one with
// the claimed bit as bit 0, so adding/subtracting even numbers never carries
// into the claimed bit, and transitions are only decided while unclaimed,
// when the count only grows towards its true value.
//
// Double frees: a free whose bit is already set changes nothing and returns
// kDoubleFree (a free of an object the owner has since re-taken is
// indistinguishable from a valid one and cannot be detected).
#ifndef ELFMALLOC_SLAB_H_
#define ELFMALLOC_SLAB_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "absl/base/macros.h"
#include "elfmalloc/alloc_type.h"
#include "elfmalloc/slab_metadata.h"

namespace elfmalloc {

// What a free did to the slab's state; tells the freer what to do next.
enum class FreeResult {
  kNone,              // no transition
  kBecameAvailable,   // FLOATING -> AVAILABLE: list it in the available bag
  kBecameFull,        // AVAILABLE -> FULL: revoke from the bag, then free page
  kBecameFullUnlisted,  // FLOATING -> FULL: never listed; free the page
  kDoubleFree,        // the object was already free; nothing changed
};

namespace internal {
class SlabTestPeer;
}  // namespace internal

// Slabs of at least this many bytes hand out their lowest available objects
// first (Slab::LocalIter, "Low-first batches").
inline constexpr std::size_t kLowFirstMinPage = std::size_t{64} << 10;

class Slab {
 public:
  // Initialises a slab on `page` (aligned to meta->page_size): every object
  // available, unclaimed (state AVAILABLE or FULL by count n, but not listed
  // anywhere: the caller owns it and normally claims it at once), revocation
  // handle 0. `meta` must outlive the slab. No other thread may access the
  // page during Init; publish the result through a synchronising hand-off.
  // `tag` (unless kNoTag) goes into the region's tag table (see "Tags"
  // above) if the page is at least kTagGranule bytes; the page must then lie
  // in a stamped 2 MiB region as PageAlloc carves them (its leader header is
  // written). With kNoTag nothing outside the page is touched.
  static Slab* Init(void* page, const SlabMetadata* meta, AllocType type,
                    std::uint8_t tag = kNoTag) noexcept;

  static constexpr std::uint8_t kNoTag = 0xff;
  static constexpr std::size_t kTagGranule = elfmalloc::kTagGranule;

  // The tag of the slab holding p, for a p handed out from a slab of at
  // least kTagGranule bytes (ReadRegionTag: the same cache line as
  // ReadAllocType(p)).
  static std::uint8_t TagOf(const void* p) noexcept {
    return ReadRegionTag(p);
  }

  // The slab holding p, for slabs of page_size bytes.
  static Slab* Find(const void* p, std::size_t page_size) noexcept {
    return reinterpret_cast<Slab*>(reinterpret_cast<std::uintptr_t>(p) &
                                   ~(page_size - 1));
  }

  AllocType type() const noexcept {
    return region_.type.load(std::memory_order_relaxed);
  }
  const SlabMetadata* metadata() const noexcept {
    return meta_.load(std::memory_order_relaxed);
  }

  // The revocation handle (bagpipe's Revocable concept): owned by the
  // revocable queue the slab is listed in; nobody else writes it.
  std::atomic<std::uintptr_t>& handle() noexcept { return handle_; }

  // Sets the claimed bit. True iff the slab was unclaimed (the caller is now
  // the owner). Only for a slab no completing free can be acting on (the
  // allocator uses Adopt for those); a slab reached through a listing, or
  // re-claimed above the cutoff, is taken with ClaimAvailable.
  bool Claim() noexcept {
    return (state_.fetch_or(kClaimedBit, std::memory_order_acq_rel) &
            kClaimedBit) == 0;
  }

  enum class ClaimResult {
    kClaimed,     // the caller is the owner
    kCompleting,  // a free completed the slab and is still acting on it: the
                  // caller forgets the slab, and that free gives its page back
    kWasClaimed,  // someone else owns it (a caller bug)
  };
  // Claims an AVAILABLE slab: one popped from the available bag, or the
  // owner's own after an Unclaim that found the count in [cutoff, n). See
  // "The completing free" above.
  ClaimResult ClaimAvailable() noexcept;

  // The completing free's last step, after its revoke failed (see "The
  // completing free"): sets the done bit. True iff a claimer met the slab
  // before it and left it: the caller must then give the page back. After a
  // false return the caller never touches the slab again.
  bool CompletingFreeDone() noexcept {
    return (state_.fetch_or(kDoneBit, std::memory_order_acq_rel) &
            kClaimedBit) != 0;
  }

  // Makes the caller the owner of a wholly free slab it holds exclusively:
  // a page taken from the page allocator (whatever bits the slab's last
  // period left in its state word), or the owner's own slab after an
  // Unclaim that found every object free.
  void Adopt() noexcept {
    state_.store(
        (static_cast<std::uint64_t>(metadata()->n_objects) << kCountShift) |
            kClaimedBit,
        std::memory_order_relaxed);
  }

  struct UnclaimResult {
    bool was_claimed;
    std::int64_t count;  // available count at the instant of the Unclaim
  };
  // Clears the claimed bit (and the done bit of the period that ends); see
  // the state machine above for what the owner must do with the count.
  UnclaimResult Unclaim() noexcept {
    const std::uint64_t prev = state_.fetch_and(~(kClaimedBit | kDoneBit),
                                                std::memory_order_acq_rel);
    return {(prev & kClaimedBit) != 0, CountOf(prev)};
  }

  bool IsClaimed() const noexcept {
    return (state_.load(std::memory_order_acquire) & kClaimedBit) != 0;
  }
  // The available count (may transiently lag the bit-set; see above).
  std::int64_t AvailableCount() const noexcept {
    return CountOf(state_.load(std::memory_order_acquire));
  }

  // The owner's iterator. In a slab below kLowFirstMinPage it takes
  // available objects word by word, lowest bit first: each word is
  // exchanged with 0 (taking every object available in it at once) and its
  // popcount subtracted from the count. In a low-first slab (every slab of
  // the general allocator) it takes only the objects it hands out, the
  // lowest available ones ("Low-first batches"). Only the owner (the
  // thread that claimed the slab) may use it, and only while it holds the
  // claim. Objects freed behind the iterator's position are not seen by it;
  // the owner picks them up by iterating again (see the state machine), or
  // sooner where it knows of them: Rewind.
  class LocalIter {
   public:
    LocalIter() noexcept = default;
    // The owner freed objects into word w: visit w (and every word after
    // it) again before reporting the end of the slab. Words are retaken by
    // the same exchange, so revisiting one is always safe; a word found 0
    // costs a load. This keeps a slab in use from its start: a thread whose
    // live objects of a class stay few reuses the ones it freed instead of
    // walking on through (and touching) the whole slab before it comes back
    // to them, which made every class's slab wholly resident.
    void Rewind(std::size_t w) noexcept {
      if (w < word_) word_ = w;
    }
    // The next available object, or nullptr once every word was visited
    // (in a low-first slab: once none is available). In a low-first slab
    // it takes the lowest available object alone, as a batch of one does:
    // taking its word whole handed out the rest of that word in order
    // before the slab was looked at again, and the first object of every
    // slab claim comes from here (SlabAllocator::AllocSlow). With 64 or
    // fewer objects to a slab (the classes of 3 KiB and more on 256 KiB
    // pages; 1 MiB of 16 KiB objects on 2 MiB pages) that swept the whole
    // word: a thread touched all of it however few objects it held
    // (shbench 64 B-4 KiB kept its 3-4 KiB classes' slabs wholly resident).
    void* Next() noexcept {
      if (low_first_) {
        void* p;
        return NextBatchLowFirst<false>(&p, 1) != 0 ? p : nullptr;
      }
      while (bits_ == 0) {
        if (slab_ == nullptr || word_ == words_) return nullptr;
        bits_ = TakeWord(word_);
        bit_base_ = word_ * kBitsPerWord;
        ++word_;
        if (bits_ != 0) slab_->SubtractTaken(std::popcount(bits_));
      }
      const std::size_t bit =
          bit_base_ + static_cast<std::size_t>(std::countr_zero(bits_));
      bits_ &= bits_ - 1;
      return objects_ + (bit << shift_);
    }

    // Up to n next objects, in address order; fewer only when every word
    // was visited. The same as calling Next() n times, with the iterator's
    // state in registers, except in a low-first slab (below). kDown: out is
    // the end of the array, filled downwards (out[-1] the first object), at
    // no extra cost per object.
    template <bool kDown = false>
    std::size_t NextBatch(void** out, std::size_t n) noexcept {
      if (low_first_) return NextBatchLowFirst<kDown>(out, n);
      std::uint64_t bits = bits_;
      std::size_t base = bit_base_;
      std::size_t k = 0;
      while (k < n) {
        if (bits == 0) {
          if (slab_ == nullptr || word_ == words_) break;
          bits = TakeWord(word_);
          base = word_ * kBitsPerWord;
          ++word_;
          if (bits != 0) slab_->SubtractTaken(std::popcount(bits));
          continue;
        }
        Emit<kDown>(out, k++,
                    base + static_cast<std::size_t>(std::countr_zero(bits)));
        bits &= bits - 1;
      }
      bits_ = bits;
      bit_base_ = base;
      return k;
    }

    // The objects the iterator has already taken from the slab (their bits
    // cleared and uncounted) but not yet returned by Next(): all of them lie
    // in one bit-set word. Clears them from the iterator. An owner that lets
    // go of the slab with a partly used iterator gives them back with
    // Slab::BulkFree(mask, word) first, or they would be lost until the page
    // is re-initialised. (Added for the slab allocator's destruction path.)
    struct Remaining {
      std::size_t word;
      std::uint64_t mask;  // 0: nothing pending
    };
    Remaining TakeRemaining() noexcept {
      const Remaining r{bit_base_ / kBitsPerWord, bits_};
      bits_ = 0;
      return r;
    }

   private:
    friend class Slab;
    explicit LocalIter(Slab* slab) noexcept;

    // Low-first batches (slabs of kLowFirstMinPage bytes or more). A batch
    // takes the lowest available objects of the whole slab, scanning from
    // word 0 every time, and only as many as it needs: a word's objects
    // are taken with a fetch_and of exactly the bits handed out, never
    // exchanged whole into the iterator. The owner is the only thread that
    // clears bits, so every bit chosen from a loaded value is still set at
    // the fetch_and and the bits taken are exactly the ones chosen (frees
    // may set others meanwhile; they stay in the slab).
    //
    // Why: the sequential iterator takes a word whole and hands out its
    // objects before it looks at the slab again, and a word of a big slab
    // covers a lot of memory (64 objects of 16 KiB are 1 MiB): objects
    // freed behind the iterator, by other threads or flushed from this
    // thread's magazine, waited until the iterator had walked through the
    // rest of the slab, touching it. Every claimed 2 MiB slab of a class
    // then became wholly resident, per thread and per class, even for a
    // class with a handful of live blocks (mixed sizes handed between two
    // threads: 1 MiB resident per medium class for ~0.4 MiB live). Taking
    // the lowest free objects first keeps a slab's touched part as small
    // as its live objects and caches allow, as a free list that reuses
    // freed objects before extending into fresh memory does. The 64 KiB
    // slabs of the classes up to 512 B are low-first too: sequentially,
    // a producer whose consumer returned objects behind its iterator
    // walked on through the slab, and each of 16 small classes of a
    // producer-consumer pair kept a whole slab resident for 4-16 KiB of
    // live objects (classes 16-32 B: 68 -> 24-48 KiB touched). The scan
    // costs a relaxed load per word of the bit-set (64 words at most in a
    // 64 KiB slab), once per magazine refill of up to 256 objects: no
    // change in the instructions per operation of any single-thread
    // harness row (callgrind). What it does cost is locality across
    // threads: a producer now reuses the objects its consumer has just
    // freed on the other CPU instead of walking into memory nobody
    // touched lately, and one producer-consumer pair runs 7-12% slower
    // (prodcons peak RSS 12-15% lower; the other harness rows unchanged).
    // Rewinding the sequential iterator at each refill instead keeps the
    // speed but gives back a quarter of the memory.
    template <bool kDown>
    std::size_t NextBatchLowFirst(void** out, std::size_t n) noexcept {
      std::size_t k = 0;
      // Objects a Next() took whole before this batch come first.
      while (k < n && bits_ != 0) {
        Emit<kDown>(out, k++, bit_base_ + static_cast<std::size_t>(
                                              std::countr_zero(bits_)));
        bits_ &= bits_ - 1;
      }
      if (slab_ == nullptr) return k;
      std::atomic<std::uint64_t>* const words = slab_->Bitset();
      for (std::size_t w = 0; w < words_ && k < n; ++w) {
        const std::uint64_t v = words[w].load(std::memory_order_relaxed);
        if (v == 0) continue;
        // The lowest min(popcount(v), n - k) set bits of v.
        std::uint64_t rest = v;
        const std::size_t base = w * kBitsPerWord;
        const std::size_t k0 = k;
        while (rest != 0 && k < n) {
          Emit<kDown>(out, k++, base + static_cast<std::size_t>(
                                           std::countr_zero(rest)));
          rest &= rest - 1;
        }
        const std::uint64_t chosen = v & ~rest;
        // Acquire: the objects' last freers' writes happen before their
        // reuse (as the exchange in TakeWord).
        words[w].fetch_and(~chosen, std::memory_order_acquire);
        slab_->SubtractTaken(static_cast<int>(k - k0));
      }
      return k;
    }
    template <bool kDown>
    void Emit(void** out, std::size_t k, std::size_t bit) const noexcept {
      void* const obj = objects_ + (bit << shift_);
      if constexpr (kDown) {
        out[-1 - static_cast<std::ptrdiff_t>(k)] = obj;
      } else {
        out[k] = obj;
      }
    }

    // Takes every object available in word w (no atomic write when there
    // is none: rewound scans pass over words that are all allocated).
    std::uint64_t TakeWord(std::size_t w) noexcept {
      std::atomic<std::uint64_t>& a = slab_->Bitset()[w];
      if (a.load(std::memory_order_relaxed) == 0) return 0;
      return a.exchange(0, std::memory_order_acquire);
    }

    Slab* slab_ = nullptr;
    char* objects_ = nullptr;
    std::size_t shift_ = 0;
    std::size_t words_ = 0;
    std::size_t word_ = 0;
    std::size_t bit_base_ = 0;
    std::uint64_t bits_ = 0;
    bool low_first_ = false;
  };
  // Precondition: the caller is the owner (holds the claim).
  LocalIter Iterate() noexcept { return LocalIter(this); }

  // Frees object p of this slab (any thread, claimed or not). See the state
  // machine for what the caller must do with the result.
  FreeResult Free(void* p) noexcept { return FreeEnd(FreeBegin(p)); }

  // Frees every object whose first bit is set in `mask` in bit-set word
  // `word` at once (e.g. a batch gathered by a cache). Bits already set are
  // double frees and are not counted; returns kDoubleFree only if every bit
  // was already set. The transition is decided on the whole batch: a batch
  // taking the count from below cutoff to n reports kBecameFullUnlisted.
  FreeResult BulkFree(std::uint64_t mask, std::size_t word) noexcept;

  // Where object p's availability bit lives.
  struct BitPosition {
    std::size_t word;
    std::uint64_t mask;
  };
  BitPosition PositionOf(const void* p) const noexcept {
    const SlabMetadata* m = metadata();
    const std::size_t bit =
        (static_cast<std::size_t>(static_cast<const char*>(p) -
                                  reinterpret_cast<const char*>(this)) -
         m->objects_offset) >>
        m->granule_shift;
    ABSL_ASSERT(bit % m->bits_per_object == 0);  // p is an object's start
    ABSL_ASSERT(bit / m->bits_per_object < m->n_objects);
    return {bit / kBitsPerWord, std::uint64_t{1} << (bit % kBitsPerWord)};
  }

  // Object i (0 <= i < n_objects).
  void* ObjectAt(std::size_t i) noexcept {
    const SlabMetadata* m = metadata();
    return reinterpret_cast<char*>(this) + m->objects_offset +
           i * m->object_size;
  }

 private:
  friend class internal::SlabTestPeer;
  static constexpr std::uint64_t kClaimedBit = 1;
  static constexpr std::uint64_t kDoneBit = 2;
  static constexpr int kCountShift = 2;

  static std::int64_t CountOf(std::uint64_t state) noexcept {
    // Arithmetic shift (C++20).
    return static_cast<std::int64_t>(state) >> kCountShift;
  }

  std::atomic<std::uint64_t>* Bitset() noexcept {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(
        reinterpret_cast<char*>(this) + kSlabHeaderSize);
  }

  // Step 1 of a free: publish the object as available. Release: the next
  // taker (acquire exchange) sees the freer's writes to the object. False if
  // it was already available.
  bool MarkFree(std::size_t word, std::uint64_t mask) noexcept {
    return (Bitset()[word].fetch_or(mask, std::memory_order_release) & mask) ==
           0;
  }
  // Free's two steps, split so that tests can interleave them (a free
  // "preempted" between its steps).
  struct PendingFree {
    bool fresh;  // the bit was clear before (not a double free)
  };
  PendingFree FreeBegin(void* p) noexcept {
    const BitPosition pos = PositionOf(p);
    return {MarkFree(pos.word, pos.mask)};
  }
  FreeResult FreeEnd(PendingFree f) noexcept {
    return f.fresh ? AddAvailable(1) : FreeResult::kDoubleFree;
  }

  // Step 2 of a free: count k newly available objects and decide the
  // transition. Must follow MarkFree (see the header comment for why).
  FreeResult AddAvailable(std::uint64_t k) noexcept;

  // The owner's half of LocalIter: uncount objects just taken.
  void SubtractTaken(int k) noexcept {
    state_.fetch_sub(static_cast<std::uint64_t>(k) << kCountShift,
                     std::memory_order_acq_rel);
  }

  // FIRST field: the region header (alloc_type.h), written only through
  // its functions. Never constructed or cleared: fresh mappings are zero.
  RegionHeader region_;
  std::atomic<const SlabMetadata*> meta_;
  std::atomic<std::uint64_t> state_;  // count << kCountShift | done | claimed
  std::atomic<std::uintptr_t> handle_;  // bagpipe revocation handle
};

static_assert(sizeof(Slab) <= kSlabHeaderSize);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint64_t>) == sizeof(std::uint64_t));

}  // namespace elfmalloc

#endif  // ELFMALLOC_SLAB_H_
