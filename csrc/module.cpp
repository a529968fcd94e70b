// The Python module fused_dropout._C. Importing it loads the library, whose static initialisers register the
// kernels with the dispatcher; it also reports how the extension was built.
#include <Python.h>

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
    {"has_cuda_kernels", has_cuda_kernels, METH_NOARGS, "Whether the extension was built with the CUDA kernels."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "fused_dropout native kernels", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
