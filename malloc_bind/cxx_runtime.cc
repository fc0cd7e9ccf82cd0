// The C++ runtime entry points malloc_bind's operator new forms use, all as
// weak references (cxx_runtime.h explains why). Every symbol below is
// declared under its own mangled or C name with an asm label, so that the
// declarations never clash with <new> or <cxxabi.h>, and the compiler's
// own references from the nothrow forms' try/catch are made weak by the
// `.weak` directives. A link that must not depend on the C++ runtime
// (libelfc.so) therefore sees no strong reference from this file; the
// libelfc.so load test checks that none comes from elsewhere either.
#include "malloc_bind/cxx_runtime.h"

#include <unwind.h>

#include <cstddef>
#include <new>

#include "absl/base/internal/raw_logging.h"

namespace malloc_bind {
namespace internal {

// Not in an anonymous namespace: the compiler would then take these for
// internal symbols that cannot be null and drop the null checks.

// std::get_new_handler() (libstdc++ and libc++ both export it under this
// name: the function is in namespace std, not in libc++'s inline namespace).
std::new_handler WeakGetNewHandler() noexcept
    __asm__("_ZSt15get_new_handlerv") __attribute__((weak));

// Itanium C++ ABI exception entry points.
void* WeakCxaAllocateException(std::size_t size) noexcept
    __asm__("__cxa_allocate_exception") __attribute__((weak));
[[noreturn]] void WeakCxaThrow(void* exception, void* type_info,
                               void (*destructor)(void*))
    __asm__("__cxa_throw") __attribute__((weak));

// std::bad_alloc's typeinfo, vtable and complete-object destructor.
extern const char kBadAllocTypeInfo[] __asm__("_ZTISt9bad_alloc")
    __attribute__((weak));
extern const void* const kBadAllocVtable[] __asm__("_ZTVSt9bad_alloc")
    __attribute__((weak));
void WeakBadAllocDestructor(void* self) noexcept
    __asm__("_ZNSt9bad_allocD1Ev") __attribute__((weak));

// The object ThrowBadAlloc builds by hand is a bare vtable pointer.
static_assert(sizeof(std::bad_alloc) == sizeof(void*),
              "std::bad_alloc is not a lone vtable pointer on this ABI");

// The catch (...) in CallNewHandlerNothrow makes the compiler refer to the
// personality routine (from the unwind tables), __cxa_begin_catch,
// __cxa_end_catch and, for clang, std::terminate. These are only reached
// while an exception thrown by a handler unwinds, which needs a runtime that
// defines them all, so weak references lose nothing.
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
__asm__(
    ".weak __gxx_personality_v0\n\t"
    ".weak __cxa_begin_catch\n\t"
    ".weak __cxa_end_catch\n\t"
    ".weak _ZSt9terminatev");
#endif

}  // namespace internal
}  // namespace malloc_bind

// The personality routine for a shared object linked with
// `-Wl,--wrap=__gxx_personality_v0` (libelfc.so). The unwind tables of every
// C++ object with a noexcept function that calls a possibly-throwing one name
// __gxx_personality_v0 (it is what would call std::terminate if an exception
// reached the noexcept boundary), so each such object refers to it strongly
// and the link would need libstdc++. --wrap sends those references here
// instead, and this forwards to the real routine through a weak reference.
// Without a C++ runtime no C++ exception can exist; what can still unwind
// through these frames is a foreign one (pthread_cancel's forced unwind),
// which passes through a frame without handlers, as C frames let it. Unused
// (and discarded) in links without the option.
extern "C" {
_Unwind_Reason_Code __real___gxx_personality_v0(
    int version, _Unwind_Action actions, _Unwind_Exception_Class exception_class,
    _Unwind_Exception* exception, _Unwind_Context* context)
    __attribute__((weak));

__attribute__((visibility("hidden"))) _Unwind_Reason_Code
__wrap___gxx_personality_v0(int version, _Unwind_Action actions,
                            _Unwind_Exception_Class exception_class,
                            _Unwind_Exception* exception,
                            _Unwind_Context* context);

_Unwind_Reason_Code __wrap___gxx_personality_v0(
    int version, _Unwind_Action actions,
    _Unwind_Exception_Class exception_class, _Unwind_Exception* exception,
    _Unwind_Context* context) {
  if (__real___gxx_personality_v0 == nullptr) return _URC_CONTINUE_UNWIND;
  return __real___gxx_personality_v0(version, actions, exception_class,
                                     exception, context);
}
}  // extern "C"

namespace malloc_bind {
namespace internal {

std::new_handler GetNewHandler() noexcept {
  return WeakGetNewHandler != nullptr ? WeakGetNewHandler() : nullptr;
}

bool CanThrowBadAlloc() noexcept {
  return WeakCxaAllocateException != nullptr && WeakCxaThrow != nullptr &&
         kBadAllocTypeInfo != nullptr && kBadAllocVtable != nullptr;
}

void ThrowBadAlloc() {
  if (CanThrowBadAlloc()) {
    void* e = WeakCxaAllocateException(sizeof(std::bad_alloc));
    // What std::bad_alloc's constructor does: point the object at the
    // vtable's address point, past the offset-to-top and typeinfo slots.
    *static_cast<const void* const**>(e) = kBadAllocVtable + 2;
    WeakCxaThrow(
        e, const_cast<char*>(kBadAllocTypeInfo),
        WeakBadAllocDestructor != nullptr ? &WeakBadAllocDestructor : nullptr);
  }
  ABSL_RAW_LOG(FATAL,
               "operator new: out of memory, and no C++ runtime is loaded "
               "to throw std::bad_alloc");
  __builtin_unreachable();
}

bool CallNewHandlerNothrow(std::new_handler handler) noexcept {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  try {
    handler();
  } catch (...) {
    return false;
  }
#else
  handler();
#endif
  return true;
}

}  // namespace internal
}  // namespace malloc_bind
