"""savevm: declarative VM state (vmstate), QEMU's stream format, snapshots.

Devices import only ``aemu.savevm.vmstate``; the engine is in ``codec`` and
``stream``."""
