// ptr_hash_map: a small, allocation-aware hash map from aligned addresses to
// pointers, used by slab_alloc to find the slab that owns an object when the
// slab is too large (or too irregular) to be found by masking the pointer.
//
// Why our own map instead of absl::flat_hash_map or std::unordered_map: this
// map lives inside an allocator. Its memory must come from the allocator's own
// backing (mmap pages when the slab allocator is mmap-backed), never from the
// global malloc, and it must never throw. Both standard containers would need
// an STL allocator adaptor with exceptions disabled on the failure path; the
// map we need is so small and specialised that writing it is simpler and lets
// us report out-of-memory as a value.
//
// Design (after the reference implementation's `ptr_map.rs`, with its QUIRKs
// fixed):
//  * The table is an array of power-of-two length of buckets; each bucket
//    holds kSlotsPerBucket (key, value) slots plus a pointer to an overflow
//    bucket, so a chain is a linked list of 4-slot buckets.
//  * hash(key) = (key >> key_shift) & (length - 1). Keys are addresses aligned
//    to 1 << key_shift (slab_alloc uses page addresses), so consecutive keys
//    land in consecutive buckets and the hash costs a shift and a mask.
//  * Invariant "chains are dense": the occupied slots of a chain are exactly
//    its first `n` slots in chain order. Lookups may therefore stop at the
//    first empty slot, inserts append at the end, and a delete moves the last
//    entry of the chain into the hole it leaves (coalescing) and returns an
//    overflow bucket that became empty to the pool. (The reference meant to do
//    this but its loop ran over an empty range, so deletes left holes and
//    chains never shrank.)
//  * Growth doubles the table (before an insert) when size == length; shrink
//    halves it (after a delete) when size < length / 4 and the table is larger
//    than its minimum. The gap between the two thresholds is the hysteresis
//    the reference lacked: it grew at size == length and shrank at
//    size == length / 2, which is exactly the size right after a growth, so
//    alternating insert/delete at the boundary rehashed on every operation.
//    Rehashing re-inserts every entry, which also compacts chains.
//  * Key 0 marks an empty slot, so 0 is not a valid key.
//  * Every error is a defined answer: Get of a missing key returns nullptr,
//    Insert of a present key returns kDuplicate (and changes nothing), Insert
//    of key 0 or a null value returns kInvalidArgument, Remove
//    of a missing key returns false, and running out of memory returns
//    kOutOfMemory with the map unchanged. A failed grow is not an error: the
//    map simply keeps its current table (longer chains, still correct).
//
// Memory: the table and the overflow buckets come from `MetaAlloc`, any type
// with `void* Allocate(size_t size, size_t align) noexcept` and
// `void Deallocate(void* p, size_t size, size_t align) noexcept` (the
// slab_alloc Backing concept). Every request is a whole number of pages,
// page-aligned, so page-granular sources (mmap) work. Overflow buckets are
// carved from page-sized chunks kept on an internal free list and returned to
// MetaAlloc only when the map is destroyed.
//
// Not thread-safe: the owner (a single-threaded slab allocator) serialises.
#ifndef SLAB_ALLOC_PTR_HASH_MAP_H_
#define SLAB_ALLOC_PTR_HASH_MAP_H_

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/numeric/bits.h"
#include "mmap_alloc/mmap_alloc.h"

namespace slab_alloc {

enum class InsertResult {
  kInserted,
  kDuplicate,
  kOutOfMemory,
  kInvalidArgument,
};

template <class MetaAlloc>
class PtrHashMap {
 public:
  static constexpr std::size_t kSlotsPerBucket = 4;
  static constexpr std::size_t kDefaultMinBuckets = 64;

  // Statistics for tests and slab_alloc's stats accessor.
  struct Stats {
    std::size_t size = 0;              // entries
    std::size_t buckets = 0;           // table length (0 before first insert)
    std::size_t overflow_in_use = 0;   // overflow buckets linked into chains
    std::size_t overflow_pooled = 0;   // overflow buckets on the free list
    std::size_t max_chain_buckets = 0; // longest chain, in buckets (O(n) walk)
    std::size_t rehashes = 0;          // grows + shrinks so far
    std::size_t bytes_allocated = 0;   // bytes obtained from MetaAlloc
  };

  // key_shift: log2 of the keys' alignment (the low bits the hash discards).
  // min_buckets: the table never shrinks below this (rounded up to a power of
  // two); the table is allocated lazily on the first insert.
  explicit PtrHashMap(MetaAlloc alloc, unsigned key_shift = 0,
                      std::size_t min_buckets = kDefaultMinBuckets) noexcept
      : alloc_(std::move(alloc)),
        key_shift_(key_shift),
        min_buckets_(absl::bit_ceil(min_buckets < 1 ? std::size_t{1}
                                                    : min_buckets)) {}

  PtrHashMap(const PtrHashMap&) = delete;
  PtrHashMap& operator=(const PtrHashMap&) = delete;

  PtrHashMap(PtrHashMap&& other) noexcept
      : alloc_(other.alloc_),
        key_shift_(other.key_shift_),
        min_buckets_(other.min_buckets_),
        table_(std::exchange(other.table_, nullptr)),
        length_(std::exchange(other.length_, 0)),
        size_(std::exchange(other.size_, 0)),
        free_overflow_(std::exchange(other.free_overflow_, nullptr)),
        chunks_(std::exchange(other.chunks_, nullptr)),
        overflow_in_use_(std::exchange(other.overflow_in_use_, 0)),
        overflow_pooled_(std::exchange(other.overflow_pooled_, 0)),
        rehashes_(std::exchange(other.rehashes_, 0)),
        bytes_allocated_(std::exchange(other.bytes_allocated_, 0)) {}

  PtrHashMap& operator=(PtrHashMap&&) = delete;

  ~PtrHashMap() { Release(); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  // The value stored for `key`, or nullptr if the key is absent (or 0).
  ABSL_ATTRIBUTE_ALWAYS_INLINE void* Get(std::uintptr_t key) const noexcept {
    if (ABSL_PREDICT_FALSE(length_ == 0)) return nullptr;
    const Bucket* b = &table_[Hash(key, length_)];
    do {
      for (std::size_t i = 0; i < kSlotsPerBucket; ++i) {
        // Empty slots hold a null value, so a (bogus) key 0 yields nullptr.
        if (b->keys[i] == key) return b->values[i];
        if (b->keys[i] == 0) return nullptr;  // Dense chains: end reached.
      }
      b = b->next;
    } while (b != nullptr);
    return nullptr;
  }

  bool Contains(std::uintptr_t key) const noexcept {
    return key != 0 && Get(key) != nullptr;
  }

  // Inserts key -> value. A zero key or a null value (which Get could not
  // tell apart from "absent") is refused with kInvalidArgument.
  InsertResult Insert(std::uintptr_t key, void* value) noexcept {
    if (ABSL_PREDICT_FALSE(key == 0 || value == nullptr)) {
      return InsertResult::kInvalidArgument;
    }
    if (length_ == 0) {
      if (!Rehash(min_buckets_)) return InsertResult::kOutOfMemory;
    } else if (size_ >= length_) {
      Rehash(length_ * 2);  // Failure is fine: keep the current table.
    }
    // Find the key (duplicate) or the first empty slot at the end of the chain.
    Bucket* b = &table_[Hash(key, length_)];
    for (;;) {
      for (std::size_t i = 0; i < kSlotsPerBucket; ++i) {
        if (b->keys[i] == key) return InsertResult::kDuplicate;
        if (b->keys[i] == 0) {
          b->keys[i] = key;
          b->values[i] = value;
          ++size_;
          return InsertResult::kInserted;
        }
      }
      if (b->next == nullptr) break;
      b = b->next;
    }
    // Chain full: append an overflow bucket.
    Bucket* extra = NewOverflowBucket();
    if (extra == nullptr) return InsertResult::kOutOfMemory;
    extra->keys[0] = key;
    extra->values[0] = value;
    b->next = extra;
    ++size_;
    return InsertResult::kInserted;
  }

  // Removes key. Returns false (and changes nothing) if it was absent.
  bool Remove(std::uintptr_t key) noexcept {
    if (key == 0 || length_ == 0) return false;
    Bucket* const head = &table_[Hash(key, length_)];
    // Locate the key.
    Bucket* hole_bucket = nullptr;
    std::size_t hole = 0;
    Bucket* prev = nullptr;  // Predecessor of b in the chain.
    Bucket* b = head;
    while (hole_bucket == nullptr) {
      for (std::size_t i = 0; i < kSlotsPerBucket; ++i) {
        if (b->keys[i] == 0) return false;  // Dense chains: end reached.
        if (b->keys[i] == key) {
          hole_bucket = b;
          hole = i;
          break;
        }
      }
      if (hole_bucket != nullptr) break;
      if (b->next == nullptr) return false;
      prev = b;
      b = b->next;
    }
    // Walk on to the chain's last bucket. Overflow buckets are never empty
    // (invariant kept below), so it holds the chain's last entry.
    while (b->next != nullptr) {
      prev = b;
      b = b->next;
    }
    std::size_t last = kSlotsPerBucket - 1;
    while (b->keys[last] == 0) --last;  // b->keys[0] != 0: b holds an entry.
    // Coalesce: move the last entry into the hole, then clear the last slot.
    hole_bucket->keys[hole] = b->keys[last];
    hole_bucket->values[hole] = b->values[last];
    b->keys[last] = 0;
    b->values[last] = nullptr;
    // An overflow bucket that became empty goes back to the pool.
    if (last == 0 && b != head) {
      prev->next = nullptr;
      FreeOverflowBucket(b);
    }
    --size_;
    if (length_ > min_buckets_ && size_ < length_ / 4) {
      Rehash(length_ / 2);  // Failure is fine: keep the current table.
    }
    return true;
  }

  // Removes everything and returns all memory to MetaAlloc.
  void Clear() noexcept { Release(); }

  // Calls f(key, value) for every entry, in unspecified order. f must not
  // modify the map.
  template <class F>
  void ForEach(F&& f) const {
    for (std::size_t i = 0; i < length_; ++i) {
      for (const Bucket* b = &table_[i]; b != nullptr; b = b->next) {
        for (std::size_t s = 0; s < kSlotsPerBucket && b->keys[s] != 0; ++s) {
          f(b->keys[s], b->values[s]);
        }
      }
    }
  }

  Stats GetStats() const noexcept {
    Stats s;
    s.size = size_;
    s.buckets = length_;
    s.overflow_in_use = overflow_in_use_;
    s.overflow_pooled = overflow_pooled_;
    s.rehashes = rehashes_;
    s.bytes_allocated = bytes_allocated_;
    for (std::size_t i = 0; i < length_; ++i) {
      std::size_t n = 0;
      for (const Bucket* b = &table_[i]; b != nullptr; b = b->next) ++n;
      if (n > s.max_chain_buckets) s.max_chain_buckets = n;
    }
    return s;
  }

  // Checks the dense-chain invariant and the size count; for tests.
  bool CheckInvariants() const noexcept {
    std::size_t n = 0;
    std::size_t overflow = 0;
    for (std::size_t i = 0; i < length_; ++i) {
      bool ended = false;
      for (const Bucket* b = &table_[i]; b != nullptr; b = b->next) {
        if (b != &table_[i]) {
          ++overflow;
          if (b->keys[0] == 0) return false;  // Empty overflow bucket kept.
        }
        for (std::size_t s = 0; s < kSlotsPerBucket; ++s) {
          if (b->keys[s] == 0) {
            ended = true;
          } else {
            if (ended) return false;  // A hole before an entry.
            if (Hash(b->keys[s], length_) != i) return false;
            ++n;
          }
        }
      }
    }
    return n == size_ && overflow == overflow_in_use_;
  }

 private:
  struct Bucket {
    std::uintptr_t keys[kSlotsPerBucket];
    void* values[kSlotsPerBucket];
    Bucket* next;
  };
  // Header of a page-sized chunk from which overflow buckets are carved.
  struct Chunk {
    Chunk* next;
  };

  static std::size_t PageSize() noexcept { return mmap_alloc::PageSize(); }

  static std::size_t RoundToPages(std::size_t bytes) noexcept {
    const std::size_t page = PageSize();
    return (bytes + page - 1) & ~(page - 1);
  }

  std::size_t Hash(std::uintptr_t key, std::size_t length) const noexcept {
    return static_cast<std::size_t>(key >> key_shift_) & (length - 1);
  }

  ABSL_ATTRIBUTE_NOINLINE bool Rehash(std::size_t new_length) noexcept {
    // Table sizes that overflow the byte count are refused.
    if (new_length > (~std::size_t{0} / 2) / sizeof(Bucket)) return false;
    const std::size_t bytes = RoundToPages(new_length * sizeof(Bucket));
    void* mem = alloc_.Allocate(bytes, PageSize());
    if (mem == nullptr) return false;
    bytes_allocated_ += bytes;
    Bucket* new_table = static_cast<Bucket*>(mem);
    for (std::size_t i = 0; i < new_length; ++i) {
      ::new (&new_table[i]) Bucket{};
    }
    // Copy every entry into the new table. The old table is untouched until
    // the copy succeeded; should the overflow pool run dry midway, the new
    // table is discarded and the map is exactly as before.
    Bucket* old_table = table_;
    const std::size_t old_length = length_;
    std::size_t new_overflow_count = 0;
    bool ok = true;
    for (std::size_t i = 0; i < old_length && ok; ++i) {
      for (const Bucket* b = &old_table[i]; b != nullptr && ok; b = b->next) {
        for (std::size_t s = 0; s < kSlotsPerBucket && b->keys[s] != 0; ++s) {
          Bucket* t = &new_table[Hash(b->keys[s], new_length)];
          std::size_t slot = kSlotsPerBucket;
          for (;;) {
            for (slot = 0; slot < kSlotsPerBucket; ++slot) {
              if (t->keys[slot] == 0) break;
            }
            if (slot < kSlotsPerBucket || t->next == nullptr) break;
            t = t->next;
          }
          if (slot == kSlotsPerBucket) {
            Bucket* extra = PopPool();
            if (extra == nullptr) {
              ok = false;
              break;
            }
            ++new_overflow_count;
            t->next = extra;
            t = extra;
            slot = 0;
          }
          t->keys[slot] = b->keys[s];
          t->values[slot] = b->values[s];
        }
      }
    }
    if (!ok) {
      // Roll back: give the overflow buckets we took back to the pool.
      for (std::size_t i = 0; i < new_length; ++i) {
        Bucket* b = new_table[i].next;
        while (b != nullptr) {
          Bucket* next = b->next;
          PushPool(b);
          b = next;
        }
      }
      alloc_.Deallocate(mem, bytes, PageSize());
      bytes_allocated_ -= bytes;
      return false;
    }
    // Commit: the old table's overflow buckets go back to the pool.
    for (std::size_t i = 0; i < old_length; ++i) {
      Bucket* b = old_table[i].next;
      while (b != nullptr) {
        Bucket* next = b->next;
        PushPool(b);
        b = next;
      }
    }
    if (old_table != nullptr) {
      const std::size_t old_bytes = RoundToPages(old_length * sizeof(Bucket));
      alloc_.Deallocate(old_table, old_bytes, PageSize());
      bytes_allocated_ -= old_bytes;
    }
    table_ = new_table;
    length_ = new_length;
    overflow_in_use_ = new_overflow_count;
    ++rehashes_;
    return true;
  }

  // Pool of overflow buckets (a free list threaded through Bucket::next).
  Bucket* PopPool() noexcept {
    if (free_overflow_ == nullptr && !RefillPool()) return nullptr;
    Bucket* b = free_overflow_;
    free_overflow_ = b->next;
    --overflow_pooled_;
    ::new (b) Bucket{};
    return b;
  }
  void PushPool(Bucket* b) noexcept {
    b->next = free_overflow_;
    free_overflow_ = b;
    ++overflow_pooled_;
  }
  Bucket* NewOverflowBucket() noexcept {
    Bucket* b = PopPool();
    if (b != nullptr) ++overflow_in_use_;
    return b;
  }
  void FreeOverflowBucket(Bucket* b) noexcept {
    --overflow_in_use_;
    PushPool(b);
  }

  ABSL_ATTRIBUTE_NOINLINE bool RefillPool() noexcept {
    const std::size_t bytes = PageSize();
    void* mem = alloc_.Allocate(bytes, PageSize());
    if (mem == nullptr) return false;
    bytes_allocated_ += bytes;
    Chunk* chunk = ::new (mem) Chunk{chunks_};
    chunks_ = chunk;
    // Buckets start after the chunk header, aligned for Bucket.
    std::size_t offset = (sizeof(Chunk) + alignof(Bucket) - 1) &
                         ~(alignof(Bucket) - 1);
    for (; offset + sizeof(Bucket) <= bytes; offset += sizeof(Bucket)) {
      PushPool(::new (static_cast<char*>(mem) + offset) Bucket{});
    }
    return true;
  }

  void Release() noexcept {
    if (table_ != nullptr) {
      alloc_.Deallocate(table_, RoundToPages(length_ * sizeof(Bucket)),
                        PageSize());
    }
    while (chunks_ != nullptr) {
      Chunk* next = chunks_->next;
      alloc_.Deallocate(chunks_, PageSize(), PageSize());
      chunks_ = next;
    }
    table_ = nullptr;
    length_ = 0;
    size_ = 0;
    free_overflow_ = nullptr;
    overflow_in_use_ = 0;
    overflow_pooled_ = 0;
    bytes_allocated_ = 0;
  }

  [[no_unique_address]] MetaAlloc alloc_;
  unsigned key_shift_;
  std::size_t min_buckets_;
  Bucket* table_ = nullptr;
  std::size_t length_ = 0;
  std::size_t size_ = 0;
  Bucket* free_overflow_ = nullptr;
  Chunk* chunks_ = nullptr;
  std::size_t overflow_in_use_ = 0;
  std::size_t overflow_pooled_ = 0;
  std::size_t rehashes_ = 0;
  std::size_t bytes_allocated_ = 0;
};

}  // namespace slab_alloc

#endif  // SLAB_ALLOC_PTR_HASH_MAP_H_
