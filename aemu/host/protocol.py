"""QMP on the wire: splitting the input stream into JSON messages, encoding
replies and events, and the error classes.

Clients send JSON objects back to back with no delimiter (qemu.qmp sends
compact JSON without a newline), so input is split by structure, not by
lines: a small scanner follows strings and bracket depth over the raw bytes
and hands each complete top-level value to ``json.loads``.  It never holds
more than ``max_message`` bytes of one message: a larger one is reported once
and then skipped to its end without being buffered.  Server output is ASCII
JSON terminated by CRLF, as QEMU writes it.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any, Iterator, Union

#: The largest message accepted (QEMU allows more; a control message is small).
MAX_MESSAGE = 1 << 20
#: Deepest bracket nesting accepted.
MAX_DEPTH = 64

_OUTSIDE = re.compile(rb'[{}\[\]"]')
_INSIDE = re.compile(rb'["\\]')
_WS = b" \t\r\n"
_DELIMS = b" \t\r\n{}[]\""


class QmpError(Exception):
    """A command failed: QMP's ``{"error": {"class": ..., "desc": ...}}``."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.cls = cls

    def to_json(self) -> dict[str, str]:
        return {"class": self.cls, "desc": self.desc}


def command_not_found(name: str) -> QmpError:
    return QmpError(f"The command {name} has not been found", "CommandNotFound")


class ParseError(QmpError):
    """Input that is not a JSON value (its reply carries no id)."""

    def __init__(self, desc: str) -> None:
        super().__init__(f"JSON parse error, {desc}")


Item = Union[Any, ParseError]


class JsonSplitter:
    """Incremental splitter: ``feed(bytes)`` yields each complete message as a
    Python value, or a ParseError for input that cannot be one."""

    def __init__(self, max_message: int = MAX_MESSAGE, max_depth: int = MAX_DEPTH) -> None:
        self.max_message = max_message
        self.max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0            # scan position in _buf
        self._stack: list[int] = []  # open brackets of the current message
        self._in_string = False
        self._skipping = False   # inside an oversized message: drop bytes, keep structure
        self._skipped = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Item]:
        self._buf += data
        while True:
            item = self._next()
            if item is None:
                return
            yield item

    def _next(self) -> Item | None:
        buf = self._buf
        while True:
            if not self._stack:
                # between messages: skip white space; a bare token is an error
                pos = self._pos
                while pos < len(buf) and buf[pos] in _WS:
                    pos += 1
                if pos:
                    del buf[:pos]
                self._pos = 0
                if not buf:
                    return None
                first = buf[0]
                if first in b"{[":
                    self._stack.append(first)
                    self._pos = 1
                    self._skipping = False
                    self._skipped = 0
                elif first in b"}]":
                    del buf[:1]
                    return ParseError(f"unexpected {chr(first)!r}")
                else:
                    end = 0
                    while end < len(buf) and buf[end] not in _DELIMS:
                        end += 1
                    if end == len(buf) and end < 64:
                        return None     # the token may go on in the next chunk
                    token = bytes(buf[:max(end, 1)])
                    del buf[:max(end, 1)]
                    try:
                        return json.loads(token)     # a scalar: valid JSON, not a command
                    except ValueError:
                        text = token[:32].decode("utf-8", "replace")
                        return ParseError(f"invalid token {text!r}")
            done = self._scan()
            if done is None:
                if self._skipping:
                    self._skipped += len(buf)
                    buf.clear()
                    self._pos = 0
                elif len(buf) > self.max_message:
                    self._skipping = True
                    self._skipped = len(buf)
                    buf.clear()
                    self._pos = 0
                    return QmpError(f"message too large: more than {self.max_message} bytes")
                return None
            if isinstance(done, ParseError):
                return done
            raw = bytes(buf[:done])
            del buf[:done]
            self._pos = 0
            if self._skipping:
                self._skipping = False
                continue       # the rest of the oversized message: already reported
            if len(raw) > self.max_message:
                return QmpError(f"message too large: more than {self.max_message} bytes")
            try:
                return json.loads(raw)
            except UnicodeDecodeError:
                return ParseError("input is not UTF-8")
            except (ValueError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                return ParseError(msg[:120].lower())

    def _scan(self) -> int | ParseError | None:
        """Advance through the open message; its end offset once complete."""
        buf, stack = self._buf, self._stack
        pos = self._pos
        while True:
            if self._in_string:
                m = _INSIDE.search(buf, pos)
                if m is None:
                    self._pos = len(buf)
                    return None
                if buf[m.start()] == 0x5C:       # backslash: skip the escaped byte
                    if m.start() + 1 >= len(buf):
                        self._pos = m.start()
                        return None
                    pos = m.start() + 2
                    continue
                self._in_string = False
                pos = m.end()
                continue
            m = _OUTSIDE.search(buf, pos)
            if m is None:
                self._pos = len(buf)
                return None
            ch = buf[m.start()]
            pos = m.end()
            if ch == 0x22:
                self._in_string = True
            elif ch in b"{[":
                stack.append(ch)
                if len(stack) > self.max_depth:
                    return self._abandon(pos, f"nesting deeper than {self.max_depth}")
            else:
                opener = stack.pop()
                if (opener == 0x7B) != (ch == 0x7D):
                    return self._abandon(pos, f"unexpected {chr(ch)!r}")
                if not stack:
                    self._pos = pos
                    return pos

    def _abandon(self, pos: int, why: str) -> ParseError:
        """Drop the broken message up to ``pos`` and start afresh."""
        del self._buf[:pos]
        self._pos = 0
        self._stack.clear()
        self._in_string = False
        skipping, self._skipping = self._skipping, False
        if skipping:
            return ParseError(why + " (in an oversized message)")
        return ParseError(why)


def encode(msg: dict[str, Any]) -> bytes:
    """One server message: ASCII JSON and CRLF."""
    return json.dumps(msg, ensure_ascii=True, separators=(", ", ": ")).encode("ascii") + b"\r\n"


def timestamp(when: float | None = None) -> dict[str, int]:
    when = time.time() if when is None else when
    seconds = int(when)
    return {"seconds": seconds, "microseconds": int((when - seconds) * 1e6)}


def event(name: str, data: dict[str, Any] | None = None, when: float | None = None) -> bytes:
    msg: dict[str, Any] = {"event": name}
    if data is not None:
        msg["data"] = data
    msg["timestamp"] = timestamp(when)
    return encode(msg)
