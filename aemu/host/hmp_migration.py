"""HMP's migration commands (``human-monitor-command``): migrate [-d] uri,
migrate_incoming uri, migrate_cancel, migrate_continue state,
migrate_set_capability name on|off, migrate_set_parameter name value,
info migrate / migrate_capabilities / migrate_parameters."""
from __future__ import annotations

from aemu.host.commands import CommandContext
from aemu.host.protocol import QmpError

HELP = {
    "migrate": "migrate [-d] uri -- migrate the VM to uri (tcp:, unix:, fd:, file:)",
    "migrate_incoming": "migrate_incoming uri -- wait for a migration on uri",
    "migrate_cancel": "migrate_cancel -- cancel the current migration",
    "migrate_continue": "migrate_continue state -- go on from pre-switchover",
    "migrate_set_capability": "migrate_set_capability name on|off -- set a capability",
    "migrate_set_parameter": "migrate_set_parameter name value -- set a parameter",
}
INFO = ("migrate", "migrate_capabilities", "migrate_parameters")


def info(ctx: CommandContext, what: str) -> str:
    from aemu.host import migration_commands as m

    if what == "migrate_capabilities":
        return "".join(f"{c['capability']}: {'on' if c['state'] else 'off'}\r\n"
                       for c in m.query_migrate_capabilities(ctx))
    if what == "migrate_parameters":
        return "".join(f"{k}: {v}\r\n" for k, v in m.query_migrate_parameters(ctx).items())
    state = m.query_migrate(ctx)
    rows = [f"Status: {state.get('status', 'none')}"]
    for key, label in (("total-time", "Time (ms)"), ("setup-time", "Setup time (ms)"),
                       ("downtime", "Downtime (ms)"),
                       ("expected-downtime", "Expected downtime (ms)")):
        if key in state:
            rows.append(f"{label}: {state[key]}")
    ram = state.get("ram")
    if ram:
        rows.append(f"RAM info: transferred {ram['transferred']} bytes, remaining "
                    f"{ram['remaining']} bytes, total {ram['total']} bytes, "
                    f"{ram['normal']} normal pages, {ram['duplicate']} zero pages, "
                    f"{ram['dirty-sync-count']} dirty syncs, {ram['mbps']} mbps")
    if "error-desc" in state:
        rows.append(f"Error: {state['error-desc']}")
    for reason in state.get("blocked-reasons", []):
        rows.append(f"Blocked: {reason}")
    return "".join(f"{r}\r\n" for r in rows)


async def run(ctx: CommandContext, name: str, args: list[str]) -> str:
    from aemu.host import migration_commands as m

    usage = QmpError(f"usage: {HELP[name].split(' -- ')[0]}")
    if name == "migrate":
        args = [a for a in args if a not in ("-d", "-b", "-i")]
        if len(args) != 1:
            raise usage
        m.migrate(ctx, uri=args[0])
    elif name == "migrate_incoming":
        if len(args) != 1:
            raise usage
        await m.migrate_incoming(ctx, uri=args[0])
    elif name == "migrate_cancel":
        m._cancel(ctx)
    elif name == "migrate_continue":
        if len(args) != 1:
            raise usage
        m.migrate_continue(ctx, args[0])
    elif name == "migrate_set_capability":
        if len(args) != 2 or args[1] not in ("on", "off"):
            raise usage
        m.migrate_set_capabilities(ctx, [{"capability": args[0], "state": args[1] == "on"}])
    elif name == "migrate_set_parameter":
        if len(args) != 2:
            raise usage
        from aemu.cli_migrate import SetError, parse_settings
        try:
            _, params = parse_settings([f"{args[0]}={args[1]}"])
        except SetError as exc:
            raise QmpError(str(exc).replace("--migrate-set ", "")) from None
        if not params:
            raise QmpError(f"{args[0]} is a capability: use migrate_set_capability")
        m._set_parameters(ctx, **{k.replace("-", "_"): v for k, v in params.items()})
    return ""
