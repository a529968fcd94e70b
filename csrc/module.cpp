// The Python module fused_dropout._C. Importing it loads the library, whose static initialisers register the
// kernels with the dispatcher; it also reports how the extension was built.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstdint>
#include <limits>

#include "cpu/cpu_kernels.h"
#include "op_autograd.h"

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(fused_dropout::cpu::isa_name()); }

PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  if (!fused_dropout::cpu::set_isa(name)) {
    PyErr_Format(PyExc_ValueError, "CPU kernel variant '%s' is not available on this machine", name);
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* set_python_autograd_kernel(PyObject*, PyObject* args) {
  const char* name = nullptr;
  PyObject* kernel = nullptr;
  if (!PyArg_ParseTuple(args, "sO", &name, &kernel)) return nullptr;
  if (!PyCallable_Check(kernel)) {
    PyErr_SetString(PyExc_TypeError, "set_python_autograd_kernel: the kernel must be callable");
    return nullptr;
  }
  fused_dropout::set_python_autograd_kernel(name, kernel);
  Py_RETURN_NONE;
}

// A fresh seed for an op on x: torch.randint(INT64_MIN, INT64_MAX, (1,), dtype=torch.int64, device=x.device)
// from the device's default generator, the same op and draw as fused_dropout._rng.make_seed, without the
// microsecond of Python argument parsing that torch.randint costs (the common call's shortcut draws one per call).
PyObject* draw_seed_like(PyObject*, PyObject* x) {
  HANDLE_TH_ERRORS
  if (!THPVariable_Check(x)) {
    PyErr_SetString(PyExc_TypeError, "draw_seed_like: x must be a tensor");
    return nullptr;
  }
  const at::Tensor& tensor = THPVariable_Unpack(x);
  at::Tensor seed;
  {
    // The draw runs without the GIL, as torch.randint's does.
    pybind11::gil_scoped_release no_gil;
    seed = at::randint(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), {1},
                       at::TensorOptions().dtype(at::kLong).device(tensor.device()));
  }
  return THPVariable_Wrap(std::move(seed));
  END_HANDLE_TH_ERRORS
}

PyObject* has_cuda_kernels(PyObject*, PyObject*) {
#if defined(FD_WITH_CUDA)
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "Instruction set of the CPU kernel variant chosen on this machine."},
    {"set_cpu_isa", set_cpu_isa, METH_O, "Selects the CPU kernel variant ('avx512', 'avx2' or 'generic'), for tests."},
    {"set_python_autograd_kernel", set_python_autograd_kernel, METH_VARARGS,
     "(op name, callable): the Python Autograd kernel the native op runs under forward-mode AD and torch.func."},
    {"draw_seed_like", draw_seed_like, METH_O,
     "(x): a one-element int64 seed tensor on x's device, drawn as torch.randint(INT64_MIN, INT64_MAX, (1,)) is."},
    {"has_cuda_kernels", has_cuda_kernels, METH_NOARGS, "Whether the extension was built with the CUDA kernels."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "fused_dropout native kernels", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
