/* aemu_host.h -- public interface of the aemu board support package (BSP).
 *
 * Include it (with -I<bsp dir>) if a program wants to know whether it runs
 * under aemu, read aemu's virtual clock directly or issue host-service calls
 * of its own.  Ordinary programs do not need it: the BSP's crt0 and newlib
 * stubs make printf, malloc, fopen, time, clock, argv, exit ... just work.
 *
 * Host-service ("syscall") convention, shared by aemu and the reference
 * simulator cr16-elf-run: service code in r0 (r1 = 0), arguments in r2, r3,
 * r4, r5 (a 32-bit pointer or offset takes two of them, low half in the
 * lower-numbered register), then "excp svc".  The result comes back in r0
 * (16-bit services) or (r1,r0) (32-bit services); afterwards r4 holds the
 * errno value (newlib numbering) if the 16-bit result is 0xFFFF, else 0.
 *
 * The host block: the linker script aemu.ld reserves 1024 zeroed bytes at
 * the ELF symbol __aemu_host (output section .aemu_host; the C name is
 * _aemu_host because the cr16 C ABI prefixes every C symbol with '_').
 * aemu's loader fills it before the program starts:
 *
 *     offset 0  u32  magic   0x554D4541 ("AEMU" in memory)
 *     offset 4  u16  version 1
 *     offset 6  u16  argc
 *     offset 8  argc NUL-terminated strings back to back (argv[0] first)
 *
 * All fields are little-endian.  Under the reference simulator the block
 * stays zero: the BSP then passes argc = 1, argv = { "", NULL } to main and
 * never uses the aemu-only services (AEMU_SVC_GETTIME).
 */
#ifndef AEMU_HOST_H
#define AEMU_HOST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AEMU_HOST_MAGIC    0x554D4541UL   /* "AEMU" little-endian */
#define AEMU_HOST_VERSION  1
#define AEMU_HOST_SIZE     1024

/* Host services understood by both aemu and cr16-elf-run. */
#define AEMU_SVC_TIME      0x300   /* -> (r1,r0) host seconds since 1970 */
#define AEMU_SVC_OPEN      0x401   /* path (r3:r2), flags r4, mode r5 -> (r1,r0) fd */
#define AEMU_SVC_CLOSE     0x402   /* fd r2 -> r0 */
#define AEMU_SVC_READ      0x403   /* fd r2, buf (r4:r3), count r5 -> r0 */
#define AEMU_SVC_WRITE     0x404   /* fd r2, buf (r4:r3), count r5 -> r0 */
#define AEMU_SVC_LSEEK     0x405   /* fd r2, offset (r4:r3), whence r5 -> (r1,r0) */
#define AEMU_SVC_RENAME    0x406   /* old (r3:r2), new (r5:r4) -> r0 */
#define AEMU_SVC_UNLINK    0x407   /* path (r3:r2) -> r0 */
#define AEMU_SVC_EXIT      0x410   /* status r2; does not return */

/* aemu-only services: call them only when aemu_present() is true. */
#define AEMU_SVC_GETTIME   0x430   /* (r3:r2) -> 8-byte buffer, filled with the
                                      virtual time in ns since boot (u64 LE); r0 = 0 */

/* The host block itself (written by aemu's loader, zero elsewhere). */
extern unsigned char _aemu_host[AEMU_HOST_SIZE];

/* 1 if the host block carries aemu's magic and a known version, else 0. */
int aemu_present(void);

/* Raw host-service call: code in r0, a..d in r2..r5.  Returns (r1,r0);
   stores r4 (the errno value, 0 on success) in *err if err is not NULL. */
long aemu_svc(unsigned code, uint16_t a, uint16_t b, uint16_t c, uint16_t d,
              int *err);

/* Virtual time in nanoseconds since boot.  Returns 0 on success; -1 (and
   leaves *ns alone) when not running under aemu. */
int aemu_gettime_ns(uint64_t *ns);

#ifdef __cplusplus
}
#endif

#endif /* AEMU_HOST_H */
