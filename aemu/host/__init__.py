"""``aemu serve``: the VM host, its QMP servers and commands."""
from aemu.host.host import Host, HostError
from aemu.host.vm import HostedVm, VmConfig

__all__ = ["Host", "HostError", "HostedVm", "VmConfig"]
