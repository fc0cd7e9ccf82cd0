// Implementation of the harness (see harness.h).
#include "object_alloc_test/harness.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <latch>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "object_alloc_test/corruption_tester.h"

namespace object_alloc_test {
namespace {

using object_alloc::Layout;
using object_alloc::UntypedObjectAllocInterface;

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// Allocators (and their environments) abandoned after a violation. Never
// destroyed, never touched again; reachable so that LeakSanitizer does not
// report them. See harness.h.
struct Abandoned {
  std::unique_ptr<TestEnv> env;
  std::unique_ptr<UntypedObjectAllocInterface> alloc;
};
std::mutex g_graveyard_mu;
std::vector<Abandoned>* const g_graveyard = new std::vector<Abandoned>;

void Abandon(std::unique_ptr<TestEnv> env,
             std::unique_ptr<UntypedObjectAllocInterface> alloc) {
  std::lock_guard<std::mutex> lock(g_graveyard_mu);
  g_graveyard->push_back(Abandoned{std::move(env), std::move(alloc)});
}

Violation MakeViolation(ViolationKind kind, const void* p, std::string msg) {
  return Violation{kind, reinterpret_cast<std::uintptr_t>(p), std::move(msg)};
}

bool AllZero(const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// The fingerprint of a small object: the low `n` bytes of its token.
bool MatchesToken(const unsigned char* p, std::size_t n, std::uint64_t token) {
  return std::memcmp(p, &token, n) == 0;
}

std::string HexBytes(const unsigned char* p, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) absl::StrAppendFormat(&out, "%02x", p[i]);
  return out;
}

// The object checks of harness.h, shared by the single- and multi-threaded
// runners. The registry (live and seen addresses) is guarded by mu_; object
// contents need no lock, because between Allocate() returning an object and
// the harness handing it back, exactly one harness thread owns it, and the
// allocator under test is responsible for ordering the previous owner's
// writes before the next owner's reads.
class Checker {
 public:
  Checker(Layout layout, bool typed)
      : size_(layout.size),
        align_(layout.align),
        typed_(typed),
        tester_(layout.size >= kMinTesterSize) {}

  std::optional<Violation> OnAllocated(void* p) {
    if (p == nullptr) {
      return MakeViolation(ViolationKind::kNullAllocation, p,
                           "Allocate() returned nullptr");
    }
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    if (a % align_ != 0) {
      return MakeViolation(
          ViolationKind::kMisaligned, p,
          absl::StrFormat("Allocate() returned %p, which is not aligned to %d",
                          p, align_));
    }
    const std::uint64_t token =
        Mix64(a ^ (next_token_.fetch_add(1, std::memory_order_relaxed) *
                   kGolden));
    bool reused;
    std::uint64_t last_token;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.lower_bound(a);
      if (it != live_.end() && it->first == a) {
        return MakeViolation(
            ViolationKind::kDoubleHandOut, p,
            absl::StrFormat("Allocate() returned %p, which is live (handed "
                            "out earlier and not deallocated since)",
                            p));
      }
      if (it != live_.end() && it->first < a + size_) {
        return OverlapViolation(p, it->first);
      }
      if (it != live_.begin() && std::prev(it)->first + size_ > a) {
        return OverlapViolation(p, std::prev(it)->first);
      }
      live_.emplace_hint(it, a, token);
      auto [seen, inserted] = seen_.try_emplace(a, 0);
      reused = !inserted;
      last_token = seen->second;
    }
    auto* bytes = static_cast<unsigned char*>(p);
    if (tester_) return typed_ ? CheckTypedTester(p, reused) : InitUntyped(p, reused);
    if (typed_) {
      if (!reused && !AllZero(bytes, size_)) {
        return MakeViolation(
            ViolationKind::kUnconstructed, p,
            absl::StrFormat("fresh %d-byte object at %p is not value-"
                            "initialised (reads %s, expected zeros): the "
                            "allocator handed out memory it did not construct",
                            size_, p, HexBytes(bytes, size_)));
      }
      if (reused && !AllZero(bytes, size_) &&
          !MatchesToken(bytes, size_, last_token)) {
        return MakeViolation(
            ViolationKind::kInvalidReuse, p,
            absl::StrFormat("%d-byte object at %p handed out again reads %s: "
                            "neither what the test left in it nor a freshly "
                            "constructed object (zeros)",
                            size_, p, HexBytes(bytes, size_)));
      }
    }
    std::memcpy(bytes, &token, size_);
    return std::nullopt;
  }

  std::optional<Violation> BeforeDeallocate(void* p) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    std::uint64_t token;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(a);
      if (it == live_.end()) {
        // The harness only frees what it holds; this is a harness bug.
        std::fprintf(stderr, "object_alloc_test: freeing untracked %p\n", p);
        std::abort();
      }
      token = it->second;
    }
    auto* bytes = static_cast<unsigned char*>(p);
    if (tester_) {
      std::uint64_t ph = 0;
      const TesterState s = tester::StateOf(p, size_, &ph);
      if (s != TesterState::kValid) {
        return MakeViolation(
            ViolationKind::kCorrupted, p,
            absl::StrFormat("live %d-byte object at %p is %s when the test "
                            "frees it (expected Valid): it was written while "
                            "the test held it",
                            size_, p, StateName(s)));
      }
      if (!typed_) tester::SetState(p, TesterState::kDropped, ph);
    } else if (!MatchesToken(bytes, size_, token)) {
      return MakeViolation(
          ViolationKind::kCorrupted, p,
          absl::StrFormat("live %d-byte object at %p reads %s when the test "
                          "frees it, expected %s: it was written while the "
                          "test held it",
                          size_, p, HexBytes(bytes, size_),
                          HexBytes(reinterpret_cast<unsigned char*>(&token),
                                   size_)));
    }
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(a);
    seen_[a] = token;
    return std::nullopt;
  }

  // Every address ever handed out must now be unmapped, Invalid or Dropped.
  // The objects are read through the kernel (CopyMemory): their memory may
  // be unmapped, or back in the C heap, where an instrumented read would be a
  // use-after-free report under ASan and TSan.
  std::optional<Violation> AfterDestroy() {
    if (!tester_) return std::nullopt;
    std::vector<unsigned char> copy(size_);
    for (const auto& [a, token] : seen_) {
      const void* p = reinterpret_cast<const void*>(a);
      if (!CopyMemory(p, size_, copy.data())) continue;  // Unmapped: fine.
      const TesterState s = tester::StateOfCopy(copy.data(), size_, p);
      if (s == TesterState::kNew || s == TesterState::kValid) {
        return MakeViolation(
            ViolationKind::kNotDestroyed, p,
            absl::StrFormat("object at %p is still %s after the allocator "
                            "was destroyed: an allocator must destroy the "
                            "objects it caches when it is destroyed",
                            p, StateName(s)));
      }
    }
    return std::nullopt;
  }

 private:
  Violation OverlapViolation(const void* p, std::uintptr_t other) const {
    return MakeViolation(
        ViolationKind::kOverlap, p,
        absl::StrFormat("Allocate() returned [%p, %p), which overlaps the "
                        "live object [%p, %p)",
                        p, static_cast<const void*>(static_cast<const char*>(p) + size_),
                        reinterpret_cast<void*>(other),
                        reinterpret_cast<void*>(other + size_)));
  }

  std::optional<Violation> CheckTypedTester(void* p, bool reused) {
    std::uint64_t ph = 0;
    const TesterState s = tester::StateOf(p, size_, &ph);
    if (s == TesterState::kNew) {
      tester::SetState(p, TesterState::kValid, ph);
      return std::nullopt;
    }
    if (!reused) {
      return MakeViolation(
          ViolationKind::kUnconstructed, p,
          absl::StrFormat("fresh object at %p is %s, not New: the allocator "
                          "handed out memory it did not construct",
                          p, StateName(s)));
    }
    switch (s) {
      case TesterState::kValid:
        return std::nullopt;  // A cached object, still constructed: fine.
      case TesterState::kDropped:
        return MakeViolation(
            ViolationKind::kUnconstructed, p,
            absl::StrFormat("object at %p handed out again is Dropped: the "
                            "allocator destroyed it and handed it out "
                            "without constructing it again",
                            p));
      default:
        return MakeViolation(
            ViolationKind::kInvalidReuse, p,
            absl::StrFormat("object at %p handed out again is Invalid: "
                            "neither left constructed nor destroyed, it was "
                            "written while the allocator held it",
                            p));
    }
  }

  std::optional<Violation> InitUntyped(void* p, bool reused) {
    if (reused) {
      const TesterState s = tester::StateOf(p, size_);
      if (s == TesterState::kNew || s == TesterState::kValid) {
        return MakeViolation(
            ViolationKind::kInvalidReuse, p,
            absl::StrFormat("memory at %p handed out again holds a "
                            "constructed object (%s), but the harness "
                            "destroyed it before giving it back",
                            p, StateName(s)));
      }
    }
    tester::Construct(p, size_, TesterState::kValid);
    return std::nullopt;
  }

  const std::size_t size_;
  const std::size_t align_;
  const bool typed_;
  const bool tester_;
  std::atomic<std::uint64_t> next_token_{1};
  std::mutex mu_;
  // Live objects -> fingerprint token. Guarded by mu_.
  std::map<std::uintptr_t, std::uint64_t> live_;
  // Every address ever handed out -> the last token written to it. Guarded
  // by mu_.
  std::unordered_map<std::uintptr_t, std::uint64_t> seen_;
};

std::unique_ptr<object_alloc::UntypedObjectAllocInterface> MakeChecked(
    const AllocCase& c, TestEnv& env, std::string* error) {
  if (!c.make) {
    *error = "the case has no factory";
    return nullptr;
  }
  auto alloc = c.make(env);
  if (alloc == nullptr) {
    *error = "the factory returned nullptr";
    return nullptr;
  }
  const Layout l = alloc->layout();
  if (!l.IsValid() || l != c.layout) {
    *error = absl::StrFormat(
        "the allocator reports layout {size %d, align %d}; the case expects "
        "{size %d, align %d} (and layouts must be valid)",
        l.size, l.align, c.layout.size, c.layout.align);
    return nullptr;
  }
  return alloc;
}

}  // namespace

std::uint64_t SplitMix64::Next() {
  state_ += kGolden;
  return Mix64(state_);
}

std::vector<Op> GenerateOps(std::uint64_t seed, std::size_t n) {
  SplitMix64 rng(seed);
  std::vector<Op> ops;
  ops.reserve(n);
  std::size_t live = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = rng.Next();
    if (live > 0 && (r & 1) != 0) {
      ops.push_back(Op{Op::Kind::kFree, static_cast<std::uint32_t>(r >> 32)});
      --live;
    } else {
      ops.push_back(Op{Op::Kind::kAlloc, 0});
      ++live;
    }
  }
  return ops;
}

std::vector<Op> GenerateFillDrainOps(std::uint64_t seed, std::size_t batch,
                                     std::size_t rounds) {
  SplitMix64 rng(seed);
  std::vector<Op> ops;
  ops.reserve(2 * batch * rounds);
  for (std::size_t r = 0; r < rounds; ++r) {
    for (std::size_t i = 0; i < batch; ++i) ops.push_back({Op::Kind::kAlloc, 0});
    for (std::size_t i = 0; i < batch; ++i) {
      ops.push_back(
          {Op::Kind::kFree, static_cast<std::uint32_t>(rng.Next() >> 32)});
    }
  }
  return ops;
}

std::vector<Op> CanonicalOps(std::span<const Op> ops) {
  std::vector<Op> out;
  std::size_t live = 0;
  for (const Op& op : ops) {
    if (op.kind == Op::Kind::kAlloc) {
      out.push_back(op);
      ++live;
    } else if (live > 0) {
      out.push_back(
          {Op::Kind::kFree, static_cast<std::uint32_t>(op.pick % live)});
      --live;
    }  // A free with nothing live does nothing: drop it.
  }
  return out;
}

namespace {

// `ops` must be canonical.
std::string FormatCanonical(std::span<const Op> ops) {
  std::string out;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (i > 0) out += ' ';
    if (ops[i].kind == Op::Kind::kAlloc) {
      out += 'a';
    } else {
      absl::StrAppendFormat(&out, "f%d", ops[i].pick);
    }
  }
  return out;
}

}  // namespace

std::string FormatOps(std::span<const Op> ops, std::size_t max_ops) {
  const std::vector<Op> canon = CanonicalOps(ops);
  std::string out = FormatCanonical(
      std::span<const Op>(canon).subspan(0, std::min(max_ops, canon.size())));
  if (canon.size() > max_ops) {
    absl::StrAppendFormat(&out, " ... (%d more)", canon.size() - max_ops);
  }
  return out;
}

std::string FormatOpsTail(std::span<const Op> ops, std::size_t n) {
  const std::vector<Op> canon = CanonicalOps(ops);
  const std::size_t from = canon.size() > n ? canon.size() - n : 0;
  return (from > 0 ? "... " : "") +
         FormatCanonical(std::span<const Op>(canon).subspan(from));
}

std::string_view PhaseName(RunResult::Phase phase) {
  switch (phase) {
    case RunResult::Phase::kOps:
      return "running the operations";
    case RunResult::Phase::kTeardownFree:
      return "freeing the remaining objects";
    case RunResult::Phase::kDestroy:
      return "destroying the allocator";
    case RunResult::Phase::kAfterDestroy:
      return "checking memory after the allocator was destroyed";
  }
  return "?";
}

RunResult RunOps(const AllocCase& c, std::span<const Op> ops) {
  RunResult result;
  ScopedViolationCapture capture;
  auto env = std::make_unique<TestEnv>();
  auto alloc = MakeChecked(c, *env, &result.setup_error);
  if (alloc == nullptr) return result;
  Checker checker(c.layout, c.typed);
  std::vector<void*> live;

  auto fail = [&](Violation v, RunResult::Phase phase, std::size_t index) {
    result.violation = std::move(v);
    result.phase = phase;
    result.op_index = index;
    Abandon(std::move(env), std::move(alloc));
    return result;
  };

  for (std::size_t i = 0; i < ops.size(); ++i) {
    std::optional<Violation> v;
    if (ops[i].kind == Op::Kind::kAlloc) {
      void* p = alloc->Allocate();
      v = checker.OnAllocated(p);
      if (!v) live.push_back(p);
    } else {
      if (live.empty()) continue;
      const std::size_t k = ops[i].pick % live.size();
      void* p = live[k];
      live[k] = live.back();
      live.pop_back();
      v = checker.BeforeDeallocate(p);
      if (!v) alloc->Deallocate(p);
    }
    // A destructor's report happened first (inside the allocator call).
    if (capture.has_violation()) {
      return fail(*capture.first(), RunResult::Phase::kOps, i);
    }
    if (v) return fail(*std::move(v), RunResult::Phase::kOps, i);
  }

  while (!live.empty()) {
    void* p = live.back();
    live.pop_back();
    std::optional<Violation> v = checker.BeforeDeallocate(p);
    if (!v) alloc->Deallocate(p);
    if (capture.has_violation()) {
      return fail(*capture.first(), RunResult::Phase::kTeardownFree,
                  ops.size());
    }
    if (v) return fail(*std::move(v), RunResult::Phase::kTeardownFree, ops.size());
  }

  alloc.reset();
  if (capture.has_violation()) {
    return fail(*capture.first(), RunResult::Phase::kDestroy, ops.size());
  }
  if (std::optional<Violation> v = checker.AfterDestroy()) {
    return fail(*std::move(v), RunResult::Phase::kAfterDestroy, ops.size());
  }
  result.op_index = ops.size();
  return result;  // env (and its leaky memory) goes only now.
}

RunResult RunThreaded(const AllocCase& c, const ThreadedOptions& options) {
  RunResult result;
  ScopedViolationCapture capture;
  auto env = std::make_unique<TestEnv>();
  auto alloc = MakeChecked(c, *env, &result.setup_error);
  if (alloc == nullptr) return result;
  const int threads = std::max(options.threads, 1);
  Checker checker(c.layout, c.typed);

  std::atomic<bool> stop{false};
  std::mutex first_mu;
  std::optional<Violation> first;  // Guarded by first_mu.
  int first_thread = -1;           // Guarded by first_mu.
  std::size_t first_op = 0;        // Guarded by first_mu.
  auto report = [&](Violation v, int thread, std::size_t op) {
    std::lock_guard<std::mutex> lock(first_mu);
    if (!first) {
      first = std::move(v);
      first_thread = thread;
      first_op = op;
    }
    stop.store(true, std::memory_order_relaxed);
  };

  // Objects in transit between threads. The mutex also orders the sender's
  // writes to an object before the receiver's checks of it.
  std::mutex mailbox_mu;
  std::vector<void*> mailbox;  // Guarded by mailbox_mu.
  std::vector<std::vector<void*>> lives(threads);
  std::latch start(threads);

  auto worker = [&](int t) {
    SplitMix64 rng(Mix64(options.seed + static_cast<std::uint64_t>(t) * kGolden));
    std::vector<void*>& live = lives[t];
    start.arrive_and_wait();
    for (std::size_t i = 0; i < options.ops_per_thread; ++i) {
      if (stop.load(std::memory_order_relaxed)) return;
      const std::uint64_t r = rng.Next();
      std::optional<Violation> v;
      if (live.empty() || (r & 1) == 0) {
        void* p = alloc->Allocate();
        v = checker.OnAllocated(p);
        if (!v) live.push_back(p);
      } else {
        const std::size_t k = (r >> 32) % live.size();
        void* p = live[k];
        live[k] = live.back();
        live.pop_back();
        if (((r >> 1) & 7) == 0) {
          // Hand the object to whichever thread looks in the mailbox next.
          std::lock_guard<std::mutex> lock(mailbox_mu);
          mailbox.push_back(p);
        } else {
          v = checker.BeforeDeallocate(p);
          if (!v) alloc->Deallocate(p);
        }
      }
      if (!v && ((r >> 4) & 15) == 0) {
        // Receive an object from another thread (usually) and free it here.
        void* p = nullptr;
        {
          std::lock_guard<std::mutex> lock(mailbox_mu);
          if (!mailbox.empty()) {
            p = mailbox.back();
            mailbox.pop_back();
          }
        }
        if (p != nullptr) {
          v = checker.BeforeDeallocate(p);
          if (!v) alloc->Deallocate(p);
        }
      }
      if (capture.has_violation()) {
        report(*capture.first(), t, i);
        return;
      }
      if (v) {
        report(*std::move(v), t, i);
        return;
      }
    }
  };

  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (std::thread& th : pool) th.join();

  if (first) {
    result.violation = std::move(first);
    result.thread = first_thread;
    result.op_index = first_op;
    result.phase = RunResult::Phase::kOps;
    Abandon(std::move(env), std::move(alloc));
    return result;
  }

  auto fail = [&](Violation v, RunResult::Phase phase) {
    result.violation = std::move(v);
    result.phase = phase;
    result.op_index = options.ops_per_thread;
    Abandon(std::move(env), std::move(alloc));
    return result;
  };
  // Free the rest on this thread: cross-thread frees for every object.
  std::vector<void*> rest = std::move(mailbox);
  for (auto& l : lives) rest.insert(rest.end(), l.begin(), l.end());
  for (void* p : rest) {
    std::optional<Violation> v = checker.BeforeDeallocate(p);
    if (!v) alloc->Deallocate(p);
    if (capture.has_violation()) {
      return fail(*capture.first(), RunResult::Phase::kTeardownFree);
    }
    if (v) return fail(*std::move(v), RunResult::Phase::kTeardownFree);
  }
  alloc.reset();
  if (capture.has_violation()) {
    return fail(*capture.first(), RunResult::Phase::kDestroy);
  }
  if (std::optional<Violation> v = checker.AfterDestroy()) {
    return fail(*std::move(v), RunResult::Phase::kAfterDestroy);
  }
  result.op_index = options.ops_per_thread;
  return result;
}

std::vector<Op> ShrinkFailingOps(const AllocCase& c, std::span<const Op> ops,
                                 ViolationKind kind, std::size_t max_replays,
                                 std::size_t max_replayed_ops) {
  std::vector<Op> best(ops.begin(), ops.end());
  std::size_t replays = 0;
  std::size_t replayed = 0;
  bool out_of_budget = false;

  // Whether `candidate` still fails with `kind`; if so, *trimmed is the
  // candidate cut after the failing op.
  auto still_fails = [&](const std::vector<Op>& candidate,
                         std::vector<Op>* trimmed) {
    if (replays >= max_replays ||
        replayed + candidate.size() > max_replayed_ops) {
      out_of_budget = true;
      return false;
    }
    ++replays;
    replayed += candidate.size();
    const RunResult r = RunOps(c, candidate);
    if (!r.violation || r.violation->kind != kind) return false;
    *trimmed = candidate;
    if (r.phase == RunResult::Phase::kOps && r.op_index + 1 < trimmed->size()) {
      trimmed->resize(r.op_index + 1);
    }
    return true;
  };

  // First try the allocations alone: many failures need no free at all (the
  // teardown frees everything anyway), and this costs one replay.
  {
    std::vector<Op> allocs;
    for (const Op& op : best) {
      if (op.kind == Op::Kind::kAlloc) allocs.push_back(op);
    }
    std::vector<Op> trimmed;
    if (!allocs.empty() && allocs.size() < best.size() &&
        still_fails(allocs, &trimmed)) {
      best = std::move(trimmed);
    }
  }
  std::size_t chunk = std::max<std::size_t>(best.size() / 2, 1);
  while (!out_of_budget && !best.empty()) {
    bool progress = false;
    for (std::size_t start = 0; start < best.size() && !out_of_budget;) {
      std::vector<Op> candidate;
      candidate.reserve(best.size());
      candidate.insert(candidate.end(), best.begin(),
                       best.begin() + static_cast<std::ptrdiff_t>(start));
      const std::size_t end = std::min(best.size(), start + chunk);
      candidate.insert(candidate.end(),
                       best.begin() + static_cast<std::ptrdiff_t>(end),
                       best.end());
      std::vector<Op> trimmed;
      if (!candidate.empty() && still_fails(candidate, &trimmed)) {
        best = std::move(trimmed);
        progress = true;
      } else {
        start += chunk;
      }
    }
    if (chunk == 1 && !progress) break;
    if (!progress) chunk = std::max<std::size_t>(chunk / 2, 1);
    chunk = std::min(chunk, std::max<std::size_t>(best.size() / 2, 1));
  }
  return CanonicalOps(best);
}

bool UnderSanitizer() {
#if defined(ADDRESS_SANITIZER) || defined(THREAD_SANITIZER) || \
    defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

std::size_t DefaultIters() {
#if defined(THREAD_SANITIZER) || defined(__SANITIZE_THREAD__)
  return 10000;
#else
  return UnderSanitizer() ? 20000 : 100000;
#endif
}

namespace {

bool ParseU64(const char* text, std::uint64_t* out) {
  if (text == nullptr || *text == '\0' || *text == '-') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

std::optional<SuiteOptions> OptionsFromEnv(std::string* error) {
  SuiteOptions o{DefaultIters(), kDefaultSeed, 4, kDefaultThreadedIters};
  std::uint64_t v;
  if (const char* s = std::getenv("OBJECT_ALLOC_TEST_ITERS"); s != nullptr) {
    if (!ParseU64(s, &v) || v == 0 || v > 1000000000) {
      *error = absl::StrFormat(
          "OBJECT_ALLOC_TEST_ITERS=\"%s\": expected an integer in "
          "[1, 1000000000]",
          s);
      return std::nullopt;
    }
    o.iters = static_cast<std::size_t>(v);
  }
  if (const char* s = std::getenv("OBJECT_ALLOC_TEST_THREADED_ITERS");
      s != nullptr) {
    if (!ParseU64(s, &v) || v == 0 || v > 1000000000) {
      *error = absl::StrFormat(
          "OBJECT_ALLOC_TEST_THREADED_ITERS=\"%s\": expected an integer in "
          "[1, 1000000000]",
          s);
      return std::nullopt;
    }
    o.threaded_iters = static_cast<std::size_t>(v);
  }
  if (const char* s = std::getenv("OBJECT_ALLOC_TEST_SEED"); s != nullptr) {
    if (!ParseU64(s, &v)) {
      *error = absl::StrFormat(
          "OBJECT_ALLOC_TEST_SEED=\"%s\": expected an unsigned 64-bit integer "
          "(decimal or 0x-hex)",
          s);
      return std::nullopt;
    }
    o.seed = v;
  }
  if (const char* s = std::getenv("OBJECT_ALLOC_TEST_THREADS"); s != nullptr) {
    if (!ParseU64(s, &v) || v < 2 || v > 64) {
      *error = absl::StrFormat(
          "OBJECT_ALLOC_TEST_THREADS=\"%s\": expected an integer in [2, 64]",
          s);
      return std::nullopt;
    }
    o.threads = static_cast<int>(v);
  }
  return o;
}

std::uint64_t DeriveSeed(std::uint64_t base, std::string_view test,
                         std::string_view case_name) {
  // FNV-1a over "test/case", then mixed with the base seed.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto add = [&h](std::string_view s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 0x100000001b3ULL;
    }
  };
  add(test);
  add("/");
  add(case_name);
  return Mix64(base ^ Mix64(h));
}

}  // namespace object_alloc_test
