"""QMP on the wire: splitting the input stream into JSON messages, encoding
replies and events, and the error classes.

Clients send JSON objects back to back with no delimiter (qemu.qmp sends
compact JSON without a newline), so input is split by structure, not by
lines: a small scanner follows strings and bracket depth over the raw bytes
and hands each complete top-level value to the JSON decoder.  It never holds
more than ``max_message`` bytes of one message: a larger one (or one nested
too deep) is reported once and then skipped to its end without being
buffered.  Server output is ASCII JSON terminated by CRLF, as QEMU writes it.
"""
from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Iterator, Union

#: The largest message accepted (QEMU allows more; a control message is small).
MAX_MESSAGE = 1 << 20
#: Deepest bracket nesting accepted.
MAX_DEPTH = 64

_OUTSIDE = re.compile(rb'[{}\[\]"]')
_INSIDE = re.compile(rb'["\\]')
_NOT_WS = re.compile(rb'[^ \t\r\n]')
_DELIM = re.compile(rb'[ \t\r\n{}\[\]"]')

#: JsonSplitter._next: no complete message yet
_NOTHING = object()
# what the message being split is
_BETWEEN, _CONTAINER, _STRING, _TOKEN = range(4)


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
    Python value, or a QmpError (a ParseError, or "message too large") for
    input that cannot be one.

    One top-level value gives exactly one item, however the input is chunked:
    an object or array, a string, or a bare token (number, true, false, null;
    it ends at white space, a bracket or a quote).  A value larger than
    ``max_message`` or nested deeper than ``max_depth`` is reported once and the
    rest of it is skipped, structure still followed, so nothing inside it is
    taken for a message of its own.  Input is strict JSON in UTF-8: no NaN or
    Infinity, no number that overflows a double."""

    def __init__(self, max_message: int = MAX_MESSAGE, max_depth: int = MAX_DEPTH) -> None:
        self.max_message = max_message
        self.max_depth = max_depth
        self._buf = bytearray()     # the current message from its first byte (unless skipping)
        self._pos = 0               # scan position in _buf
        self._kind = _BETWEEN
        self._stack = bytearray()   # open brackets of the current message, the outer max_depth
        self._depth = 0             # bracket depth (may exceed max_depth while skipping)
        self._in_string = False
        self._escape = False        # the last byte scanned was a backslash in a string
        self._skipping = False      # inside a reported message: drop bytes, keep structure

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Item]:
        self._buf += data
        while True:
            item = self._next()
            if item is _NOTHING:       # (not None: a JSON null is a message too)
                return
            yield item

    def _next(self) -> Item:
        """The next complete message, or _NOTHING until more input comes."""
        buf = self._buf
        while True:
            if self._kind == _BETWEEN:
                # between messages: skip white space
                m = _NOT_WS.search(buf)
                if m is None:
                    buf.clear()
                    self._pos = 0
                    return _NOTHING
                del buf[:m.start()]
                self._pos = 1
                self._skipping = False
                first = buf[0]
                if first in b"{[":
                    self._kind = _CONTAINER
                    self._stack = bytearray((first,))
                    self._depth = 1
                elif first in b"}]":
                    del buf[:1]
                    self._pos = 0
                    return ParseError(f"unexpected {chr(first)!r}")
                elif first == 0x22:
                    self._kind = _STRING
                    self._depth = 0
                    self._in_string = True
                    self._escape = False
                else:
                    self._kind = _TOKEN
            kind = self._kind
            done = self._scan_token() if kind == _TOKEN else self._scan()
            if done is None:
                if self._skipping:
                    buf.clear()
                    self._pos = 0
                elif len(buf) > self.max_message:
                    self._skipping = True
                    buf.clear()
                    self._pos = 0
                    return QmpError(f"message too large: more than {self.max_message} bytes")
                return _NOTHING
            if isinstance(done, QmpError):
                return done
            raw = bytes(buf[:done])
            del buf[:done]
            self._pos = 0
            self._kind = _BETWEEN
            if self._skipping:
                self._skipping = False
                continue       # the end of a message already reported
            if len(raw) > self.max_message:
                return QmpError(f"message too large: more than {self.max_message} bytes")
            return _decode(raw, kind)

    def _scan_token(self) -> int | None:
        """A bare token ends at white space, a bracket or a quote."""
        m = _DELIM.search(self._buf, self._pos)
        if m is None:
            self._pos = len(self._buf)
            return None
        return m.start()

    def _scan(self) -> int | ParseError | None:
        """Advance through the open message; its end offset once complete."""
        buf, stack = self._buf, self._stack
        pos = self._pos
        while True:
            if self._in_string:
                if self._escape:                 # skip the escaped byte
                    if pos >= len(buf):
                        self._pos = pos
                        return None
                    pos += 1
                    self._escape = False
                m = _INSIDE.search(buf, pos)
                if m is None:
                    self._pos = len(buf)
                    return None
                pos = m.end()
                if buf[m.start()] == 0x5C:       # backslash
                    self._escape = True
                    continue
                self._in_string = False
                if self._depth == 0:             # a top-level string
                    self._pos = pos
                    return pos
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
                self._depth += 1
                if self._depth <= self.max_depth:
                    stack.append(ch)
                elif not self._skipping:
                    # report once, then skip to the message's end
                    self._skipping = True
                    self._pos = pos
                    return ParseError(f"nesting deeper than {self.max_depth}")
            else:
                if self._depth <= self.max_depth:
                    opener = stack.pop()
                    if (opener == 0x7B) != (ch == 0x7D):
                        return self._abandon(pos, f"unexpected {chr(ch)!r}")
                self._depth -= 1
                if self._depth == 0:
                    self._pos = pos
                    return pos

    def _abandon(self, pos: int, why: str) -> ParseError:
        """Drop the broken message up to ``pos`` and start afresh."""
        del self._buf[:pos]
        self._pos = 0
        self._kind = _BETWEEN
        self._stack.clear()
        self._depth = 0
        self._in_string = self._escape = False
        skipping, self._skipping = self._skipping, False
        if skipping:
            return ParseError(why + " (in a message already rejected)")
        return ParseError(why)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid token {name!r}")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]!r} out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _decode(raw: bytes, kind: int) -> Item:
    """One complete message: its value, or a ParseError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError("input is not UTF-8")
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        if kind == _TOKEN:
            return ParseError(f"invalid token {text[:32]!r}")
        msg = (exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc))[:120]
        return ParseError(msg[:1].lower() + msg[1:])


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
