"""One PAM password check whose fail delay is handed back, not slept.

pam_unix (and pam_faildelay) ask libpam to delay a failed authentication, ~2 s on
Debian 12; libpam sleeps that in pam_authenticate, holding the calling thread. With a
`PAM_FAIL_DELAY` callback set (pam_fail_delay(3)), libpam calls it with the delay
instead of sleeping, and the caller applies it to the answer of that one caller, off
any thread (hostd/server/passwords.py). Debian 12's python3-pampy (python-pam 2.0.2)
runs pam_start and pam_authenticate in one call, with no way to set an item in
between, so this is a small ctypes binding of libpam's own calls: pam_start,
pam_set_item(PAM_FAIL_DELAY), pam_authenticate, pam_acct_mgmt, pam_end.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_uint, c_void_p, cast, sizeof
from dataclasses import dataclass

PAM_SUCCESS = 0
PAM_FAIL_DELAY = 10  # <security/_pam_types.h>
PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON = 1, 2
PAM_CONV_ERR = 19
PAM_SILENT = 0x8000


class _Message(Structure):
    _fields_ = [("msg_style", c_int), ("msg", c_char_p)]


class _Response(Structure):
    _fields_ = [("resp", c_void_p), ("resp_retcode", c_int)]


_CONV = CFUNCTYPE(c_int, c_int, POINTER(POINTER(_Message)), POINTER(POINTER(_Response)),
                  c_void_p)
_DELAY = CFUNCTYPE(None, c_int, c_uint, c_void_p)


class _Conv(Structure):
    _fields_ = [("conv", _CONV), ("appdata_ptr", c_void_p)]


@dataclass(frozen=True)
class Verdict:
    """PAM's answer and the delay libpam asked for (seconds; 0 on success)."""

    ok: bool
    delay: float


class _Lib:
    """libpam and libc, loaded once (hostd only, the first time sudo asks)."""

    def __init__(self) -> None:
        self.pam = ctypes.CDLL(ctypes.util.find_library("pam") or "libpam.so.0")
        self.libc = ctypes.CDLL(None)
        self.libc.calloc.restype = c_void_p
        self.libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        self.libc.strdup.restype = c_void_p
        self.libc.strdup.argtypes = [c_char_p]
        self.pam.pam_start.argtypes = [c_char_p, c_char_p, POINTER(_Conv), POINTER(c_void_p)]
        self.pam.pam_set_item.argtypes = [c_void_p, c_int, c_void_p]
        self.pam.pam_authenticate.argtypes = [c_void_p, c_int]
        self.pam.pam_acct_mgmt.argtypes = [c_void_p, c_int]
        self.pam.pam_end.argtypes = [c_void_p, c_int]


_LIB: _Lib | None = None


def _lib() -> _Lib:
    global _LIB
    if _LIB is None:
        _LIB = _Lib()
    return _LIB


def authenticate(service: str, user: str, password: str) -> Verdict:
    """PAM's auth and account stacks of `service` for `user` with `password`; the
    fail delay comes back in the verdict instead of being slept here."""
    lib = _lib()
    secret = password.encode()
    delays: list[int] = []

    def conv(n, messages, responses, _appdata) -> int:
        """Every prompt answered with the password (pam_unix asks once); the array and
        strings are malloc'ed, as libpam frees them."""
        array = lib.libc.calloc(n, sizeof(_Response))
        if not array:
            return PAM_CONV_ERR
        out = cast(array, POINTER(_Response))
        for i in range(n):
            if messages[i].contents.msg_style in (PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON):
                out[i].resp = lib.libc.strdup(secret)
        responses[0] = out
        return PAM_SUCCESS

    def delay(_status, usec, _appdata) -> None:
        delays.append(int(usec))

    conv_fn, delay_fn = _CONV(conv), _DELAY(delay)  # kept alive until pam_end
    handle = c_void_p()
    status = lib.pam.pam_start(service.encode(), user.encode(),
                               ctypes.byref(_Conv(conv_fn, None)), ctypes.byref(handle))
    if status != PAM_SUCCESS:
        return Verdict(False, 0.0)
    try:
        lib.pam.pam_set_item(handle, PAM_FAIL_DELAY, cast(delay_fn, c_void_p))
        status = lib.pam.pam_authenticate(handle, PAM_SILENT)
        if status == PAM_SUCCESS:
            status = lib.pam.pam_acct_mgmt(handle, PAM_SILENT)
    finally:
        lib.pam.pam_end(handle, status)
    ok = status == PAM_SUCCESS
    return Verdict(ok, 0.0 if ok else max(delays, default=0) / 1e6)
