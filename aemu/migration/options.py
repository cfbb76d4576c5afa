"""Migration capabilities and parameters, with QEMU's names, defaults, ranges
and cross-checks (qemu-migration.md §5.4, §5.5).

Capabilities aemu does not implement are refused by name ("not supported
by aemu") instead of being accepted and ignored; parameters of features aemu
lacks (TLS, xbzrle, postcopy, announce) are not listed at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: capabilities aemu implements, with their defaults
CAPABILITIES: dict[str, bool] = {
    "events": False,
    "return-path": False,
    "multifd": False,
    "auto-converge": False,
    "mapped-ram": False,
    "pause-before-switchover": False,
    "validate-uuid": False,
}
#: QEMU's other capabilities: known names, refused when turned on
UNSUPPORTED_CAPABILITIES = (
    "xbzrle", "rdma-pin-all", "zero-blocks", "postcopy-ram", "x-colo", "release-ram",
    "dirty-bitmaps", "postcopy-blocktime", "late-block-activate", "x-ignore-shared",
    "background-snapshot", "zero-copy-send", "postcopy-preempt", "switchover-ack",
    "dirty-limit",
)
#: capabilities that must be set before incoming starts and match both sides
BOTH_SIDES = ("multifd", "mapped-ram")

MAX_BANDWIDTH_DEFAULT = 128 << 20      # QEMU's MAX_THROTTLE: 128 MiB/s
DOWNTIME_LIMIT_MAX = 2_000_000         # ms (2000 s), QEMU's bound
COMPRESSIONS = ("none", "zstd")
ZERO_PAGE_DETECTION = ("none", "legacy", "multifd")


@dataclass(frozen=True)
class Param:
    kind: type
    default: Any
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()


PARAMETERS: dict[str, Param] = {
    "max-bandwidth": Param(int, MAX_BANDWIDTH_DEFAULT, 0, (1 << 63) - 1),
    "avail-switchover-bandwidth": Param(int, 0, 0, (1 << 63) - 1),
    "downtime-limit": Param(int, 300, 0, DOWNTIME_LIMIT_MAX),
    "throttle-trigger-threshold": Param(int, 50, 1, 100),
    "cpu-throttle-initial": Param(int, 20, 1, 99),
    "cpu-throttle-increment": Param(int, 10, 1, 99),
    "cpu-throttle-tailslow": Param(bool, False),
    "max-cpu-throttle": Param(int, 99, 1, 99),
    "multifd-channels": Param(int, 2, 1, 255),
    "multifd-compression": Param(str, "none", choices=COMPRESSIONS),
    "multifd-zstd-level": Param(int, 1, 0, 20),
    "zero-page-detection": Param(str, "multifd", choices=ZERO_PAGE_DETECTION),
    "mode": Param(str, "normal", choices=("normal",)),
}
#: parameters that may change while a migration runs (the rest: before it starts)
LIVE_PARAMETERS = ("max-bandwidth", "avail-switchover-bandwidth", "downtime-limit",
                   "throttle-trigger-threshold", "cpu-throttle-initial",
                   "cpu-throttle-increment", "cpu-throttle-tailslow", "max-cpu-throttle")


class OptionError(ValueError):
    """A bad capability or parameter (QMP GenericError / InvalidParameter text)."""


@dataclass
class Options:
    caps: dict[str, bool] = field(default_factory=lambda: dict(CAPABILITIES))
    params: dict[str, Any] = field(
        default_factory=lambda: {k: p.default for k, p in PARAMETERS.items()})

    def cap(self, name: str) -> bool:
        return self.caps[name]

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    # -- capabilities -------------------------------------------------------------
    def set_capabilities(self, changes: list[dict[str, Any]], *, running: bool = False) -> None:
        """migrate-set-capabilities: ``[{"capability": name, "state": bool}]``,
        checked as a whole before anything changes."""
        if running:
            raise OptionError("There's a migration process in progress")
        new = dict(self.caps)
        for item in changes:
            name, state = item["capability"], item["state"]
            if name in UNSUPPORTED_CAPABILITIES:
                if state:
                    raise OptionError(f"Capability '{name}' is not supported by aemu")
                continue
            if name not in CAPABILITIES:
                raise OptionError(f"Invalid parameter '{name}'")
            new[name] = bool(state)
        self._check(new, self.params)
        self.caps = new

    def query_capabilities(self) -> list[dict[str, Any]]:
        out = [{"capability": n, "state": s} for n, s in self.caps.items()]
        out += [{"capability": n, "state": False} for n in UNSUPPORTED_CAPABILITIES]
        return out

    # -- parameters ---------------------------------------------------------------
    def set_parameters(self, changes: dict[str, Any], *, running: bool = False) -> None:
        """migrate-set-parameters: checked as a whole before anything changes."""
        new = dict(self.params)
        for name, value in changes.items():
            spec = PARAMETERS.get(name)
            if spec is None:
                raise OptionError(f"Parameter '{name}' is unexpected")
            if spec.kind is bool:
                if not isinstance(value, bool):
                    raise OptionError(f"Invalid parameter type for '{name}', expected: boolean")
            elif spec.kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise OptionError(f"Invalid parameter type for '{name}', expected: integer")
                if value < spec.lo or value > spec.hi:  # type: ignore[operator]
                    raise OptionError(f"Parameter '{name}' expects a value from {spec.lo} to "
                                      f"{spec.hi}")
            else:
                if not isinstance(value, str):
                    raise OptionError(f"Invalid parameter type for '{name}', expected: string")
                if value not in spec.choices:
                    raise OptionError(f"Parameter '{name}' does not accept value '{value}'")
            if running and name not in LIVE_PARAMETERS and value != self.params[name]:
                raise OptionError(f"Parameter '{name}' cannot be changed while a migration "
                                  "is in progress")
            new[name] = value
        self._check(self.caps, new)
        self.params = new

    def query_parameters(self) -> dict[str, Any]:
        return dict(self.params)

    # -- cross-checks -------------------------------------------------------------
    @staticmethod
    def _check(caps: dict[str, bool], params: dict[str, Any]) -> None:
        if caps["mapped-ram"] and params["multifd-compression"] != "none" and caps["multifd"]:
            raise OptionError("Mapped-ram migration is incompatible with multifd compression")
        if params["max-cpu-throttle"] < params["cpu-throttle-initial"]:
            raise OptionError("max_cpu_throttle must be greater than or equal to "
                              "cpu_throttle_initial")
