// object_alloc dynamic dispatch: hold "some object allocator" behind one
// pointer.
//
// The concepts in object_alloc.h are resolved at compile time, which is what
// allocator hot paths want. Some callers need the opposite: a registry of
// allocators of different types, a test harness that runs the same checks on
// any allocator without instantiating the checks per allocator type, a plugin
// boundary. For them:
//
//  * UntypedObjectAllocInterface: an abstract class whose virtual members are
//    exactly the UntypedObjectAlloc requirements (so the interface itself
//    satisfies the concept), plus a run-time thread_safe() query.
//  * UntypedObjectAllocWrapper<A>: owns an A and implements the interface.
//  * ObjectAllocInterface<T> / ObjectAllocWrapper<A>: the same for typed
//    allocators of T.
//
// Every call through the interface costs one indirect call; nothing else is
// added (no allocation, no locking).
#ifndef OBJECT_ALLOC_INTERFACE_H_
#define OBJECT_ALLOC_INTERFACE_H_

#include <utility>

#include "object_alloc/object_alloc.h"

namespace object_alloc {

class UntypedObjectAllocInterface {
 public:
  virtual ~UntypedObjectAllocInterface() = default;

  // The UntypedObjectAlloc requirements (see object_alloc.h).
  virtual Layout layout() const noexcept = 0;
  virtual void* Allocate() noexcept = 0;
  virtual void Deallocate(void* p) noexcept = 0;

  // Whether the allocator behind the interface declares kThreadSafe. The
  // interface type itself has no kThreadSafe member (it is a run-time
  // property), so IsThreadSafe<UntypedObjectAllocInterface>() is false.
  virtual bool thread_safe() const noexcept = 0;
};

template <UntypedObjectAlloc A>
class UntypedObjectAllocWrapper final : public UntypedObjectAllocInterface {
 public:
  UntypedObjectAllocWrapper() = default;
  // Constructs the wrapped allocator in place from `args`.
  template <class... Args>
  explicit UntypedObjectAllocWrapper(std::in_place_t, Args&&... args)
      : alloc_(std::forward<Args>(args)...) {}

  Layout layout() const noexcept override { return alloc_.layout(); }
  void* Allocate() noexcept override { return alloc_.Allocate(); }
  void Deallocate(void* p) noexcept override { alloc_.Deallocate(p); }
  bool thread_safe() const noexcept override { return IsThreadSafe<A>(); }

  A& get() noexcept { return alloc_; }
  const A& get() const noexcept { return alloc_; }

 private:
  A alloc_;
};

template <class T>
class ObjectAllocInterface {
 public:
  using value_type = T;

  virtual ~ObjectAllocInterface() = default;

  // The ObjectAlloc requirements (see object_alloc.h).
  virtual T* Allocate() noexcept = 0;
  virtual void Deallocate(T* p) noexcept = 0;

  // Whether the allocator behind the interface declares kThreadSafe.
  virtual bool thread_safe() const noexcept = 0;
};

template <ObjectAlloc A>
class ObjectAllocWrapper final
    : public ObjectAllocInterface<typename A::value_type> {
 public:
  using value_type = typename A::value_type;

  ObjectAllocWrapper() = default;
  // Constructs the wrapped allocator in place from `args`.
  template <class... Args>
  explicit ObjectAllocWrapper(std::in_place_t, Args&&... args)
      : alloc_(std::forward<Args>(args)...) {}

  value_type* Allocate() noexcept override { return alloc_.Allocate(); }
  void Deallocate(value_type* p) noexcept override { alloc_.Deallocate(p); }
  bool thread_safe() const noexcept override { return IsThreadSafe<A>(); }

  A& get() noexcept { return alloc_; }
  const A& get() const noexcept { return alloc_; }

 private:
  A alloc_;
};

}  // namespace object_alloc

#endif  // OBJECT_ALLOC_INTERFACE_H_
