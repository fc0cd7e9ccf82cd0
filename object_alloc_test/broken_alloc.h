// Deliberately broken object allocators, for testing the tester.
//
// BrokenObjectAlloc<T> (typed) and BrokenUntypedAlloc (untyped) are correct,
// caching, LeakyAlloc-backed object allocators when built with
// Defect::kNone (and the suites pass on them), and each other Defect plants
// exactly one bug that the harness must catch (harness_test.cc). They hand
// out memory from LeakyAlloc arenas, so a bug never lets the harness touch
// memory that was really freed (which ASan would report before the harness
// could).
//
// Defects trigger on every `period`-th call (default 5), so they show up
// within a few operations of any random sequence, deterministically.
//
// Test code: std::vector inside, every member under one mutex (kThreadSafe).
#ifndef OBJECT_ALLOC_TEST_BROKEN_ALLOC_H_
#define OBJECT_ALLOC_TEST_BROKEN_ALLOC_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <string_view>
#include <vector>

#include "object_alloc/object_alloc.h"
#include "object_alloc_test/leaky_alloc.h"

namespace object_alloc_test {

enum class Defect {
  kNone,
  // Hands out an object that is still live (the most recent live one).
  kDoubleHandOut,
  // Hands out memory starting in the middle of a live object.
  kOverlap,
  // Flips a byte in a live object the caller holds.
  kCorruptLive,
  // Typed: never runs the constructor (memory is filled with 0xA5).
  kSkipConstruction,
  // Typed: destroys freed objects, caches them, and hands them out again
  // without constructing them.
  kHandOutDestroyed,
  // Typed: writes into freed objects it caches constructed.
  kCorruptCached,
  // Typed: on destruction, releases cached objects without destroying them.
  kNeverDestroyCached,
  // Typed: on destruction, destroys each cached object twice.
  kDoubleDestroy,
  // Hands out memory misaligned by half the alignment (not constructed).
  kMisalign,
  // Returns nullptr.
  kReturnNull,
};

constexpr std::string_view DefectName(Defect d) {
  switch (d) {
    case Defect::kNone:
      return "None";
    case Defect::kDoubleHandOut:
      return "DoubleHandOut";
    case Defect::kOverlap:
      return "Overlap";
    case Defect::kCorruptLive:
      return "CorruptLive";
    case Defect::kSkipConstruction:
      return "SkipConstruction";
    case Defect::kHandOutDestroyed:
      return "HandOutDestroyed";
    case Defect::kCorruptCached:
      return "CorruptCached";
    case Defect::kNeverDestroyCached:
      return "NeverDestroyCached";
    case Defect::kDoubleDestroy:
      return "DoubleDestroy";
    case Defect::kMisalign:
      return "Misalign";
    case Defect::kReturnNull:
      return "ReturnNull";
  }
  return "?";
}

namespace internal {

// Raw slots of one layout carved from LeakyAlloc arenas, plus the planted
// bugs that concern memory rather than construction. Callers hold the lock.
class BrokenArena {
 public:
  BrokenArena(LeakyAlloc& leaky, object_alloc::Layout layout, Defect defect,
              int period)
      : leaky_(&leaky), layout_(layout), defect_(defect), period_(period) {}

  object_alloc::Layout layout() const { return layout_; }
  Defect defect() const { return defect_; }

  // Counts calls; true on every period-th.
  bool Trigger() { return ++calls_ % period_ == 0; }

  // A slot never handed out before. Every arena keeps one spare slot at its
  // end so that an overlapping slot (half an object past a live one) stays
  // inside the arena.
  unsigned char* FreshSlot() {
    if (next_ == nullptr || next_ == end_) {
      next_ = static_cast<unsigned char*>(
          leaky_->Allocate(layout_.size * (kSlotsPerArena + 1), layout_.align));
      if (next_ == nullptr) return nullptr;
      end_ = next_ + layout_.size * kSlotsPerArena;
    }
    unsigned char* p = next_;
    next_ += layout_.size;
    return p;
  }

  // A pointer half an object (rounded down to the alignment) past `live`;
  // nullptr when that rounds to `live` itself.
  unsigned char* OverlappingSlot(unsigned char* live) const {
    const std::size_t offset =
        (layout_.size / 2) / layout_.align * layout_.align;
    return offset == 0 ? nullptr : live + offset;
  }

  unsigned char* MisalignedSlot() {
    unsigned char* p = FreshSlot();
    return p == nullptr || layout_.align < 2 ? nullptr : p + layout_.align / 2;
  }

  // Flips one byte in the middle of the object at p.
  void Corrupt(void* p) const {
    static_cast<unsigned char*>(p)[layout_.size / 2] ^= 0x5a;
  }

  // Objects the caller holds, in hand-out order.
  std::vector<void*>& live() { return live_; }
  void ForgetLive(void* p) {
    auto it = std::find(live_.begin(), live_.end(), p);
    if (it != live_.end()) live_.erase(it);
  }

 private:
  static constexpr std::size_t kSlotsPerArena = 64;
  LeakyAlloc* leaky_;
  object_alloc::Layout layout_;
  Defect defect_;
  int period_;
  std::uint64_t calls_ = 0;
  unsigned char* next_ = nullptr;
  unsigned char* end_ = nullptr;
  std::vector<void*> live_;
};

}  // namespace internal

// A caching typed allocator of T with one planted Defect.
template <class T>
class BrokenObjectAlloc {
 public:
  using value_type = T;
  static constexpr bool kThreadSafe = true;

  BrokenObjectAlloc(LeakyAlloc& leaky, Defect defect, int period = 5)
      : arena_(leaky, object_alloc::LayoutOf<T>(), defect, period) {}
  BrokenObjectAlloc(const BrokenObjectAlloc&) = delete;
  BrokenObjectAlloc& operator=(const BrokenObjectAlloc&) = delete;

  ~BrokenObjectAlloc() {
    for (T* p : cache_) {
      switch (arena_.defect()) {
        case Defect::kNeverDestroyCached:
        case Defect::kHandOutDestroyed:  // Already destroyed when cached.
          break;
        case Defect::kDoubleDestroy:
          p->~T();
          p->~T();
          break;
        default:
          p->~T();
      }
    }
  }

  T* Allocate() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    const Defect d = arena_.defect();
    const bool trigger = arena_.Trigger();
    std::vector<void*>& live = arena_.live();
    if (trigger) {
      switch (d) {
        case Defect::kReturnNull:
          return nullptr;
        case Defect::kMisalign:
          if (void* p = arena_.MisalignedSlot()) return static_cast<T*>(p);
          break;
        case Defect::kDoubleHandOut:
          if (!live.empty()) {
            void* p = live.back();
            live.push_back(p);
            return static_cast<T*>(p);
          }
          break;
        case Defect::kOverlap:
          if (!live.empty()) {
            if (unsigned char* p = arena_.OverlappingSlot(
                    static_cast<unsigned char*>(live.back()))) {
              live.push_back(p);
              return ::new (p) T();
            }
          }
          break;
        case Defect::kCorruptLive:
          if (!live.empty()) arena_.Corrupt(live.front());
          break;
        default:
          break;
      }
    }
    T* obj;
    if (!cache_.empty()) {
      obj = cache_.back();
      cache_.pop_back();
      // kHandOutDestroyed: the cached object was destroyed; not rebuilt.
    } else {
      unsigned char* p = arena_.FreshSlot();
      if (p == nullptr) return nullptr;
      if (d == Defect::kSkipConstruction) {
        std::memset(p, 0xa5, sizeof(T));
        obj = reinterpret_cast<T*>(p);
      } else {
        obj = ::new (p) T();
      }
    }
    live.push_back(obj);
    return obj;
  }

  void Deallocate(T* p) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    arena_.ForgetLive(p);
    switch (arena_.defect()) {
      case Defect::kHandOutDestroyed:
        p->~T();
        break;
      case Defect::kCorruptCached:
        arena_.Corrupt(p);
        break;
      default:
        break;
    }
    cache_.push_back(p);
  }

 private:
  std::mutex mu_;
  internal::BrokenArena arena_;
  std::vector<T*> cache_;
};

// An untyped allocator of a fixed layout with one planted Defect (of those
// that concern memory: kDoubleHandOut, kOverlap, kCorruptLive, kMisalign,
// kReturnNull; the typed-only defects behave as kNone). Freed memory is
// reused most recently freed first.
class BrokenUntypedAlloc {
 public:
  static constexpr bool kThreadSafe = true;

  BrokenUntypedAlloc(LeakyAlloc& leaky, object_alloc::Layout layout,
                     Defect defect, int period = 5)
      : arena_(leaky, layout, defect, period) {}

  object_alloc::Layout layout() const noexcept { return arena_.layout(); }

  void* Allocate() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    const bool trigger = arena_.Trigger();
    std::vector<void*>& live = arena_.live();
    if (trigger) {
      switch (arena_.defect()) {
        case Defect::kReturnNull:
          return nullptr;
        case Defect::kMisalign:
          if (void* p = arena_.MisalignedSlot()) return p;
          break;
        case Defect::kDoubleHandOut:
          if (!live.empty()) {
            void* p = live.back();
            live.push_back(p);
            return p;
          }
          break;
        case Defect::kOverlap:
          if (!live.empty()) {
            if (void* p = arena_.OverlappingSlot(
                    static_cast<unsigned char*>(live.back()))) {
              live.push_back(p);
              return p;
            }
          }
          break;
        case Defect::kCorruptLive:
          if (!live.empty()) arena_.Corrupt(live.front());
          break;
        default:
          break;
      }
    }
    void* p;
    if (!free_.empty()) {
      p = free_.back();
      free_.pop_back();
    } else {
      p = arena_.FreshSlot();
      if (p == nullptr) return nullptr;
    }
    live.push_back(p);
    return p;
  }

  void Deallocate(void* p) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    arena_.ForgetLive(p);
    free_.push_back(p);
  }

 private:
  std::mutex mu_;
  internal::BrokenArena arena_;
  std::vector<void*> free_;
};

}  // namespace object_alloc_test

#endif  // OBJECT_ALLOC_TEST_BROKEN_ALLOC_H_
