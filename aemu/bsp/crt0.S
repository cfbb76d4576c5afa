/* crt0.S -- entry point of the aemu board support package (cr16-elf).
 *
 * Does what libgloss's crt1 does (cr16c-isa.md 7.7) plus what it leaves to
 * the loader:
 *   1. SP  := __STACK_START (top of the .stack area of aemu.ld)
 *   2. ISP := __ISTACK_START (lprd)
 *   3. CFG |= 0x100 (CFG.ED: 32-bit dispatch-table entries)
 *   4. clear .bss (__BSS_START .. __BSS_END, both 4-byte aligned by aemu.ld)
 *      -- the BSP does not rely on zeroed RAM
 *   5. call _aemu_cstart (syscalls.c): argv from the host block,
 *      constructors, destructors via atexit, exit(main(argc, argv)).
 * .data is linked at its load address (no copy needed).
 */
	.section .text.aemu_start, "ax", @progbits
	.p2align 2
	.globl	_start
	.type	_start, @function
_start:
	movd	$__STACK_START, (sp)
	movd	$__ISTACK_START, (r1,r0)
	lprd	(r1,r0), isp
	spr	cfg, r0
	orw	$0x100, r0
	lpr	r0, cfg

	movd	$__BSS_START, (r1,r0)
	movd	$__BSS_END, (r3,r2)
	movd	$0, (r5,r4)
.Lclear:
	/* "cmpd a, b" compares a with b: bls is taken unless a > b (unsigned),
	   i.e. the loop runs while __BSS_END > pointer. */
	cmpd	(r3,r2), (r1,r0)
	bls	.Lcleared
	stord	(r5,r4), 0(r1,r0)
	addd	$4, (r1,r0)
	br	.Lclear
.Lcleared:
	bal	(ra), __aemu_cstart
.Lhang:
	br	.Lhang
	.size	_start, . - _start
