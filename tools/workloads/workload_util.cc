// Implementation of the workload programs' shared plumbing (see
// workload_util.h): flag parsing, the PRNG, the thread runner and the RESULT
// line. Nothing here runs inside a timed section except Rng, Budget and the
// tag checks, which are inline in the header.

#include "tools/workloads/workload_util.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace workloads {
namespace {

std::string g_program = "workload";

__attribute__((format(printf, 1, 0))) void VPrint(const char* fmt,
                                                  va_list ap) {
  std::fprintf(stderr, "%s: ", g_program.c_str());
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
}

}  // namespace

void Usage(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VPrint(fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "%s: see --help\n", g_program.c_str());
  std::exit(2);
}

void Fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VPrint(fmt, ap);
  va_end(ap);
  std::abort();
}

Flags::Flags(int argc, char** argv, std::string_view description)
    : description_(description) {
  program_ = argc > 0 ? argv[0] : "workload";
  size_t slash = program_.rfind('/');
  if (slash != std::string::npos) program_ = program_.substr(slash + 1);
  g_program = program_;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      want_help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.find('=') == std::string::npos) {
      Usage("expected --name=value, got '%s'", arg.c_str());
    }
    size_t eq = arg.find('=');
    given_[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
}

const std::string* Flags::Find(const std::string& name, const std::string& def,
                               const std::string& help) {
  help_text_ += "  --" + name + "=" + def + "\n      " + help + "\n";
  used_[name] = true;
  auto it = given_.find(name);
  return it == given_.end() ? nullptr : &it->second;
}

int64_t Flags::Int(const std::string& name, int64_t def,
                   const std::string& help) {
  const std::string* v = Find(name, std::to_string(def), help);
  if (v == nullptr) return def;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (errno != 0 || end == v->c_str() || *end != '\0') {
    Usage("--%s=%s is not an integer", name.c_str(), v->c_str());
  }
  return x;
}

double Flags::Double(const std::string& name, double def,
                     const std::string& help) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", def);
  const std::string* v = Find(name, buf, help);
  if (v == nullptr) return def;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (end == v->c_str() || *end != '\0' || !std::isfinite(x)) {
    Usage("--%s=%s is not a number", name.c_str(), v->c_str());
  }
  return x;
}

std::string Flags::String(const std::string& name, const std::string& def,
                          const std::string& help) {
  const std::string* v = Find(name, def, help);
  return v == nullptr ? def : *v;
}

std::vector<size_t> Flags::SizeList(const std::string& name,
                                    const std::string& def,
                                    const std::string& help) {
  std::string text = String(name, def, help);
  std::vector<size_t> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    char* end = nullptr;
    unsigned long long x = std::strtoull(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || x == 0) {
      Usage("--%s=%s: expected positive sizes separated by commas",
            name.c_str(), text.c_str());
    }
    out.push_back(static_cast<size_t>(x));
    pos = comma + 1;
  }
  return out;
}

void Flags::Done() {
  if (want_help_) {
    std::printf("%s: %s\n\nFlags:\n%s", program_.c_str(), description_.c_str(),
                help_text_.c_str());
    std::exit(0);
  }
  for (const auto& [name, value] : given_) {
    if (!used_.count(name)) Usage("unknown flag --%s", name.c_str());
  }
}

Rng::Rng(uint64_t seed, uint64_t stream) {
  // splitmix64 of (seed, stream): distinct, well-mixed, never-zero states.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  state_ = z == 0 ? 0x853C49E6748FEA9BULL : z;
}

size_t Rng::LogUniform(size_t lo, size_t hi) {
  if (lo >= hi) return lo;
  // exp(uniform(log lo, log hi + 1)), clamped: a size class's share of the
  // draws is proportional to its log-width.
  double u = static_cast<double>(Next() >> 11) * 0x1.0p-53;
  double l = std::log(static_cast<double>(lo));
  double h = std::log(static_cast<double>(hi) + 1.0);
  auto s = static_cast<size_t>(std::exp(l + u * (h - l)));
  return s < lo ? lo : (s > hi ? hi : s);
}

void CheckTagFailed(const void* p, size_t n, unsigned char tag) {
  auto* c = static_cast<const volatile unsigned char*>(p);
  Fail("block %p of %zu bytes was overwritten (tag %02x, found %02x..%02x): "
       "the allocator handed out overlapping blocks",
       p, n, tag, c[0], c[n - 1]);
}

Budget ReadBudget(Flags& flags, uint64_t default_iterations,
                  const std::string& unit) {
  int64_t iterations = flags.Int("iterations",
                                 static_cast<int64_t>(default_iterations),
                                 "work to do: " + unit);
  double seconds = flags.Double(
      "seconds", 0,
      "if > 0, run for this long instead (wall clock) and ignore "
      "--iterations");
  if (iterations < 0) Usage("--iterations must be >= 0");
  if (seconds < 0) Usage("--seconds must be >= 0");
  return Budget(static_cast<uint64_t>(iterations), seconds);
}

SizeRange ReadSizes(Flags& flags, size_t default_min, size_t default_max) {
  int64_t size = flags.Int("size", 0, "if > 0, every block is this size "
                                      "(overrides --min_size/--max_size)");
  int64_t lo = flags.Int("min_size", static_cast<int64_t>(default_min),
                         "smallest block, bytes");
  int64_t hi = flags.Int("max_size", static_cast<int64_t>(default_max),
                         "largest block, bytes");
  if (size > 0) lo = hi = size;
  if (lo < 1 || hi < lo) Usage("need 1 <= --min_size <= --max_size");
  return {static_cast<size_t>(lo), static_cast<size_t>(hi)};
}

int ReadThreads(Flags& flags, int default_threads, const std::string& help) {
  int64_t n = flags.Int("threads", default_threads, help);
  if (n < 1 || n > 4096) Usage("--threads must be in [1, 4096]");
  return static_cast<int>(n);
}

uint64_t ReadSeed(Flags& flags) {
  return static_cast<uint64_t>(
      flags.Int("seed", 4141, "PRNG seed (each thread takes its own stream)"));
}

void RunBody(const std::function<void(int)>& body, int i) { body(i); }

double RunThreads(int n, Budget& budget, const std::function<void(int)>& body,
                  const std::function<void()>& wait_more) {
  // Every worker announces itself, then spins until the release, so thread
  // creation is outside the timed section and all start at once.
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      RunBody(body, i);
    });
  }
  while (ready.load(std::memory_order_acquire) < n) std::this_thread::yield();
  auto start = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  if (budget.timed()) {
    std::this_thread::sleep_until(
        start + std::chrono::duration<double>(budget.seconds()));
    budget.Stop();
  }
  for (auto& t : threads) t.join();
  if (wait_more) wait_more();
  auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(end - start).count();
}

uint64_t Sum(const std::vector<Counter>& counters) {
  uint64_t s = 0;
  for (const Counter& c : counters) s += c.value;
  return s;
}

std::string Field(const char* key, double value) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%s=%.6g", key, value);
  return buf;
}

void PrintResult(const char* workload, int threads, uint64_t ops,
                 double seconds, const std::string& extra) {
  if (ops == 0) Fail("no operations were done; nothing to report");
  std::printf("RESULT workload=%s threads=%d ops=%llu seconds=%.6f "
              "ops_per_sec=%.1f%s%s\n",
              workload, threads, static_cast<unsigned long long>(ops), seconds,
              static_cast<double>(ops) / seconds, extra.empty() ? "" : " ",
              extra.c_str());
  std::fflush(stdout);
}

}  // namespace workloads
