"""One masker for every sink (DESIGN.md §13 "Masking on the visible text"): a command line
is masked with the host's rules wherever it is written: journald events (JIT_COMMAND,
JIT_PROCESSES, and the count of masked secrets per rule in JIT_MASKED, never the
values), cast headers, `jit sessions`, approval requests and their notices, the audit
exports. The same rules as the recorder's (the built-ins, the policy's [masking]).

hostd calls configure() whenever it loads a policy; a process that never does (the CLI)
masks with the built-in rules.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_host: dict = {"rules": (), "fields": (), "optional": ()}


def configure(config) -> None:
    """Use a policy's [masking] (a policy.config.Config) from now on."""
    with _lock:
        _host.update(rules=tuple((n, rx.pattern) for n, rx in config.masking),
                     fields=tuple(config.masking_fields),
                     optional=tuple(config.masking_optional))


def host_rules() -> dict:
    """The rules in use: keyword arguments for ScreenMasker (rules, fields, optional)."""
    with _lock:
        return {"rules": list(_host["rules"]), "fields": list(_host["fields"]),
                "optional": list(_host["optional"])}


def mask_text(text: str, **rules) -> tuple[str, dict[str, int]]:
    """`text` masked as a session's output would be, and how many secrets each rule
    masked (rules with none left out). Keyword arguments replace the host's rules."""
    from hostd.masking.screen import ScreenMasker

    kwargs = host_rules()
    kwargs.update(rules)
    masker = ScreenMasker(kwargs.pop("rules"), **kwargs)
    data = text.encode("utf-8", "surrogateescape")
    out = masker.feed(data) + masker.flush()
    counts = {name: n for name, n in zip(masker.names, masker.counts, strict=True) if n}
    if out == data:
        return text, counts
    return out.decode("utf-8", "surrogateescape"), counts


def counts_text(counts: dict[str, int]) -> str:
    """JIT_MASKED: `rule=N` pairs, sorted; empty when nothing was masked."""
    return " ".join(f"{name}={n}" for name, n in sorted(counts.items()))


MASKED_FIELDS = ("command", "processes")


def mask_event_fields(fields: dict) -> dict:
    """An event's fields with the command lines in them masked, plus `masked`."""
    total: dict[str, int] = {}
    out = dict(fields)
    for key in MASKED_FIELDS:
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key], counts = mask_text(value)
        elif isinstance(value, list | tuple) and value:
            masked = []
            for item in value:
                shown, counts = mask_text(str(item))
                masked.append(shown)
                for name, n in counts.items():
                    total[name] = total.get(name, 0) + n
            out[key] = masked
            continue
        else:
            continue
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
    if total:
        out["masked"] = counts_text(total)
    return out


def mask_event(message: str, fields: dict) -> tuple[str, dict]:
    """mask_event_fields, and the message masked too when a field was: hostd's
    sentences quote the command line (`recording ... closed: alice ran CMD`)."""
    out = mask_event_fields(fields)
    if "masked" in out:
        message = mask_text(message)[0]
    return message, out
