"""The few libbpf calls we make, typed, through ctypes over libbpf.so.1; and
the error that says why BPF cannot be used here."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any, Callable

Pointer = int | None        # what ctypes gives for a c_void_p result
ByRef = Any                 # ctypes.byref(...) or a buffer, passed as a pointer


class BpfError(Exception):
    """BPF cannot be used here; the message says why and what would fix it."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Libbpf:
    """The few libbpf calls we need, typed."""

    bpf_object__open_file: Callable[[bytes, Pointer], Pointer]
    bpf_object__load: Callable[[Pointer], int]
    bpf_object__close: Callable[[Pointer], None]
    bpf_object__find_map_by_name: Callable[[Pointer, bytes], Pointer]
    bpf_map__attach_struct_ops: Callable[[Pointer], Pointer]
    bpf_map__fd: Callable[[Pointer], int]
    bpf_link__destroy: Callable[[Pointer], int]
    bpf_map_update_elem: Callable[[int, ByRef, ByRef, int], int]
    bpf_map_delete_elem: Callable[[int, ByRef], int]
    bpf_map_get_next_id: Callable[[int, ByRef], int]
    bpf_map_get_fd_by_id: Callable[[int], int]
    bpf_obj_get_info_by_fd: Callable[[int, ByRef, ByRef], int]
    bpf_object__find_program_by_name: Callable[[Pointer, bytes], Pointer]
    bpf_program__fd: Callable[[Pointer], int]
    bpf_prog_attach: Callable[[int, int, int, int], int]

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError:
            raise BpfError("libbpf.so.1 not found (apt install libbpf1)") from None
        vp, cp, i, u32p = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)
        for name, result, args in (
                ("bpf_object__open_file", vp, [cp, vp]),
                ("bpf_object__load", i, [vp]),
                ("bpf_object__close", None, [vp]),
                ("bpf_object__find_map_by_name", vp, [vp, cp]),
                ("bpf_map__attach_struct_ops", vp, [vp]),
                ("bpf_map__fd", i, [vp]),
                ("bpf_link__destroy", i, [vp]),
                ("bpf_map_update_elem", i, [i, vp, vp, ctypes.c_uint64]),
                ("bpf_map_delete_elem", i, [i, vp]),
                ("bpf_map_get_next_id", i, [ctypes.c_uint32, u32p]),
                ("bpf_map_get_fd_by_id", i, [ctypes.c_uint32]),
                ("bpf_obj_get_info_by_fd", i, [i, vp, u32p]),
                ("bpf_object__find_program_by_name", vp, [vp, cp]),
                ("bpf_program__fd", i, [vp]),
                ("bpf_prog_attach", i, [i, i, i, ctypes.c_uint]),
                ("libbpf_set_print", vp, [vp])):
            function = getattr(lib, name)
            function.restype, function.argtypes = result, args
            setattr(self, name, function)
        lib.libbpf_set_print(None)    # failures are reported by us, with errno

    @staticmethod
    def failed(what: str) -> BpfError:
        code = ctypes.get_errno()
        hint = " (needs CAP_BPF and CAP_NET_ADMIN: run as root)" if code in (
            errno.EPERM, errno.EACCES) else ""
        return BpfError(f"{what}: {os.strerror(code) if code else 'failed'}{hint}", code)
