// treiber_stack: a lock-free LIFO stack of word-sized items (Treiber 1986),
// made ABA-safe and memory-safe by epoch-based reclamation.
//
// Nodes come from a type-stable BlockPool and go back to it only through
// epoch::Retire. A pop reads `top` and `top->next` while pinned, then CASes
// top -> next. The classic ABA failure needs `top` to be popped and pushed
// again between the read and the CAS; but a popped node is retired and cannot
// be handed out again (so cannot be pushed again) until every thread pinned
// at the time has unpinned. So if the CAS finds `top` unchanged, `top` never
// left the stack, and `top->next` (written only before the node is published)
// is still its successor. No tag bits or double-width CAS are needed.
//
// TryPush / TryPop make a single CAS attempt, so they report contention as a
// transient failure; Bagpipe uses that to spread threads over its stacks.
#ifndef BAGPIPE_TREIBER_STACK_H_
#define BAGPIPE_TREIBER_STACK_H_

#include <atomic>
#include <cstdint>
#include <new>

#include "bagpipe/bag.h"
#include "bagpipe/bag_ops.h"
#include "bagpipe/block_pool.h"
#include "bagpipe/epoch.h"

namespace bagpipe {

template <Item T>
class TreiberStack : public internal::PopOps<TreiberStack<T>, T> {
 public:
  using value_type = T;

  TreiberStack() noexcept = default;
  TreiberStack(const TreiberStack&) = delete;
  TreiberStack& operator=(const TreiberStack&) = delete;

  // REQUIRES: no concurrent operations. Remaining items are dropped.
  ~TreiberStack() {
    T item;
    while (this->Pop(&item)) {
    }
  }

  bool valid() const noexcept { return true; }

  bool TryPush(T item) noexcept { return PushImpl(item, /*once=*/true); }
  bool Push(T item) noexcept { return PushImpl(item, /*once=*/false); }

  // TryPop and Pop come from internal::PopOps (bag_ops.h).

  // Variants for callers that already hold an epoch::Guard (Bagpipe pins once
  // per operation instead of once per probe). REQUIRES: the calling thread is
  // pinned.
  bool TryPushPinned(T item) noexcept { return PushImpl(item, true); }
  bool PushPinned(T item) noexcept { return PushImpl(item, false); }
  PopStatus TryPopPinned(T* out) noexcept {
    Node* top = top_.v.load(std::memory_order_acquire);
    if (top == nullptr) return PopStatus::kEmpty;
    Node* next = top->next.load(std::memory_order_relaxed);
    if (!top_.v.compare_exchange_strong(top, next, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      return PopStatus::kTransient;
    }
    *out = ItemTraits<T>::Decode(top->value);
    top->~Node();
    Pool::Retire(top, epoch::kDefaultGrace);
    return PopStatus::kOk;
  }

 private:
  struct Node {
    std::atomic<Node*> next{nullptr};
    std::uintptr_t value = 0;
  };
  using Pool = internal::BlockPool<sizeof(Node)>;

  bool PushImpl(T item, bool once) noexcept {
    epoch::Guard g;
    if (!g.ok()) return false;
    void* mem = Pool::Get();
    if (mem == nullptr) return false;
    Node* n = new (mem) Node();
    n->value = ItemTraits<T>::Encode(item);
    Node* top = top_.v.load(std::memory_order_relaxed);
    do {
      n->next.store(top, std::memory_order_relaxed);
      if (top_.v.compare_exchange_weak(top, n, std::memory_order_release,
                                     std::memory_order_relaxed)) {
        return true;
      }
    } while (!once);
    n->~Node();
    Pool::Retire(n, epoch::kDefaultGrace);  // never published; see block_pool.h
    return false;
  }

  internal::PaddedAtomic<Node*> top_;
};

}  // namespace bagpipe

#endif  // BAGPIPE_TREIBER_STACK_H_
