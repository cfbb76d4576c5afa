"""aemu's board support package for cr16-elf-gcc programs (package data only).

The directory holds ``crt0.S``, ``syscalls.c``, ``aemu.ld`` and ``aemu_host.h``:
the start-up code, newlib system-call stubs and linker script that give a
program argc/argv from aemu's command line, system calls that return real
results, aemu's virtual clock, a 2 MiB heap and a 256 KiB stack.  See
``README.md`` next to this file.  Build a program with::

    BSP=$(python3 -c 'import aemu.bsp; print(aemu.bsp.__path__[0])')
    cr16-elf-gcc -O2 -nostartfiles -T $BSP/aemu.ld -I$BSP \\
        $BSP/crt0.S $BSP/syscalls.c prog.c -o prog.elf
"""
