// bag: what every bagpipe structure shares: the word encoding of items, the
// pop status that separates "empty" from "try again", the revocation concept,
// and the WeakBag concept that Bagpipe<Q> accepts.
//
// Items are word-sized. Cells hold an encoded uintptr_t in which two values
// are reserved: kEmptyCell (0, "nothing written yet") and kTakenCell (~0,
// "consumed or revoked"). Pointers are stored as they are (so they must be
// neither null nor ~0); integers are stored plus one, so 0 is a valid item and
// only the two largest values of uintptr_t are not.
#ifndef BAGPIPE_BAG_H_
#define BAGPIPE_BAG_H_

#include <atomic>
#include <concepts>
#include <cstdint>
#include <type_traits>

namespace bagpipe {

// Result of a non-blocking pop.
//  kOk:        an item was removed and stored in *out.
//  kEmpty:     the structure was observed empty (see each structure for how
//              strong that observation is).
//  kTransient: contention made this attempt fail; the structure may hold
//              items. Retrying (or trying another queue) is the right reaction.
enum class PopStatus { kOk, kEmpty, kTransient };

namespace internal {
inline constexpr std::uintptr_t kEmptyCell = 0;
inline constexpr std::uintptr_t kTakenCell = ~std::uintptr_t{0};
}  // namespace internal

// How an item type maps to a cell word. Specialise for other word-sized types.
template <class T, class Enable = void>
struct ItemTraits;

template <class T>
struct ItemTraits<T*> {
  static std::uintptr_t Encode(T* p) noexcept {
    return reinterpret_cast<std::uintptr_t>(p);
  }
  static T* Decode(std::uintptr_t w) noexcept {
    return reinterpret_cast<T*>(w);
  }
};

template <class T>
struct ItemTraits<T, std::enable_if_t<std::is_integral_v<T> &&
                                      sizeof(T) <= sizeof(std::uintptr_t)>> {
  static std::uintptr_t Encode(T v) noexcept {
    return static_cast<std::uintptr_t>(v) + 1;
  }
  static T Decode(std::uintptr_t w) noexcept { return static_cast<T>(w - 1); }
};

template <class T>
concept Item = std::is_trivially_copyable_v<T> && requires(T t,
                                                           std::uintptr_t w) {
  { ItemTraits<T>::Encode(t) } noexcept -> std::same_as<std::uintptr_t>;
  { ItemTraits<T>::Decode(w) } noexcept -> std::same_as<T>;
};

// An object that can be revoked from a FaaQueue (or a Bagpipe of FaaQueues)
// while it sits in one. `handle()` is a word reserved for the queue: while the
// object is queued it records the address of its cell, otherwise it is 0.
// Users initialise it to 0 and never write it. An object may sit in at most
// one revocable queue at a time.
template <class R>
concept Revocable = requires(R& r) {
  { r.handle() } noexcept -> std::same_as<std::atomic<std::uintptr_t>&>;
};

// True for item types that revocable queues track: pointers to Revocable.
template <class T>
inline constexpr bool kIsRevocableItem = false;
template <Revocable R>
inline constexpr bool kIsRevocableItem<R*> = true;

// The interface Bagpipe<Q> needs from a queue or stack Q. All members are
// thread-safe and non-throwing.
//   TryPush(item) -> bool   one attempt; false = transient failure (or, rarely,
//                           out of memory); the item is not in the bag.
//   TryPop(&out) -> PopStatus
//   Push(item) -> bool      retries until success; false only on OOM.
//   Pop(&out) -> bool       retries while transient; false = empty.
//   valid() -> bool         construction succeeded (memory was available).
//   TryPushPinned / PushPinned / TryPopPinned: the same, for callers that
//                           already hold an epoch::Guard.
template <class Q>
concept WeakBag = Item<typename Q::value_type> &&
    requires(Q& q, const Q& cq, typename Q::value_type v,
             typename Q::value_type* out) {
  { q.TryPush(v) } noexcept -> std::same_as<bool>;
  { q.TryPop(out) } noexcept -> std::same_as<PopStatus>;
  { q.Push(v) } noexcept -> std::same_as<bool>;
  { q.Pop(out) } noexcept -> std::same_as<bool>;
  { cq.valid() } noexcept -> std::same_as<bool>;
  { q.TryPushPinned(v) } noexcept -> std::same_as<bool>;
  { q.PushPinned(v) } noexcept -> std::same_as<bool>;
  { q.TryPopPinned(out) } noexcept -> std::same_as<PopStatus>;
};

}  // namespace bagpipe

#endif  // BAGPIPE_BAG_H_
