"""Snapshots in a serve host: QEMU's snapshot jobs, aemu's direct commands,
HMP savevm/loadvm/delvm/info snapshots, blockers, the `aemu snapshot` CLI and
`aemu run --loadvm`, against real `aemu serve` / `aemu run --qmp`
subprocesses driven with qemu.qmp (as tests/test_serve.py does).

The oracle is a twin run: a VM that is saved at cycle C1, run to C2 and
observed, then loaded (into itself, or into a fresh VM of the same name) and
run to C2 again must be observed identical: registers, RAM, the clock and
the instruction count.  A second part drives the pieces in-process (the
machine's save-vm/restore-vm holds, the blockers, the store names).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import subprocess
from typing import Any

import pytest

from conftest import FIRMWARE
from test_serve import (IDLE, NEUTRAL_CWD, T, Proc, aemu_cmd, base, hosted_vm,  # noqa: F401
                        connect, create_vm, disconnect, execute, execute_error, error_desc,
                        next_event, procs, run, serve, status)

FILEIO = str(FIRMWARE / "fileio-O2.elf")
#: fileio-O2 holds fileio.tmp open through the host services at this cycle
FILE_OPEN_AT = 12_000
C1, C2, C3, C4 = 1_000_000, 3_000_000, 4_000_000, 6_000_000
#: guest RAM that idle.elf uses (its BSP image, heap and stacks end at 0x24f180)
RAM_RANGES = [(0, 1 << 20), (1 << 20, 1 << 20), (2 << 20, 0x50000)]


# -- helpers ---------------------------------------------------------------------------
async def observe(c) -> dict[str, Any]:
    """What a twin run compares: registers, RAM, clock, instruction count."""
    regs = await execute(c, "__org.aemu_query-registers")
    info = await execute(c, "__org.aemu_query-run")
    digest = hashlib.sha256()
    for addr, size in RAM_RANGES:
        data = await execute(c, "__org.aemu_read-memory", {"addr": addr, "size": size})
        digest.update(base64.b64decode(data["data"]))
    return {"regs": regs, "cycles": info["cycles"], "insns": info["insns"],
            "ns": info["virtual-ns"], "pc": info["pc"], "status": info["status"],
            "ram": digest.hexdigest()}


async def run_to(c, cycles: int) -> None:
    assert await execute(c, "__org.aemu_run-until", {"cycles": cycles}, timeout=30) == {
        "status": "paused", "cycles": cycles}


def drain(c) -> None:
    c.events.clear()


async def job(c, command: str, job_id: str, **arguments: Any) -> list[str]:
    """Run a QEMU snapshot job to its end: the events it brought, in order
    (job statuses as themselves, other events by name); earlier events are
    dropped."""
    drain(c)
    assert await execute(c, command, {"job-id": job_id, **arguments}) == {}
    seen = []
    while True:
        event = await next_event(c)
        if event["event"] == "JOB_STATUS_CHANGE":
            assert event["data"]["id"] == job_id
            seen.append(event["data"]["status"])
            if event["data"]["status"] == "concluded":
                return seen
        else:
            seen.append(event["event"])


async def dismiss(c, job_id: str) -> None:
    assert await execute(c, "job-dismiss", {"id": job_id}) == {}
    event = await next_event(c)
    assert event["event"] == "JOB_STATUS_CHANGE"
    assert event["data"] == {"id": job_id, "status": "null"}


async def hmp(c, line: str) -> str:
    return await execute(c, "human-monitor-command", {"command-line": line}, timeout=30)


def names(infos: list[dict]) -> list[str]:
    return [i["name"] for i in infos]


OK_JOB = ["created", "running", "waiting", "pending", "concluded"]
OK_JOB_STOPPED = ["created", "running", "STOP", "RESUME", "waiting", "pending", "concluded"]
FAILED_JOB = ["created", "running", "aborting", "concluded"]


# -- QMP: jobs, twins, diffs -----------------------------------------------------------------
def test_snapshot_jobs_and_twin_runs(serve):
    host = serve()

    async def main():
        async with hosted_vm(host, "a", args=["5", "1000"], paused=True, pace="fast") as (h, a):
            assert await execute(a, "query-jobs") == []
            await run_to(a, C1)
            drain(a)

            # a paused VM: the job's statuses and nothing else (no STOP/RESUME)
            assert await job(a, "snapshot-save", "save1", tag="s1", vmstate="disk0",
                             devices=[]) == OK_JOB
            assert await status(a) == "paused"
            assert await execute(a, "query-jobs") == [{
                "id": "save1", "type": "snapshot-save", "status": "concluded",
                "current-progress": 1, "total-progress": 1}]
            err = await execute_error(a, "snapshot-save", {"job-id": "save1", "tag": "x",
                                                           "vmstate": "d", "devices": []})
            assert error_desc(err) == "Job ID 'save1' already in use"
            await dismiss(a, "save1")
            assert await execute(a, "query-jobs") == []
            err = await execute_error(a, "job-dismiss", {"id": "save1"})
            assert error_desc(err) == "Job not found"
            err = await execute_error(a, "snapshot-load", {"job-id": "1bad", "tag": "s1"})
            assert error_desc(err) == "Invalid job ID '1bad'"

            listed = await execute(a, "__org.aemu_snapshot-list")
            assert names(listed) == ["s1"]
            s1 = listed[0]
            assert (s1["status"], s1["parent"], s1["vm"]) == ("paused", None, "a")
            assert s1["vm-clock-ns"] == C1 * 10 and s1["icount"] > 0
            assert s1["file"] == str(host.state_dir / "snapshots" / "a" / "s1.snap")
            assert os.path.exists(s1["file"])

            # the twin in the same VM: C1 -> C2, load s1, C1 -> C2 again
            await run_to(a, C2)
            first = await observe(a)
            drain(a)
            assert await job(a, "snapshot-load", "load1", tag="s1", vmstate="disk0",
                             devices=[]) == OK_JOB
            back = await execute(a, "__org.aemu_query-run")
            assert (back["cycles"], back["status"]) == (C1, "paused")
            await run_to(a, C2)
            assert await observe(a) == first

            # failures are the job's, not the command's
            assert await job(a, "snapshot-load", "load2", tag="nope") == FAILED_JOB
            [info] = [j for j in await execute(a, "query-jobs") if j["id"] == "load2"]
            assert info["status"] == "concluded" and "no snapshot named 'nope'" in info["error"]
            assert await job(a, "snapshot-save", "save2", tag="s1", vmstate="disk0",
                             devices=[]) == FAILED_JOB        # a tag that exists
            assert await job(a, "snapshot-save", "save3", tag="s9", vmstate="disk0",
                             devices=["disk0"]) == FAILED_JOB
            errors = {j["id"]: j.get("error") for j in await execute(a, "query-jobs")}
            assert "already has a snapshot named 's1'" in errors["save2"]
            assert errors["save3"].startswith("No block device node 'disk0'")
            for j in ("load1", "load2", "save2", "save3"):
                await dismiss(a, j)
            assert (await observe(a))["cycles"] == C2          # failures changed nothing

            # a fresh VM of the same name finds the snapshot and twins too
            await disconnect(a)
            await execute(h, "__org.aemu_vm-destroy", {"name": "a"})
            await create_vm(h, "a", args=["5", "1000"], paused=True, pace="fast")
            a = await connect(host.vm_socket("a"), "a2")
            assert names(await execute(a, "__org.aemu_snapshot-list")) == ["s1"]
            assert await execute(a, "__org.aemu_snapshot-load", {"tag": "s1"}) == {
                "status": "paused"}
            await run_to(a, C2)
            assert await observe(a) == first
            # an eager load is the same as a lazy one
            await execute(a, "__org.aemu_snapshot-load", {"tag": "s1", "lazy": False})
            await run_to(a, C2)
            assert await observe(a) == first

            drain(a)
            assert await job(a, "snapshot-delete", "del1", tag="s1", devices=[]) == OK_JOB
            await dismiss(a, "del1")
            assert await execute(a, "__org.aemu_snapshot-list") == []
            assert not os.path.exists(s1["file"])
            assert await job(a, "snapshot-delete", "del2", tag="s1") == FAILED_JOB

    run(main(), timeout=120)
    assert host.stop() == 0


def test_diff_snapshots_delete_and_rebase(serve):
    host = serve()

    async def main():
        async with hosted_vm(host, "d", args=["5", "1000"], paused=True, pace="fast") as (h, a):
            await run_to(a, C1)
            full = await execute(a, "__org.aemu_snapshot-save", {"tag": "base"})
            assert full["parent"] is None and full["pages"] > 0

            err = await execute_error(a, "__org.aemu_snapshot-save", {"tag": "base"})
            assert "already has a snapshot named 'base'" in error_desc(err)
            err = await execute_error(a, "__org.aemu_snapshot-save",
                                      {"tag": "x", "parent": "nope"})
            assert "no snapshot named 'nope'" in error_desc(err)

            await run_to(a, C3)
            diff = await execute(a, "__org.aemu_snapshot-save", {"tag": "step",
                                                                  "parent": "base"})
            assert diff["parent"] == "base"
            assert 0 < diff["pages"] < full["pages"]
            assert diff["vm-state-size"] < full["vm-state-size"]
            await run_to(a, C4)
            at_c4 = await observe(a)

            # loading the diff resolves the chain
            assert (await execute(a, "__org.aemu_snapshot-load", {"tag": "step"}))[
                "status"] == "paused"
            assert (await execute(a, "__org.aemu_query-run"))["cycles"] == C3
            await run_to(a, C4)
            assert await observe(a) == at_c4

            # a diff needs the VM to descend from its parent
            await execute(a, "__org.aemu_snapshot-save", {"tag": "other"})
            err = await execute_error(a, "__org.aemu_snapshot-save",
                                      {"tag": "x", "parent": "base"})
            assert "the VM was not saved to or loaded from 'base' last" in error_desc(err)

            # deleting a parent: refused, then rebased
            err = await execute_error(a, "__org.aemu_snapshot-delete", {"tag": "base"})
            assert "has diff snapshots on top of it (step)" in error_desc(err)
            assert await execute(a, "__org.aemu_snapshot-delete",
                                 {"tag": "base", "rebase": True}) == {"rebased": ["step"]}
            listed = {i["name"]: i for i in await execute(a, "__org.aemu_snapshot-list")}
            assert set(listed) == {"step", "other"} and listed["step"]["parent"] is None
            rebased = listed["step"]
            assert diff["pages"] < rebased["pages"] <= diff["pages"] + full["pages"]
            assert rebased["vm-state-size"] < full["vm-state-size"] + diff["vm-state-size"]
            await execute(a, "__org.aemu_snapshot-load", {"tag": "step"})
            await run_to(a, C4)
            assert await observe(a) == at_c4
            # overwrite replaces
            again = await execute(a, "__org.aemu_snapshot-save", {"tag": "other",
                                                                   "overwrite": True})
            assert again["vm-clock-ns"] == C4 * 10

    run(main(), timeout=120)
    assert host.stop() == 0


def test_running_vm_is_stopped_while_saved_and_loaded(serve):
    host = serve()

    async def main():
        h = await connect(host.socket, "host")
        r = None
        try:
            await create_vm(h, "r", args=["1000", "100"])        # realtime, running
            r = await connect(host.vm_socket("r"), "r")
            assert await status(r) == "running"
            drain(r)
            assert await job(r, "snapshot-save", "s", tag="live", vmstate="d",
                             devices=[]) == OK_JOB_STOPPED
            assert await status(r) == "running"
            live = (await execute(r, "__org.aemu_snapshot-list"))[0]
            assert live["status"] == "running"        # what it was, not save-vm
            assert await job(r, "snapshot-load", "l", tag="live", vmstate="d",
                             devices=[]) == OK_JOB_STOPPED
            assert await status(r) == "running"       # a running VM runs on

            # paused: it stays paused, a snapshot of a running VM loads paused
            await execute(r, "stop")
            assert (await next_event(r))["event"] == "STOP"
            assert await job(r, "snapshot-load", "l2", tag="live") == OK_JOB
            assert await status(r) == "paused"
            # HMP too, and a paused save records "paused"
            assert await hmp(r, "savevm quiet") == ""
            assert await status(r) == "paused"
            assert {i["name"]: i["status"] for i in
                    await execute(r, "__org.aemu_snapshot-list")}["quiet"] == "paused"
            await execute(r, "cont")
            assert (await next_event(r))["event"] == "RESUME"
            assert await hmp(r, "loadvm quiet") == ""
            assert [(await next_event(r))["event"] for _ in range(2)] == ["STOP", "RESUME"]
            assert await status(r) == "running"
            assert r.events.empty()
        finally:
            if r is not None:
                await disconnect(r)
            await disconnect(h)

    run(main(), timeout=60)
    assert host.stop() == 0


def test_blocked_save(serve):
    host = serve()
    fsroot = host.state_dir / "fsroot"
    fsroot.mkdir()

    async def main():
        async with hosted_vm(host, "f", firmware=FILEIO, paused=True, pace="fast",
                             fs_root=str(fsroot)) as (h, f):
            assert await execute(f, "__org.aemu_query-blockers") == {
                "normal": [], "cpr-reboot": [], "cpr-transfer": []}
            assert await execute(f, "query-migrate") == {}
            await run_to(f, FILE_OPEN_AT)
            blockers = await execute(f, "__org.aemu_query-blockers")
            [reason] = blockers["normal"]
            assert "host file(s) open" in reason
            assert blockers["cpr-transfer"] == [reason] and blockers["cpr-reboot"] == []
            assert await execute(f, "query-migrate") == {"blocked-reasons": [reason]}

            drain(f)
            assert await job(f, "snapshot-save", "b", tag="blocked", vmstate="d",
                             devices=[]) == FAILED_JOB       # no STOP/RESUME: never stopped
            [info] = await execute(f, "query-jobs")
            assert info["error"] == f"the VM cannot be saved: {reason}"
            err = await execute_error(f, "__org.aemu_snapshot-save", {"tag": "blocked"})
            assert reason in error_desc(err)
            assert await hmp(f, "savevm blocked") == f"Error: the VM cannot be saved: {reason}\r\n"
            assert await execute(f, "__org.aemu_snapshot-list") == []
            assert await status(f) == "paused"

            # once the guest closed its files, it saves
            await execute(f, "cont")
            while (await next_event(f))["event"] != "SHUTDOWN":
                pass
            assert await execute(f, "__org.aemu_query-blockers") == {
                "normal": [], "cpr-reboot": [], "cpr-transfer": []}
            saved = await execute(f, "__org.aemu_snapshot-save", {"tag": "done"})
            assert saved["status"] == "shutdown"

    run(main(), timeout=60)
    assert host.stop() == 0


def test_hmp_savevm_loadvm_delvm_info_snapshots(serve):
    host = serve()

    async def main():
        async with hosted_vm(host, "m", args=["5", "1000"], paused=True, pace="fast") as (h, v):
            assert await hmp(v, "info snapshots") == "There is no snapshot available.\r\n"
            await run_to(v, C1)
            assert await hmp(v, "savevm") == ""
            assert await hmp(v, "savevm first") == ""
            await run_to(v, C2)
            at_c2 = await observe(v)
            assert await hmp(v, "savevm first") == ""          # savevm replaces a tag
            table = await hmp(v, "info snapshots")
            lines = table.split("\r\n")
            assert lines[0] == "List of snapshots present on all disks:"
            assert lines[1].split() == ["ID", "TAG", "VM", "SIZE", "DATE", "VM", "CLOCK",
                                        "ICOUNT"]
            assert lines[1] == (f"{'ID':<10}{'TAG':<17}{'VM SIZE':>8}{'DATE':>20}"
                                f"{'VM CLOCK':>13}{'ICOUNT':>11}")
            rows = [line.split() for line in lines[2:] if line]
            assert len(rows) == 2 and table.endswith("\r\n")
            auto = next(r for r in rows if r[1] != "first")
            assert re.fullmatch(r"vm-\d{14}", auto[1])
            first = next(r for r in rows if r[1] == "first")
            # ID, TAG, size (number, unit), date, time, clock, icount
            assert first[6] == "00:00:00.030" and int(first[7]) == at_c2["insns"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", first[4]) and first[3].endswith("iB")

            assert await hmp(v, f"loadvm {auto[1]}") == ""
            assert (await execute(v, "__org.aemu_query-run"))["cycles"] == C1
            await run_to(v, C2)
            assert await observe(v) == at_c2
            assert await hmp(v, "loadvm first") == ""
            assert await observe(v) == at_c2
            assert await hmp(v, f"delvm {auto[1]}") == ""
            assert names(await execute(v, "__org.aemu_snapshot-list")) == ["first"]

            assert (await hmp(v, "loadvm nope")).startswith("Error: VM 'm' has no snapshot")
            assert (await hmp(v, "delvm nope")).startswith("Error: VM 'm' has no snapshot")
            assert await hmp(v, "loadvm") == "Error: usage: loadvm tag\r\n"
            assert await hmp(v, "savevm a b") == "Error: usage: savevm [tag]\r\n"
            assert (await hmp(v, "savevm ../x")).startswith("Error: invalid snapshot name")
            assert "savevm [tag]" in await hmp(v, "help")

    run(main(), timeout=60)
    assert host.stop() == 0


# -- the CLI ---------------------------------------------------------------------------------
def aemu(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(aemu_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=NEUTRAL_CWD)


def test_snapshot_cli_and_savevm_info(serve):
    host = serve()
    state = host.state_dir

    async def setup():
        h = await connect(host.socket, "host")
        try:
            await create_vm(h, "c", args=["5", "1000"], paused=True, pace="fast")
            c = await connect(host.vm_socket("c"), "c")
            try:
                await run_to(c, C1)
            finally:
                await disconnect(c)
        finally:
            await disconnect(h)

    run(setup())
    sd = ("--state-dir", state)
    r = aemu("snapshot", "save", "c", "one", *sd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("c: saved snapshot 'one': ") and "saved paused" in r.stdout
    r = aemu("snapshot", "save", "c", "one", *sd)
    assert r.returncode == 1 and "already has a snapshot named 'one'" in r.stderr
    r = aemu("snapshot", "save", "c", "one", "--overwrite", "--json", *sd)
    assert r.returncode == 0, r.stderr
    one = json.loads(r.stdout)
    assert one["name"] == "one" and one["vm-clock-ns"] == C1 * 10
    r = aemu("snapshot", "save", "c", "two", "--parent", "one", *sd)
    assert r.returncode == 0, r.stderr
    assert "diff on 'one'" in r.stdout

    r = aemu("snapshot", "list", "c", *sd)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TAG", "VM", "SIZE", "DATE", "VM", "CLOCK", "ICOUNT", "PARENT"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"one", "two"} and rows["two"][-1] == "one" and rows["one"][-1] == "-"
    r = aemu("snapshot", "list", "c", "--json", *sd)
    assert names(json.loads(r.stdout)) == ["one", "two"]

    r = aemu("snapshot", "info", "c", "two", *sd)
    assert r.returncode == 0, r.stderr
    assert "chain: one -> two" in r.stdout and f"file: {state}" in r.stdout
    r = aemu("snapshot", "info", "c", "two", "--json", *sd)
    info = json.loads(r.stdout)
    assert info["chain"] == ["one", "two"] and info["parent"] == "one"
    r = aemu("snapshot", "info", "c", "zzz", *sd)
    assert r.returncode == 1 and "no snapshot named 'zzz'" in r.stderr

    # savevm-info reads the store's files (mapped-ram), a diff too
    r = aemu("savevm-info", one["file"])
    assert r.returncode == 0, r.stderr
    assert "capabilities: mapped-ram" in r.stdout and "run state: paused" in r.stdout
    assert f"{one['pages']} pages present" in r.stdout
    r = aemu("savevm-info", "--json", info["file"])
    decoded = json.loads(r.stdout)
    assert decoded["ram"]["layout"] == "mapped-ram"
    assert decoded["ram"]["pages-present"] == info["pages"]
    cpu = next(d for d in decoded["devices"] if d["name"] == "cpu")
    assert cpu["fields"]["insns"] == info["icount"]

    r = aemu("snapshot", "load", "c", "one", "--eager", *sd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "c: loaded snapshot 'one'; the VM is paused"
    r = aemu("snapshot", "delete", "c", "one", *sd)
    assert r.returncode == 1 and "has diff snapshots on top of it" in r.stderr
    r = aemu("snapshot", "delete", "c", "one", "--rebase", *sd)
    assert r.returncode == 0, r.stderr
    assert "rebased two onto its parent" in r.stdout
    r = aemu("snapshot", "delete", "c", "two", "--json", *sd)
    assert r.returncode == 0 and json.loads(r.stdout) == {"rebased": []}
    r = aemu("snapshot", "list", "c", *sd)
    assert r.stdout.strip() == "There is no snapshot available."

    r = aemu("snapshot", "list", "novm", *sd)
    assert r.returncode == 2 and "cannot connect" in r.stderr
    r = aemu("snapshot", "load", "c", *sd)
    assert r.returncode == 2 and "needs a TAG" in r.stderr
    r = aemu("snapshot", "list", "c", "--rebase", *sd)
    assert r.returncode == 2 and "--rebase is for delete" in r.stderr
    assert host.stop() == 0


# -- aemu run --loadvm -----------------------------------------------------------------------
def test_run_loadvm(serve, base, procs):
    host = serve()
    state = host.state_dir
    console = state / "ec.console"

    async def setup():
        h = await connect(host.socket, "host")
        try:
            await create_vm(h, "ec", args=["1", "1000"], paused=True, pace="fast",
                            uart=f"file:{console}")
            v = await connect(host.vm_socket("ec"), "ec")
            try:
                await run_to(v, C1)
                await execute(v, "__org.aemu_snapshot-save", {"tag": "boot"})
                await execute(v, "cont")
                while (await next_event(v))["event"] != "SHUTDOWN":
                    pass
                await execute(v, "__org.aemu_snapshot-save", {"tag": "ended"})
            finally:
                await disconnect(v)
        finally:
            await disconnect(h)

    run(setup())
    assert host.stop() == 0

    # what the served VM printed after C1: its last line (its first came before C1)
    printed = console.read_text().splitlines()
    assert len(printed) == 2 and printed[0].startswith("idle: TIMER0 at 1000 Hz")
    last = printed[-1]
    assert last.startswith("idle: 1000 ticks, 1000 wakeups, virtual time 1.000")

    # the run goes on from the snapshot: it prints only what the VM printed after C1
    r = aemu("run", "--loadvm", "boot", "--state-dir", state, "--name", "ec", IDLE, "1", "1000")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [last]
    # the default name is the program's: there is no snapshot of VM "idle"
    r = aemu("run", "--loadvm", "boot", "--state-dir", state, IDLE)
    assert r.returncode == 126 and "VM 'idle' has no snapshot named 'boot'" in r.stderr
    r = aemu("run", "--loadvm", "ended", "--state-dir", state, "--name", "ec", IDLE)
    assert r.returncode == 126 and "guest that is shutdown" in r.stderr
    r = aemu("run", "--loadvm", "boot", "--state-dir", base / "empty", "--name", "ec", IDLE)
    assert r.returncode == 126 and "there is no snapshot store" in r.stderr
    r = aemu("run", "--name", "../x", IDLE)
    assert r.returncode == 2 and "--name" in r.stderr
    # a board that does not match
    r = aemu("run", "--loadvm", "boot", "--state-dir", state, "--name", "ec",
             "--ram-size", "4M", IDLE)
    assert r.returncode == 126 and "4194304" in r.stderr

    # with QMP: loaded, paused (-S), the same store's snapshot commands
    sock = str(base / "run.qmp")
    p = Proc(aemu_cmd("run", "--qmp", f"unix:{sock}", "--paused", "--loadvm", "boot",
                      "--state-dir", state, "--name", "ec", IDLE, "1", "1000"), base, "run")
    procs.append(p)
    p.wait_stderr(r"QMP on unix:")

    async def main():
        c = await connect(sock, "run")
        try:
            assert await execute(c, "query-name") == {"name": "ec"}
            assert await status(c) == "paused"
            assert (await execute(c, "__org.aemu_query-run"))["cycles"] == C1
            assert names(await execute(c, "__org.aemu_snapshot-list")) == ["boot", "ended"]
            assert await job(c, "snapshot-load", "j", tag="ended") == OK_JOB
            assert await status(c) == "shutdown"
            await execute(c, "__org.aemu_snapshot-load", {"tag": "boot"})
            await execute(c, "cont")
            while (await next_event(c))["event"] != "SHUTDOWN":
                pass
        finally:
            await disconnect(c)

    run(main())
    assert p.wait() == 0, p.stderr
    assert p.stdout.splitlines() == [last]


# -- in-process: the machine's holds, the store's names --------------------------------------
def events_of(vm) -> list[str]:
    seen: list[str] = []
    vm.add_listener(lambda item: seen.append(item["event"]))
    return seen


def test_machine_hold_and_release():
    from aemu.hw.machine import Machine, MachineError
    from aemu.loop import RunState

    async def main():
        vm = Machine(None, IDLE, args=["1000", "10"], stdout=io.BytesIO(),
                     stderr=io.BytesIO(), start_paused=True)
        await vm.start()
        try:
            seen = events_of(vm)
            # paused: silent both ways
            assert vm.hold(RunState.SAVE_VM) is RunState.PAUSED
            assert vm.state is RunState.SAVE_VM and vm.held_state is RunState.PAUSED
            with pytest.raises(MachineError):
                vm.hold(RunState.RESTORE_VM)
            vm.release()
            assert (vm.state, vm.held_state, seen) == (RunState.PAUSED, None, [])
            # running: STOP, RESUME
            vm.resume()
            seen.clear()
            vm.hold(RunState.SAVE_VM)
            cycles = vm.cycles
            await asyncio.sleep(0.05)
            assert vm.cycles == cycles           # nothing runs while held
            vm.release()
            assert vm.state is RunState.RUNNING and seen == ["STOP", "RESUME"]
            # stop during a save: it stays stopped (its STOP already went out)
            seen.clear()
            vm.hold(RunState.SAVE_VM)
            vm.pause()
            vm.release()
            assert vm.state is RunState.PAUSED and seen == ["STOP"]
            # cont during a save of a paused VM: it runs afterwards
            seen.clear()
            vm.hold(RunState.SAVE_VM)
            vm.resume()
            assert vm.state is RunState.SAVE_VM
            vm.release()
            assert vm.state is RunState.RUNNING and seen == ["RESUME"]
            # a load under hold: running before -> running after (STOP, RESUME)
            seen.clear()
            vm.hold(RunState.RESTORE_VM)
            vm.state_replaced(RunState.PAUSED)
            assert (vm.state, vm.held_state, seen) == (RunState.RUNNING, None,
                                                       ["STOP", "RESUME"])
            vm.pause()
            seen.clear()
            vm.hold(RunState.RESTORE_VM)
            vm.state_replaced(RunState.RUNNING)
            assert vm.state is RunState.PAUSED and seen == []
            vm.hold(RunState.RESTORE_VM)
            vm.state_replaced(RunState.SAVE_VM)          # never recorded; treated as paused
            assert vm.state is RunState.PAUSED
            with pytest.raises(ValueError):
                vm.hold(RunState.PAUSED)
        finally:
            await vm.close()

    asyncio.run(asyncio.wait_for(main(), T))


def test_host_in_process_blockers_and_commands(base):
    """A blocker added at the Python level blocks every way of saving."""
    from aemu.host.host import Host
    from aemu.host.snapshots import SnapshotFailed
    from aemu.host.vm import VmConfig
    from aemu.loop import RunState
    from aemu.savevm.blocker import Mode

    async def main():
        host = Host(base / "st", allow_dirs=[FIRMWARE])
        await host.start()
        try:
            vm = await host.create_vm(VmConfig(name="p", firmware=IDLE, paused=True,
                                               args=["1", "10"]))
            assert vm.snapshots.store is host.snapshots
            handle = vm.snapshots.blockers.add("test: a device in flight", (Mode.NORMAL,))
            with pytest.raises(SnapshotFailed, match="test: a device in flight"):
                await vm.snapshots.save("x")
            assert vm.snapshots.blocked() == {"normal": ["test: a device in flight"],
                                              "cpr-reboot": [], "cpr-transfer": []}
            vm.snapshots.blockers.remove(handle)
            info = await vm.snapshots.save("x")
            assert info.runstate == "paused"
            assert host.snapshots.list("p")[0].name == "x"
            with pytest.raises(SnapshotFailed, match="invalid snapshot name"):
                await vm.snapshots.save("../../etc")

            # while a snapshot is written, the VM cannot be changed under it
            c = await connect(vm.qmp_address[len("unix:"):], "in-process")
            try:
                vm.machine.hold(RunState.SAVE_VM)
                assert await status(c) == "save-vm"
                for command, args in (("system_reset", None),
                                      ("__org.aemu_write-memory", {"addr": 0, "data": "AA=="}),
                                      ("__org.aemu_set-registers", {"registers": {"r0": 1}}),
                                      ("__org.aemu_run-until", {"cycles": 10 ** 6})):
                    err = await execute_error(c, command, args)
                    assert error_desc(err) == ("a snapshot of this VM is being saved; try "
                                               "again when it is done")
                assert await execute(c, "cont") == {}          # takes effect afterwards
                assert await status(c) == "save-vm"
                vm.machine.release()
                assert await status(c) == "running"
                assert (await next_event(c))["event"] == "RESUME"
            finally:
                await disconnect(c)
        finally:
            await host.shutdown()
        assert host.snapshots is None

    asyncio.run(asyncio.wait_for(main(), T))


def test_store_names_are_checked(tmp_path):
    from aemu.savevm.store import SnapshotError, SnapshotStore

    store = SnapshotStore(tmp_path / "s")
    try:
        for bad in ("../x", "/abs", "", "1x", "a/b", "x" * 65):
            with pytest.raises(SnapshotError):
                store._path(bad, "ok")
            with pytest.raises(SnapshotError):
                store._path("ok", bad)
    finally:
        store.close()


def test_default_vm_name():
    from aemu.cli import default_vm_name

    assert default_vm_name(None) == "demo"
    assert default_vm_name("/x/y/idle.elf") == "idle"
    assert default_vm_name("fw/my prog.v2.elf") == "my_prog.v2"
    assert default_vm_name("9lives.elf") == "vm-9lives"
    assert default_vm_name(".elf") == "vm-.elf"
