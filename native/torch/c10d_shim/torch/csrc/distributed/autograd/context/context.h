// Stand-in for libtorch's torch/csrc/distributed/autograd/context/context.h, which Debian's
// libtorch-dev 1.13 does not ship although c10d/reducer.hpp includes it. reducer.hpp needs only
// two names from it: the type of a pointer member (ContextPtr, a std::shared_ptr) and the
// GradCallback typedef in a static_assert. Both are declared here exactly as libtorch 1.13
// declares them; nothing in PneumoScope uses distributed autograd (RPC), so no other member of
// the class is ever named. Only dist.cpp sees this folder, and only when the real header is absent.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor &)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
