// torch_internal.hpp — private to the libtorch backend module (torch.cpp, dist.cpp): the handle
// types and the exception-to-status guard every extern "C" body runs in.
#ifndef PS_TORCH_INTERNAL_HPP
#define PS_TORCH_INTERNAL_HPP

#include <torch/torch.h>

#include <string>

#include "ps_torch.h"

struct ps_tensor {
  at::Tensor t;
};

namespace ps_torch_impl {

// Sets libtorch's threads once per process (torch.cpp).
void ensure_init();

// Shorten libtorch's messages: the first line is the useful part.
inline std::string first_lines(const char *what) {
  std::string s(what ? what : "unknown error");
  size_t p = s.find("\nException raised from");
  if (p != std::string::npos) s.resize(p);
  if (s.size() > 900) s.resize(900);
  return s;
}

struct ps_status_error {
  int status;
  std::string msg;
};

[[noreturn]] inline void fail(int status, const std::string &msg) { throw ps_status_error{status, msg}; }

#define PS_PROTECT(...) /* the body: variadic, so top-level commas are fine */ \
  try {                                                                       \
    ps_torch_impl::ensure_init();                                             \
    __VA_ARGS__                                                               \
  } catch (const ps_status_error &e) {                                        \
    return ps_error(e.status, "torch: %s", e.msg.c_str());                    \
  } catch (const c10::Error &e) {                                             \
    return ps_error(PS_ETORCH, "torch: %s", first_lines(e.what_without_backtrace()).c_str()); \
  } catch (const std::bad_alloc &) {                                          \
    return ps_error(PS_ENOMEM, "torch: out of memory");                       \
  } catch (const std::exception &e) {                                         \
    return ps_error(PS_ETORCH, "torch: %s", first_lines(e.what()).c_str());   \
  } catch (...) {                                                             \
    return ps_error(PS_ETORCH, "torch: unknown exception");                   \
  }

// For the few functions that return a value instead of a status: same catch-all, a fallback value.
#define PS_PROTECT_VAL(fallback, body)                                        \
  try {                                                                       \
    body                                                                      \
  } catch (const std::exception &e) {                                         \
    ps_error(PS_ETORCH, "torch: %s", first_lines(e.what()).c_str());          \
    return fallback;                                                          \
  } catch (...) {                                                             \
    ps_error(PS_ETORCH, "torch: unknown exception");                          \
    return fallback;                                                          \
  }


inline const at::Tensor &T(const ps_tensor *t, const char *what = "tensor") {
  if (!t) fail(PS_EINVAL, std::string(what) + " is NULL");
  if (!t->t.defined()) fail(PS_EINVAL, std::string(what) + " is undefined");
  return t->t;
}

}  // namespace ps_torch_impl
#endif
