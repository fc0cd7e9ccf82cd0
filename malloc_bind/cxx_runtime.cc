// The C++ runtime entry points malloc_bind's operator new forms use, all as
// weak references (cxx_runtime.h explains why). Every symbol below is
// declared under its own mangled or C name with an asm label, so that the
// declarations never clash with <new> or <cxxabi.h>, and the compiler's
// own references from the nothrow forms' try/catch are made weak by the
// `.weak` directives. A link that must not depend on the C++ runtime
// (libelfc.so) therefore sees no strong reference from this file; the
// libelfc.so load test checks that none comes from elsewhere either.
#include "malloc_bind/cxx_runtime.h"

#include <dlfcn.h>
#include <unwind.h>

#include <cstddef>
#include <cstdlib>
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

// What the catch (...) below calls; only to test that they are bound.
void* WeakCxaBeginCatch(void* exception) noexcept
    __asm__("__cxa_begin_catch") __attribute__((weak));
void WeakCxaEndCatch() __asm__("__cxa_end_catch") __attribute__((weak));

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

// The same for what clang's __clang_call_terminate calls (clang emits that
// helper, which calls __cxa_begin_catch and then std::terminate, into every
// object with a noexcept function that calls a possibly-throwing one; GCC
// leaves the terminate to the personality routine): libelfc.so also wraps
// `__cxa_begin_catch` and `_ZSt9terminatev`. Both are reached only when an
// exception meets a noexcept boundary, so a runtime is there; without one,
// abort is what std::terminate would do.
void* __real___cxa_begin_catch(void* exception) noexcept __attribute__((weak));
void __real__ZSt9terminatev() __attribute__((weak));

__attribute__((visibility("hidden"))) void* __wrap___cxa_begin_catch(
    void* exception) noexcept;
__attribute__((visibility("hidden"), noreturn)) void
__wrap__ZSt9terminatev() noexcept;

void* __wrap___cxa_begin_catch(void* exception) noexcept {
  if (__real___cxa_begin_catch == nullptr) abort();
  return __real___cxa_begin_catch(exception);
}

void __wrap__ZSt9terminatev() noexcept {
  if (__real__ZSt9terminatev != nullptr) __real__ZSt9terminatev();
  abort();
}
}  // extern "C"

namespace malloc_bind {
namespace internal {

namespace {

// The entry points of one C++ runtime.
struct Runtime {
  std::new_handler (*get_new_handler)() noexcept = nullptr;
  void* (*allocate_exception)(std::size_t) noexcept = nullptr;
  void (*throw_exception)(void*, void*, void (*)(void*)) = nullptr;
  const char* bad_alloc_type_info = nullptr;
  const void* const* bad_alloc_vtable = nullptr;
  void (*bad_alloc_destructor)(void*) noexcept = nullptr;

  bool CanThrow() const {
    return allocate_exception != nullptr && throw_exception != nullptr &&
           bad_alloc_type_info != nullptr && bad_alloc_vtable != nullptr;
  }
};

// A C++ runtime that was not there when the weak references were bound: a C
// program that dlopen()ed C++ code (a Python extension module, a plugin),
// often RTLD_LOCAL, so only a handle to the runtime itself finds it. Looked
// up afresh on every (cold) call: RTLD_NOLOAD never loads anything, the
// reference it takes is dropped at once, and a runtime unloaded later is
// never called through a stale pointer.
Runtime LateRuntime() noexcept {
  Runtime rt;
  for (const char* name : {"libstdc++.so.6", "libc++.so.1"}) {
    void* handle = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr) continue;
    auto get = [handle](const char* symbol) { return dlsym(handle, symbol); };
    rt.get_new_handler = reinterpret_cast<std::new_handler (*)() noexcept>(
        get("_ZSt15get_new_handlerv"));
    rt.allocate_exception =
        reinterpret_cast<void* (*)(std::size_t) noexcept>(
            get("__cxa_allocate_exception"));
    rt.throw_exception =
        reinterpret_cast<void (*)(void*, void*, void (*)(void*))>(
            get("__cxa_throw"));
    rt.bad_alloc_type_info =
        static_cast<const char*>(get("_ZTISt9bad_alloc"));
    rt.bad_alloc_vtable =
        static_cast<const void* const*>(get("_ZTVSt9bad_alloc"));
    rt.bad_alloc_destructor = reinterpret_cast<void (*)(void*) noexcept>(
        get("_ZNSt9bad_allocD1Ev"));
    dlclose(handle);
    if (rt.get_new_handler != nullptr) return rt;
    rt = Runtime();
  }
  return rt;
}

// The process's C++ runtime: the one bound at load time, else a late one,
// else none (all null).
Runtime FindRuntime() noexcept {
  if (WeakGetNewHandler == nullptr) return LateRuntime();
  Runtime rt;
  rt.get_new_handler = &WeakGetNewHandler;
  if (WeakCxaAllocateException != nullptr) {
    rt.allocate_exception = &WeakCxaAllocateException;
  }
  if (WeakCxaThrow != nullptr) rt.throw_exception = &WeakCxaThrow;
  rt.bad_alloc_type_info = kBadAllocTypeInfo;
  rt.bad_alloc_vtable = kBadAllocVtable;
  if (WeakBadAllocDestructor != nullptr) {
    rt.bad_alloc_destructor = &WeakBadAllocDestructor;
  }
  return rt;
}

}  // namespace

std::new_handler GetNewHandler() noexcept {
  const Runtime rt = FindRuntime();
  return rt.get_new_handler != nullptr ? rt.get_new_handler() : nullptr;
}

bool CanThrowBadAlloc() noexcept { return FindRuntime().CanThrow(); }

void ThrowBadAlloc() {
  const Runtime rt = FindRuntime();
  if (rt.CanThrow()) {
    void* e = rt.allocate_exception(sizeof(std::bad_alloc));
    // What std::bad_alloc's constructor does: point the object at the
    // vtable's address point, past the offset-to-top and typeinfo slots.
    *static_cast<const void* const**>(e) = rt.bad_alloc_vtable + 2;
    rt.throw_exception(e, const_cast<char*>(rt.bad_alloc_type_info),
                       rt.bad_alloc_destructor);
  }
  ABSL_RAW_LOG(FATAL,
               "operator new: out of memory, and no C++ runtime is loaded "
               "to throw std::bad_alloc");
  __builtin_unreachable();
}

bool CallNewHandlerNothrow(std::new_handler handler) noexcept {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
  // The catch below runs through the weak references bound at load time; a
  // handler of a late runtime (LateRuntime) could throw into a landing pad
  // that has no __cxa_begin_catch. Not calling it is what the nothrow forms
  // would end with if it threw: nullptr.
  // In a link that wraps __cxa_begin_catch (libelfc.so), the reference
  // is the wrapper, and the runtime's is its __real_ one.
  const bool begin_catch = WeakCxaBeginCatch == &__wrap___cxa_begin_catch
                               ? __real___cxa_begin_catch != nullptr
                               : WeakCxaBeginCatch != nullptr;
  if (!begin_catch || WeakCxaEndCatch == nullptr) return false;
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
