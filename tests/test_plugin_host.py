"""aemu_host / aemu_serve: one real `aemu serve` per session in a temporary
state dir, a QMP client per test, and each test's VMs gone after it."""
from __future__ import annotations

import shutil

import pytest

from plugin_helpers import IDLE, IRQ, make_ini

pytest_plugins = ["pytester"]

HOST_TEST = f"""
import asyncio
import os
import pytest
from qemu.qmp import QMPClient

pytestmark = pytest.mark.asyncio
SEEN = {{}}

async def test_create_and_drive_a_vm(aemu_host):
    assert isinstance(aemu_host.qmp, QMPClient)
    host = await aemu_host.execute("query-host")
    SEEN["pid"], SEEN["state"] = host["pid"], str(aemu_host.state_dir)
    assert aemu_host.address == "unix:" + str(aemu_host.state_dir / "host.qmp")
    info = await aemu_host.create_vm("a", {IDLE!r}, args=["1", "100"], paused=True, pace="fast")
    assert info["status"] == "paused"
    vm = await aemu_host.vm("a")
    assert (await vm.execute("query-status"))["status"] == "paused"
    await vm.execute("run-until", {{"ns": 50_000_000}})
    assert (await vm.execute("query-run"))["virtual-ns"] == 50_000_000

async def test_vms_of_the_last_test_are_gone(aemu_host):
    assert await aemu_host.execute("vm-list") == []
    host = await aemu_host.execute("query-host")
    assert (host["pid"], str(aemu_host.state_dir)) == (SEEN["pid"], SEEN["state"])

async def test_a_firmware_in_the_project(aemu_host):
    await aemu_host.create_vm("b", "copied.elf", paused=True)

async def test_outside_the_allowed_dirs(aemu_host):
    with pytest.raises(Exception, match="outside the directories this host may use"):
        await aemu_host.create_vm("c", "/bin/sh")

@pytest.mark.asyncio(loop_scope="module")
async def test_on_another_loop(aemu_host):
    await aemu_host.create_vm("d", {IDLE!r}, paused=True)
    assert [vm["name"] for vm in await aemu_host.execute("vm-list")] == ["d"]
"""


@pytest.mark.parametrize("test_scope", ["function", "session"])
def test_host_fixture(pytester: pytest.Pytester, test_scope: str) -> None:
    make_ini(pytester, "function", test_scope, f"aemu_host_allow_dirs = {IRQ}")
    shutil.copy(IDLE, pytester.path / "copied.elf")      # the rootdir is allowed too
    pytester.makepyfile(test_host=HOST_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
