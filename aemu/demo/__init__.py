"""The bundled demo program (package data only).

``demo.elf`` is what ``aemu run`` runs when no program is given: a banner,
an ASCII Mandelbrot set in fixed point, the primes below 200 and CRC-32
check values, then the virtual time the run took -- about 1.3 million
instructions, exit status 0.  It is built from ``demo.c`` with aemu's BSP
(``make CR16_PREFIX=...`` in this directory; the ELF is committed).
"""
