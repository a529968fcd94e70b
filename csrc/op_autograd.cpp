// Autograd of the native ops (op_list.h), in C++: a call's cost must stay that of a plain ATen op, and a Python
// Autograd kernel costs several microseconds per call, more than the tiny-tensor kernel itself. Every forward and
// backward op gets one boxed Autograd kernel that takes one of three paths:
//   1. nothing to record (grad mode off or no input requires grad, no tangents, no torch.func transform):
//      redispatch straight to the CPU/CUDA kernel;
//   2. reverse mode only: an autograd node whose backward calls the backward op (itself differentiable through
//      the same kernels: double backward). The forward ops record a hand-written node (ForwardOpBackward), as
//      ATen's generated kernels do; the backward ops, on the double-backward path only, a C++ Function;
//   3. forward-mode AD (a tangent on an input) or an active torch.func transform, which C++ Functions do not
//      support: the Python Autograd kernel of fused_dropout/_autograd.py, which the Python side hands over with
//      set_python_autograd_kernel. Its formulas are the same; only these modes pay Python's cost.
// The backward ops that save the input (the smooth activations, *_input_bwd) take path 3 when a graph is recorded
// (double backward): it needs the activation's second derivative, which the Python formulas compose from torch
// ops.
#include "op_autograd.h"

#include <ATen/ATen.h>
#include <ATen/FuncTorchTLS.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/dynamo/compiled_autograd.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/library.h>

#include <map>
#include <memory>
#include <string>

#include "op_traits.h"

namespace fused_dropout {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using torch::jit::Stack;

// ---- path 3: the Python kernel ------------------------------------------------------------------------------

std::map<std::string, PyObject*>& python_kernels() {
  static std::map<std::string, PyObject*> kernels;  // op name -> callable (a strong reference, never released)
  return kernels;
}

PyObject* to_python(const c10::IValue& v) {
  if (v.isNone()) Py_RETURN_NONE;
  if (v.isTensor()) return THPVariable_Wrap(v.toTensor());
  if (v.isBool()) return PyBool_FromLong(v.toBool());
  if (v.isInt()) return PyLong_FromLongLong(v.toInt());
  if (v.isDouble()) return PyFloat_FromDouble(v.toDouble());
  if (v.isIntList()) {
    const c10::List<int64_t> values = v.toIntList();
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(values.size()));
    for (size_t i = 0; i < values.size(); ++i) PyList_SET_ITEM(list, i, PyLong_FromLongLong(values.get(i)));
    return list;
  }
  TORCH_CHECK(false, "fused_dropout: unexpected argument type ", v.tagKind(), " for the Python autograd kernel");
}

at::Tensor tensor_from_python(PyObject* obj) {
  TORCH_CHECK(THPVariable_Check(obj), "fused_dropout: the Python autograd kernel returned a non-tensor");
  return THPVariable_Unpack(obj);
}

// Runs the op's Python Autograd kernel on the stack's arguments and leaves its results on the stack. A Python
// exception travels back to the caller as itself.
void run_python_kernel(const c10::OperatorHandle& op, Stack* stack) {
  const std::string& name = op.schema().name();
  const auto found = python_kernels().find(name);
  TORCH_CHECK(found != python_kernels().end(), name,
              ": forward-mode AD and torch.func transforms need the Python autograd kernel, which fused_dropout "
              "registers when it is imported (import fused_dropout before calling torch.ops.fused_dropout)");
  const size_t num_args = op.schema().arguments().size();
  const size_t num_returns = op.schema().returns().size();
  std::vector<at::Tensor> outputs;
  {
    // Held for the whole exchange and released on every way out, errors (TORCH_CHECK, python_error) included.
    struct Gil {
      PyGILState_STATE state = PyGILState_Ensure();
      ~Gil() { PyGILState_Release(state); }
    } gil;
    PyObject* args = PyTuple_New(static_cast<Py_ssize_t>(num_args));
    for (size_t i = 0; i < num_args; ++i) {
      PyTuple_SET_ITEM(args, i, to_python(torch::jit::peek(*stack, i, num_args)));
    }
    PyObject* result = PyObject_CallObject(found->second, args);
    Py_DECREF(args);
    if (result == nullptr) {
      python_error error;
      error.persist();
      throw error;
    }
    const std::unique_ptr<PyObject, void (*)(PyObject*)> owned(result, [](PyObject* o) { Py_DECREF(o); });
    if (num_returns == 1) {
      outputs.push_back(tensor_from_python(result));
    } else {
      for (size_t i = 0; i < num_returns; ++i) outputs.push_back(tensor_from_python(PyTuple_GetItem(result, i)));
    }
  }
  torch::jit::drop(*stack, num_args);
  for (auto& t : outputs) torch::jit::push(*stack, std::move(t));
}

// ---- which path ---------------------------------------------------------------------------------------------

enum class Path { kNoGraph, kCppFunction, kPython };

// Whether a torch.func transform is active on this thread. The public header that says so directly
// (ATen/functorch/DynamicLayer.h) does not compile outside torch's tree, so this asks the check C++ Functions
// themselves run, which refuses exactly when transform layers are on the stack (an exception only in that case).
bool functorch_transform_active() {
  const auto& tls = at::functorch::functorchTLSAccessor();
  if (!tls) return false;
  try {
    tls->checkSupportsCppAutogradFunction();
    return false;
  } catch (const c10::Error&) {
    return true;
  }
}

// Whether the call has a mask geometry (a non-empty mask_runs, the only int list of the schemas). Its graph is
// recorded by the Python kernel, whose formulas pass the runs on; the C++ nodes keep the flat mask's state only,
// which keeps the common call's node as small as ATen's.
bool has_mask_runs(const c10::OperatorHandle& op, const Stack& stack) {
  const size_t num_args = op.schema().arguments().size();
  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = torch::jit::peek(stack, i, num_args);
    if (v.isIntList() && !v.toIntList().empty()) return true;
  }
  return false;
}

Path path_of(const c10::OperatorHandle& op, const Stack& stack) {
  if (functorch_transform_active()) return Path::kPython;
  const size_t num_args = op.schema().arguments().size();
  bool requires_grad = false;
  for (size_t i = 0; i < num_args; ++i) {
    const c10::IValue& v = torch::jit::peek(stack, i, num_args);
    if (!v.isTensor()) continue;
    const at::Tensor& t = v.toTensor();
    if (t._fw_grad(/*level=*/0).defined()) return Path::kPython;
    requires_grad = requires_grad || t.requires_grad();
  }
  return requires_grad && at::GradMode::is_enabled() ? Path::kCppFunction : Path::kNoGraph;
}

// ---- calls of the ops ---------------------------------------------------------------------------------------

template <ForwardOp kOp>
const c10::OperatorHandle& forward_handle() {
  static const c10::OperatorHandle handle =
      c10::Dispatcher::singleton().findSchemaOrThrow((std::string("fused_dropout::") + ForwardOpTraits<kOp>::kName +
                                                      "_fwd").c_str(), "");
  return handle;
}

template <BackwardOp kOp>
const c10::OperatorHandle& backward_handle() {
  static const c10::OperatorHandle handle = c10::Dispatcher::singleton().findSchemaOrThrow(
      (std::string("fused_dropout::") + BackwardOpTraits<kOp>::kName).c_str(), "");
  return handle;
}

c10::IValue optional_tensor(const at::Tensor& t) { return t.defined() ? c10::IValue(t) : c10::IValue(); }

// Optional tensor arguments as the typed calls take them.
std::optional<at::Tensor> optional_arg(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// The forward op's kernel below autograd, through a typed (unboxed) call: the CPU/CUDA kernels are registered
// unboxed, so no argument stack is built (the signature follows the schema, op_schemas.cpp). The flat mask only:
// a call with mask runs records its graph in Python.
template <ForwardOp kOp>
at::Tensor call_forward_below_autograd(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& bias,
                                       const at::Tensor& seed, int64_t offset, double p) {
  using Traits = ForwardOpTraits<kOp>;
  using Tensor = const at::Tensor&;
  using OptionalTensor = const std::optional<at::Tensor>&;
  using Runs = c10::IntArrayRef;
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const c10::OperatorHandle& handle = forward_handle<kOp>();
  if constexpr (Traits::kResidual && Traits::kOptionalBias) {
    static const auto typed =
        handle.typed<at::Tensor(Tensor, Tensor, OptionalTensor, OptionalTensor, int64_t, double, Runs)>();
    return typed.call(x, residual, optional_arg(bias), optional_arg(seed), offset, p, {});
  } else if constexpr (Traits::kResidual) {
    static const auto typed = handle.typed<at::Tensor(Tensor, Tensor, OptionalTensor, int64_t, double, Runs)>();
    return typed.call(x, residual, optional_arg(seed), offset, p, {});
  } else if constexpr (Traits::kOptionalBias) {
    static const auto typed =
        handle.typed<at::Tensor(Tensor, OptionalTensor, OptionalTensor, int64_t, double, Runs)>();
    return typed.call(x, optional_arg(bias), optional_arg(seed), offset, p, {});
  } else {
    static const auto typed = handle.typed<at::Tensor(Tensor, OptionalTensor, int64_t, double, Runs)>();
    return typed.call(x, optional_arg(seed), offset, p, {});
  }
}

// The backward op through the full dispatch when grad mode is on (recorded when a graph is being built: double
// backward), else below autograd; a typed call either way. `saved` is the seed (mask_bwd; undefined when p = 0),
// y (relu_output_bwd) or x (*_input_bwd, whose bias and seed come as saved_bias and saved_seed). The flat mask
// only (no mask runs), as call_forward_below_autograd.
template <BackwardOp kOp>
std::pair<at::Tensor, at::Tensor> call_backward(const at::Tensor& grad, const at::Tensor& saved, int64_t offset,
                                                double p, bool bias_grad, const at::Tensor& saved_bias = {},
                                                const at::Tensor& saved_seed = {}) {
  using Result = std::tuple<at::Tensor, at::Tensor>;
  std::optional<at::AutoDispatchBelowADInplaceOrView> below_autograd;
  if (!at::GradMode::is_enabled()) below_autograd.emplace();  // no graph can be recorded: straight to the kernel
  const c10::OperatorHandle& handle = backward_handle<kOp>();
  Result result;
  if constexpr (kSavesInput<kOp>) {
    using OptionalTensor = const std::optional<at::Tensor>&;
    static const auto typed = handle.typed<Result(const at::Tensor&, const at::Tensor&, OptionalTensor,
                                                  OptionalTensor, int64_t, c10::IntArrayRef, double, bool)>();
    result = typed.call(grad, saved, optional_arg(saved_bias), optional_arg(saved_seed), offset, {}, p, bias_grad);
  } else if constexpr (kKeepFromRngState<kOp>) {
    static const auto typed = handle.typed<Result(const at::Tensor&, const std::optional<at::Tensor>&, int64_t,
                                                  c10::IntArrayRef, double, bool)>();
    result = typed.call(grad, optional_arg(saved), offset, {}, p, bias_grad);
  } else {
    static const auto typed = handle.typed<Result(const at::Tensor&, const at::Tensor&, double, bool)>();
    result = typed.call(grad, saved, p, bias_grad);
  }
  return {std::move(std::get<0>(result)), std::move(std::get<1>(result))};
}

// ---- path 2: the autograd nodes -------------------------------------------------------------------------------

// The incoming gradient as the kernels read it: autograd lets a sparse COO gradient in.
at::Tensor dense(const at::Tensor& grad) { return grad.layout() == at::kStrided ? grad : grad.to_dense(); }

// The forward ops' backward node. Written as a plain autograd Node, as ATen's generated nodes are (nn.Dropout's
// NativeDropoutBackward0), not as a torch::autograd::Function: a Function's node (CppNode) builds a context, a
// string-keyed map for the non-tensor state and per-input metadata on every call, which made a tiny forward+backward
// 1.2x nn.Dropout's. The mask is never stored: the node keeps either the seed (8 bytes; the backward recomputes
// the mask) or the output y, which the next layer holds anyway (y > 0 exactly where kept and ReLU active).
// Its edges are the differentiable inputs in schema order: x, residual (ops that take one), bias (ops that take
// one; an absent bias is an empty edge).
template <ForwardOp kOp>
struct ForwardOpBackward final : torch::autograd::Node {
  using Traits = ForwardOpTraits<kOp>;
  static constexpr bool kSavesInput = fused_dropout::kSavesInput<Traits::kBackward>;
  static constexpr bool kSavesSeed = kKeepFromRngState<Traits::kBackward> && !kSavesInput;

  torch::autograd::SavedVariable saved;  // the seed (undefined when p = 0), the output y, or the input x
  torch::autograd::SavedVariable saved_bias;  // the input-saving ops' bias (undefined without one), else unused
  torch::autograd::SavedVariable saved_seed;  // the input-saving ops' seed (undefined when p = 0), else unused
  int64_t offset = 0;
  double p = 0.0;
  bool bias_grad = false;

  std::string name() const override { return std::string(Traits::kName) + "_fwdBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    saved.reset_data();
    saved_bias.reset_data();
    saved_seed.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    return gradients(grads[0], saved.unpack(getptr()), saved_bias.unpack(getptr()), saved_seed.unpack(getptr()),
                     offset, p, bias_grad);
  }

  // The gradients of the edges, from the backward op (itself differentiable: double backward); the residual's is
  // grad itself.
  static variable_list gradients(const at::Tensor& grad_out, const at::Tensor& saved_tensor,
                                 const at::Tensor& bias_tensor, const at::Tensor& seed_tensor, int64_t offset,
                                 double p, bool bias_grad) {
    variable_list result;
    if (!grad_out.defined()) {
      result.resize(kNumEdges);
      return result;
    }
    const at::Tensor grad = dense(grad_out);
    auto [grad_x, grad_bias] =
        call_backward<Traits::kBackward>(grad, saved_tensor, offset, p, bias_grad, bias_tensor, seed_tensor);
    result.push_back(std::move(grad_x));
    if (Traits::kResidual) result.push_back(grad);
    if (Traits::kOptionalBias) result.push_back(bias_grad ? std::move(grad_bias) : at::Tensor());
    return result;
  }
  static constexpr size_t kNumEdges = 1 + Traits::kResidual + Traits::kOptionalBias;

  // Compiled autograd: the node's state is part of the graph's cache key, and the backward is one call of
  // `gradients` in the traced graph (its ops have fake kernels, so the call is traceable).
  void compiled_args(torch::dynamo::autograd::CompiledNodeArgs& args) const override {
    args.collect(saved, /*is_output=*/!kSavesSeed && !kSavesInput);
    args.collect(saved_bias, /*is_output=*/false);
    args.collect(saved_seed, /*is_output=*/false);
    args.collect(offset);
    args.collect(p);
    args.collect(bias_grad);
  }

  variable_list apply_with_saved(const variable_list& grads,
                                 torch::dynamo::autograd::SwapSavedVariables& swap) override {
    swap.before(saved);
    swap.before(saved_bias);
    swap.before(saved_seed);
    const std::vector<c10::IValue> args{optional_tensor(saved.unpack(getptr())),
                                        optional_tensor(saved_bias.unpack(getptr())),
                                        optional_tensor(saved_seed.unpack(getptr())), offset, p, bias_grad};
    const auto optional_tensor_type = c10::OptionalType::create(at::TensorType::get());
    const std::vector<at::TypePtr> schema{optional_tensor_type, optional_tensor_type, optional_tensor_type,
                                          c10::IntType::get(), c10::FloatType::get(), c10::BoolType::get()};
    const auto& compiler = torch::dynamo::autograd::getPyCompilerInterface();
    // Bound once per process, as ATen's generated nodes are: compiled autograd's op registry is process-wide and
    // refuses a second binding of a name.
    static const std::string fn_name = compiler->bind_function(swap.get_py_compiler(), name(), &functional, schema,
                                                               /*is_custom_function=*/false, /*is_traceable=*/true);
    const auto output_metadata = torch::dynamo::autograd::IValuePacker<
        std::vector<std::optional<torch::autograd::InputMetadata>>>::pack(
        torch::dynamo::autograd::get_input_metadata(next_edges()));
    variable_list result =
        compiler->call_function(swap.get_py_compiler(), "apply_functional", fn_name, grads, args, output_metadata);
    swap.after(saved_seed);
    swap.after(saved_bias);
    swap.after(saved);
    return result;
  }

  static variable_list functional(const variable_list& grads, const std::vector<c10::IValue>& args) {
    auto tensor = [&](size_t i) { return args[i].isTensor() ? args[i].toTensor() : at::Tensor(); };
    return gradients(grads[0], tensor(0), tensor(1), tensor(2), args[3].toInt(), args[4].toDouble(),
                     args[5].toBool());
  }
};

// Runs the forward op below autograd and records its node, as ATen's generated Autograd kernels do.
template <ForwardOp kOp>
at::Tensor forward_with_node(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& bias,
                             const at::Tensor& seed, int64_t offset, double p) {
  using Traits = ForwardOpTraits<kOp>;
  using Node = ForwardOpBackward<kOp>;
  at::Tensor out = call_forward_below_autograd<kOp>(x, residual, bias, seed, offset, p);
  auto node = c10::make_intrusive<Node>();
  torch::autograd::edge_list edges{torch::autograd::impl::gradient_edge(x)};
  if (Traits::kResidual) edges.push_back(torch::autograd::impl::gradient_edge(residual));
  if (Traits::kOptionalBias) {
    edges.push_back(bias.defined() ? torch::autograd::impl::gradient_edge(bias) : torch::autograd::Edge());
  }
  node->set_next_edges(std::move(edges));
  torch::autograd::set_history(out, node);
  if constexpr (Node::kSavesInput) {
    // x and the bias are inputs, saved as such (an in-place change of either before the backward is an error).
    node->saved = torch::autograd::SavedVariable(x, /*is_output=*/false);
    node->saved_bias = torch::autograd::SavedVariable(bias, /*is_output=*/false);
    node->saved_seed = torch::autograd::SavedVariable(seed, /*is_output=*/false);
  } else {
    node->saved = torch::autograd::SavedVariable(Node::kSavesSeed ? seed : out, /*is_output=*/!Node::kSavesSeed);
  }
  node->offset = offset;
  node->p = p;
  node->bias_grad = bias.defined() && bias.requires_grad();
  return out;
}

// The backward ops are linear in grad: (grad_x, grad_bias) = (D grad, column sums of D grad) with D diagonal
// (keep * scale), so their own backward is D applied to gg_x plus gg_bias broadcast along the rows. The saved
// tensor (seed or y) gets no gradient: the keep decision is piecewise constant in it.
template <BackwardOp kOp>
struct BackwardFunction : torch::autograd::Function<BackwardFunction<kOp>> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, const std::optional<at::Tensor>& saved,
                               int64_t offset, double p, bool bias_grad) {
    const at::Tensor saved_tensor = saved.value_or(at::Tensor());
    std::pair<at::Tensor, at::Tensor> result;
    {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      result = call_backward<kOp>(grad, saved_tensor, offset, p, bias_grad);
    }
    ctx->save_for_backward({saved_tensor});
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["p"] = p;
    ctx->saved_data["bias_grad"] = bias_grad;
    return {result.first, result.second};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    at::Tensor input = dense(grads[0]);
    if (ctx->saved_data["bias_grad"].toBool()) input = (input + dense(grads[1])).reshape(input.sizes());
    at::Tensor gg = call_backward<kOp>(input, ctx->get_saved_variables()[0], ctx->saved_data["offset"].toInt(),
                                       ctx->saved_data["p"].toDouble(), false)
                        .first;
    return {gg, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---- the boxed Autograd kernels -----------------------------------------------------------------------------

// Paths 1 and 3, shared by every op: true when the call was finished here; false leaves path 2 (the op's C++
// Function) to the caller. With python_records_graph, path 2 is the Python kernel too.
bool finished_without_function(const c10::OperatorHandle& op, c10::DispatchKeySet keys, Stack* stack,
                               bool python_records_graph) {
  switch (path_of(op, *stack)) {
    case Path::kNoGraph:
      op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
      return true;
    case Path::kPython:
      run_python_kernel(op, stack);
      return true;
    case Path::kCppFunction:
      if (!python_records_graph) break;
      run_python_kernel(op, stack);
      return true;
  }
  return false;
}

// The op's arguments on the stack, read in schema order.
struct StackArgs {
  const Stack& stack;
  size_t count;
  size_t next_index = 0;
  const c10::IValue& next() { return torch::jit::peek(stack, next_index++, count); }
  std::optional<at::Tensor> next_optional_tensor() {
    const c10::IValue& v = next();
    return v.isTensor() ? std::optional<at::Tensor>(v.toTensor()) : std::nullopt;
  }
};

template <ForwardOp kOp>
void record_forward(const c10::OperatorHandle& op, Stack* stack) {
  using Traits = ForwardOpTraits<kOp>;
  StackArgs args{*stack, op.schema().arguments().size()};
  const at::Tensor x = args.next().toTensor();
  const std::optional<at::Tensor> residual = Traits::kResidual ? args.next_optional_tensor() : std::nullopt;
  const std::optional<at::Tensor> bias = Traits::kOptionalBias ? args.next_optional_tensor() : std::nullopt;
  const std::optional<at::Tensor> seed = args.next_optional_tensor();
  const int64_t offset = args.next().toInt();
  const double p = args.next().toDouble();
  at::Tensor out = forward_with_node<kOp>(x, residual.value_or(at::Tensor()), bias.value_or(at::Tensor()),
                                          seed.value_or(at::Tensor()), offset, p);
  torch::jit::drop(*stack, args.count);
  torch::jit::push(*stack, std::move(out));
}

template <ForwardOp kOp>
void forward_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet keys, Stack* stack) {
  if (finished_without_function(op, keys, stack, /*python_records_graph=*/has_mask_runs(op, *stack))) return;
  record_forward<kOp>(op, stack);
}

template <BackwardOp kOp>
void record_backward(const c10::OperatorHandle& op, Stack* stack) {
  StackArgs args{*stack, op.schema().arguments().size()};
  const at::Tensor grad = args.next().toTensor();
  const std::optional<at::Tensor> saved = args.next_optional_tensor();
  const int64_t offset = kKeepFromRngState<kOp> ? args.next().toInt() : 0;
  if (kKeepFromRngState<kOp>) args.next();  // the mask runs: empty here (has_mask_runs), the flat mask
  const double p = args.next().toDouble();
  const bool bias_grad = args.next().toBool();
  variable_list result = BackwardFunction<kOp>::apply(grad, saved, offset, p, bias_grad);
  torch::jit::drop(*stack, args.count);
  torch::jit::push(*stack, std::move(result[0]), std::move(result[1]));
}

template <BackwardOp kOp>
void backward_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet keys, Stack* stack) {
  if (finished_without_function(op, keys, stack, kSavesInput<kOp> || has_mask_runs(op, *stack))) return;
  if constexpr (!kSavesInput<kOp>) record_backward<kOp>(op, stack);
}

}  // namespace

bool set_python_autograd_kernel(const std::string& op_name, PyObject* kernel) {
  auto& kernels = python_kernels();
  Py_INCREF(kernel);
  auto found = kernels.find(op_name);
  if (found != kernels.end()) Py_DECREF(found->second);
  kernels[op_name] = kernel;
  return true;
}

TORCH_LIBRARY_IMPL(fused_dropout, Autograd, m) {
#define FD_AUTOGRAD_FORWARD(name, ...) \
  m.impl(#name "_fwd", torch::CppFunction::makeFromBoxedFunction<&forward_autograd<ForwardOp::name>>());
  FD_FORWARD_OPS(FD_AUTOGRAD_FORWARD)
#undef FD_AUTOGRAD_FORWARD
#define FD_AUTOGRAD_BACKWARD(name, ...) \
  m.impl(#name, torch::CppFunction::makeFromBoxedFunction<&backward_autograd<BackwardOp::name>>());
  FD_BACKWARD_OPS(FD_AUTOGRAD_BACKWARD)
#undef FD_AUTOGRAD_BACKWARD
}

}  // namespace fused_dropout
