"""The same firmware under `aemu serve`, driven over QMP as any QMP client
would drive it (aemu_host: one serve process per session, the test's VMs
removed after it)."""
import asyncio
import base64


async def test_served_vm_exits_with_the_status_it_was_told(aemu_firmware, aemu_host):
    await aemu_host.create_vm("shell", aemu_firmware, pace="fast", paused=True, uart="none")
    vm = await aemu_host.vm("shell")
    await vm.execute("uart-input", {"data": base64.b64encode(b"count\nexit 7\n").decode()})
    with vm.qmp.listener("SHUTDOWN") as shutdown:
        await vm.execute("cont")
        await asyncio.wait_for(shutdown.get(), 10)
    run = await vm.execute("query-run")
    assert run["exit"]["status"] == 7
    memory = await vm.execute("read-memory", {"addr": 0x0, "size": 4})
    assert "data" in memory
