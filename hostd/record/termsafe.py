"""Replayed output without the escape sequences that make a terminal answer or act.

A recorded user controls what their session printed, and `jit replay` shows it on an
administrator's terminal. Sequences that only draw (colours, cursor moves, erasing,
modes, the alternate screen, titles) pass; sequences that make the terminal reply on
its input (device status, attributes, window reports), write the clipboard (OSC 52),
change colours or fonts (other OSC), or carry a device control string (DCS, APC, PM,
SOS) are dropped, as is ENQ (answerback). A sequence split between events is held until
it is complete; one longer than CAP characters is dropped to its end.
"""

from __future__ import annotations

import re

CAP = 4096
# A complete sequence starting at an ESC. A string (OSC, DCS, APC, PM, SOS) ends at BEL
# or ST (ESC \), or is cancelled by any other ESC, as terminals do.
_COMPLETE = re.compile(
    r"\x1b(?:"
    rf"(?P<string>[\]P_^X])[^\x07\x1b]{{0,{CAP}}}(?:\x07|\x1b\\|(?=\x1b[^\\]))"
    r"|\[(?P<params>[0-?]{0,64})(?P<inter>[ -/]{0,8})(?P<final>[@-~])"
    r")")
# CSI finals that make the terminal answer: DSR (n), DA (c), window ops and reports (t),
# DECREQTPARM (x), and DECRQM (p with $).
_ANSWERING = set("nctx")
_TITLES = re.compile(r"\x1b\][012];")
_DROP_UNTIL = {"string": re.compile(r"\x07|\x1b\\|\x1b(?=[^\\])"), "csi": re.compile(r"[@-~]")}


def _keep(m: re.Match) -> bool:
    if m.group("string"):
        return _TITLES.match(m.group()) is not None
    final, inter = m.group("final"), m.group("inter")
    return final not in _ANSWERING and not (final == "p" and "$" in inter)


class TerminalFilter:
    """Feed replayed text in, write out what comes back; flush() at the end."""

    def __init__(self) -> None:
        self._held = ""
        self._dropping: re.Pattern | None = None

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        pos = 0
        if self._dropping is not None:
            m = self._dropping.search(text)
            if m is None:
                self._held = "\x1b" if text.endswith("\x1b") else ""
                return ""
            pos = m.end() if m.group() != "\x1b" else m.start()
            self._dropping = None
        out: list[str] = []
        while True:
            i = text.find("\x1b", pos)
            if i < 0:
                out.append(text[pos:].replace("\x05", ""))
                break
            out.append(text[pos:i].replace("\x05", ""))
            m = _COMPLETE.match(text, i)
            if m is not None:
                if _keep(m):
                    out.append(m.group())
                pos = m.end()
                continue
            if i + 1 == len(text):
                self._held = "\x1b"  # what follows decides
                break
            kind = "string" if text[i + 1] in "]P_^X" else "csi" if text[i + 1] == "[" \
                else None
            if kind is None:
                out.append("\x1b")  # ESC 7, ESC ( B, ...: two-byte sequences draw; keep
                pos = i + 1
                continue
            end = _DROP_UNTIL[kind].search(text, i + 2)
            if end is None:  # not complete yet
                if len(text) - i <= CAP + 2:
                    self._held = text[i:]
                    break
                self._dropping = _DROP_UNTIL[kind]  # too long: dropped to its end
                self._held = "\x1b" if text.endswith("\x1b") else ""
                break
            pos = end.start() if end.group() == "\x1b" else end.end()  # too long: dropped
        return "".join(out)

    def busy(self) -> bool:
        """Part of a sequence is held: the next text must go through feed()."""
        return bool(self._held) or self._dropping is not None

    def flush(self) -> str:
        """End of the replay: a sequence still incomplete is dropped."""
        self._held = ""
        self._dropping = None
        return ""
