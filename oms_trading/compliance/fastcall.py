"""Call a numba ``cfunc`` of int64 arguments from Python for ~80 ns instead of ~180.

numba's own entry point takes its arguments as a tuple and unboxes each through
PyNumber_Long / PyLong_AsLongLong / PyErr_Occurred: ~15-35 ns an argument on the 2-vCPU VM
of benchmarks/RESULTS.md, ~180 ns for the seven ints of the pre-trade kernel, which is most
of the accept path. ``fastcall`` JIT-compiles (llvmlite, as numba does) a small CPython
builtin of the METH_FASTCALL convention -- the arguments arrive as a C array, no tuple --
that converts each with PyLong_AsLongLong, calls the cfunc's address and boxes the int64
result with PyLong_FromLongLong. Only documented, stable C API is used (no PyLong layout).
A wrong argument raises as any builtin would (TypeError: not an int or wrong count;
OverflowError: outside int64), never reaches the kernel.

``fastcall`` returns None when this is not CPython or the builtin cannot be built or does
not pass its self-check; callers then keep numba's entry point. OMS_RISK_FASTCALL=0 turns it
off (for comparisons: ``oms bench engine`` reports both).
"""
from __future__ import annotations

import ctypes
import os
import platform

_METH_FASTCALL = 0x0080
_keep: list[object] = []      # the JIT engines and method definitions of the builtins made


class _PyMethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


def enabled() -> bool:
    return platform.python_implementation() == "CPython" and os.environ.get("OMS_RISK_FASTCALL", "1") != "0"


def fastcall(address: int, nargs: int, name: str):
    """A builtin ``name(i1, ..., inargs) -> int`` calling ``int64 f(int64 x nargs)`` at
    ``address`` (the caller keeps that code alive), or None (see the module doc)."""
    if not enabled():
        return None
    try:
        return _build(address, nargs, name)
    except Exception:   # noqa: BLE001 - any failure here means: use numba's entry point
        return None


def _build(address: int, nargs: int, name: str):
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    i64, i8p = ir.IntType(64), ir.IntType(8).as_pointer()
    module = ir.Module(name=f"fastcall_{name}")
    fn = ir.Function(module, ir.FunctionType(i8p, [i8p, i8p.as_pointer(), i64]), name=f"fastcall_{name}")
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def c_api(symbol: str, ty: ir.FunctionType):
        addr = ctypes.cast(getattr(ctypes.pythonapi, symbol), ctypes.c_void_p).value
        return b.inttoptr(ir.Constant(i64, addr), ty.as_pointer())
    as_longlong = c_api("PyLong_AsLongLong", ir.FunctionType(i64, [i8p]))
    err_occurred = c_api("PyErr_Occurred", ir.FunctionType(i8p, []))
    from_longlong = c_api("PyLong_FromLongLong", ir.FunctionType(i8p, [i64]))
    set_string = c_api("PyErr_SetString", ir.FunctionType(ir.VoidType(), [i8p, i8p]))
    null = ir.Constant(i8p, None)
    _self, args, n = fn.args

    good, bad = fn.append_basic_block("count_ok"), fn.append_basic_block("count_bad")
    b.cbranch(b.icmp_signed("==", n, ir.Constant(i64, nargs)), good, bad)
    b.position_at_end(bad)
    text = bytearray(f"{name}() takes exactly {nargs} int arguments".encode() + b"\0")
    message = ir.GlobalVariable(module, ir.ArrayType(ir.IntType(8), len(text)), name="message")
    message.initializer = ir.Constant(message.type.pointee, text)
    message.global_constant = True
    type_error = ctypes.c_void_p.in_dll(ctypes.pythonapi, "PyExc_TypeError").value
    b.call(set_string, [b.inttoptr(ir.Constant(i64, type_error), i8p), b.bitcast(message, i8p)])
    b.ret(null)

    b.position_at_end(good)
    failed = fn.append_basic_block("failed")
    values = []
    for k in range(nargs):
        value = b.call(as_longlong, [b.load(b.gep(args, [ir.Constant(i64, k)]))])
        maybe, ok = fn.append_basic_block(f"maybe_error_{k}"), fn.append_basic_block(f"arg_{k}_ok")
        b.cbranch(b.icmp_signed("==", value, ir.Constant(i64, -1)), maybe, ok)
        b.position_at_end(maybe)     # -1 is also a value: an error only if one is set
        b.cbranch(b.icmp_unsigned("!=", b.call(err_occurred, []), null), failed, ok)
        b.position_at_end(ok)
        values.append(value)
    kernel = b.inttoptr(ir.Constant(i64, address), ir.FunctionType(i64, [i64] * nargs).as_pointer())
    b.ret(b.call(from_longlong, [b.call(kernel, values)]))
    b.position_at_end(failed)
    b.ret(null)

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(parsed, machine)
    engine.finalize_object()
    method = _PyMethodDef(name.encode(), engine.get_function_address(f"fastcall_{name}"), _METH_FASTCALL, None)
    new_function = ctypes.pythonapi.PyCFunction_NewEx
    new_function.restype = ctypes.py_object
    new_function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    builtin = new_function(ctypes.addressof(method), None, None)
    _keep.append((engine, machine, parsed, method))
    if not _self_check(builtin, nargs):
        return None
    return builtin


def _self_check(builtin, nargs: int) -> bool:
    """The wrong-argument errors come out as Python exceptions (the kernel is not reached)."""
    for args, exc in ((("1",) * nargs, TypeError), ((1,) * (nargs + 1), TypeError), ((2**64,) * nargs, OverflowError)):
        try:
            builtin(*args)
        except exc:
            continue
        return False
    return True
