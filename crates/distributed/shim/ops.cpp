// Op counting through libtorch's RecordFunction (the hook its profiler uses): every operator
// the dispatcher runs while counting is on, and those called from outside another operator
// (top level: what the program itself dispatched). For benchmarks; off by default, and while
// off it costs nothing.
#include <ATen/record_function.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace {
std::atomic<int64_t> g_all{0};
std::atomic<int64_t> g_top{0};
at::CallbackHandle g_handle = 0;
thread_local int64_t t_depth = 0;
std::atomic<bool> g_by_name{false};
std::mutex g_names_mu;
std::map<std::string, int64_t> g_names;  // top-level operators by name, when asked for

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  g_all.fetch_add(1, std::memory_order_relaxed);
  if (t_depth++ == 0) {
    g_top.fetch_add(1, std::memory_order_relaxed);
    if (g_by_name.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(g_names_mu);
      ++g_names[fn.name()];
    }
  }
  return nullptr;
}

void on_exit(const at::RecordFunction&, at::ObserverContext*) { --t_depth; }
}  // namespace

extern "C" {
// Starts counting from zero (installs the callback once); by_name != 0 also counts the
// top-level operators by name (slower).
void pd_ops_start(int32_t by_name) {
  {
    std::lock_guard<std::mutex> lock(g_names_mu);
    g_names.clear();
  }
  g_by_name = by_name != 0;
  if (g_handle == 0) {
    g_handle = at::addGlobalCallback(
        at::RecordFunctionCallback(on_enter, on_exit).scopes({at::RecordScope::FUNCTION}).needsInputs(false));
  }
  g_all = 0;
  g_top = 0;
}

// Operators counted since the start: all of them, and the top-level ones.
void pd_ops_read(int64_t* all, int64_t* top) {
  *all = g_all.load();
  *top = g_top.load();
}

// The top-level operators by name as "name count" lines, into buf (cut at cap bytes);
// returns the bytes the whole text needs.
size_t pd_ops_names(char* buf, size_t cap) {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(g_names_mu);
    for (const auto& kv : g_names) out += kv.first + " " + std::to_string(kv.second) + "\n";
  }
  if (cap > 0) {
    size_t n = out.size() < cap - 1 ? out.size() : cap - 1;
    std::memcpy(buf, out.data(), n);
    buf[n] = 0;
  }
  return out.size() + 1;
}

void pd_ops_stop() {
  if (g_handle != 0) {
    at::removeCallback(g_handle);
    g_handle = 0;
  }
}
}
