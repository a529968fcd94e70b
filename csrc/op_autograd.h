// The Python side of the native ops' autograd (op_autograd.cpp): forward-mode AD and torch.func transforms run
// the Python Autograd kernel of fused_dropout/_autograd.py, which Python hands over here once per op.
#pragma once

#include <Python.h>

#include <string>

namespace fused_dropout {

// Keeps `kernel` (a callable taking the op's arguments in schema order) for the op named `op_name`
// ("fused_dropout::dropout_fwd", ...), replacing an earlier one.
bool set_python_autograd_kernel(const std::string& op_name, PyObject* kernel);

}  // namespace fused_dropout
