/* syscalls.c -- C run-time start and newlib system-call stubs of the aemu
 * board support package for cr16-elf (CR16C+, newlib 3.3).
 *
 * Part 1: _aemu_cstart, called by crt0.S with SP/ISP/CFG set up and .bss
 *         cleared: builds argc/argv from the host block, runs constructors,
 *         registers destructors, calls main and exits with its result.
 * Part 2: the host-service trap (aemu_svc) and the stubs newlib needs
 *         (_write, _read, _open, _close, _lseek, _unlink, rename, _exit,
 *         _sbrk, _fstat, _isatty, _getpid, _kill, _gettimeofday, _times,
 *         _time, _getenv), each returning the host's real result and setting
 *         errno from r4 on failure.
 *
 * The trap arguments are passed as explicit 16-bit register variables, so
 * the code does not depend on how wide int is (it works with -mint32 too).
 * Everything here also runs on the reference simulator cr16-elf-run: the
 * host block is zero there and the aemu-only service (gettime) and the
 * simulator's dangerous kill service are never called.
 */
#include <errno.h>
#include <reent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/types.h>
#include <time.h>

#include "aemu_host.h"

/* newlib's reentrant wrappers (_write_r, ...) clear the plain global
   variable errno, call the stub, and copy the global into the reentrancy
   structure when the stub failed.  The stubs therefore set both. */
#undef errno
extern int errno;

static void set_errno(int e)
{
    errno = e;
    _REENT->_errno = e;
}

/* Our own prototypes: newlib only declares most of these when it compiles
   itself (_COMPILING_NEWLIB), and <fcntl.h> declares _open as variadic,
   which is exactly what must NOT be used (see _open below). */
int _write(int fd, const void *buf, size_t n);
int _read(int fd, void *buf, size_t n);
int _open(const char *path, int flags, int mode);
int _close(int fd);
_off_t _lseek(int fd, _off_t off, int whence);
int _unlink(const char *path);
int _rename(const char *oldpath, const char *newpath);
void _exit(int status) __attribute__((noreturn));
void *_sbrk(ptrdiff_t incr);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
pid_t _getpid(void);
int _kill(pid_t pid, int sig);
int _gettimeofday(struct timeval *tv, void *tz);
clock_t _times(struct tms *buf);
time_t _time(time_t *t);
char *_getenv(const char *name);
char *_getenv_r(struct _reent *r, const char *name);

void _aemu_cstart(void) __attribute__((noreturn));
extern int main(int argc, char **argv);

/* ---------------------------------------------------------------------- */
/* Part 1: start-up                                                        */
/* ---------------------------------------------------------------------- */

typedef void (*aemu_fn)(void);

/* Defined by aemu.ld (their asm names carry one more leading underscore). */
extern aemu_fn _CTOR_START[], _CTOR_END[], _DTOR_START[], _DTOR_END[];
extern aemu_fn _INIT_ARRAY_START[], _INIT_ARRAY_END[];
extern aemu_fn _FINI_ARRAY_START[], _FINI_ARRAY_END[];
extern char _HEAP_START[], _HEAP_MAX[];

static int aemu_is_present;      /* in .bss: crt0 has cleared it */

static uint16_t host_u16(unsigned off)
{
    return (uint16_t)(_aemu_host[off] | ((uint16_t)_aemu_host[off + 1] << 8));
}

static uint32_t host_u32(unsigned off)
{
    return (uint32_t)host_u16(off) | ((uint32_t)host_u16(off + 2) << 16);
}

/* Walk the argument strings of the host block.  Stores the first `want`
   pointers in argv (if argv is not NULL) and returns the number of complete
   strings (at most the argc field); a string that is not NUL-terminated
   inside the block ends the list. */
static int host_args(char **argv, int want)
{
    unsigned off = 8, limit = host_u16(6);
    int n = 0;
    while ((unsigned)n < limit && off < AEMU_HOST_SIZE) {
        unsigned end = off;
        while (end < AEMU_HOST_SIZE && _aemu_host[end] != 0)
            end++;
        if (end >= AEMU_HOST_SIZE)
            break;
        if (argv && n < want)
            argv[n] = (char *)&_aemu_host[off];
        n++;
        off = end + 1;
    }
    return n;
}

static void run_dtors(void)
{
    aemu_fn *p;
    for (p = _FINI_ARRAY_END; p > _FINI_ARRAY_START; )
        (*--p)();
    for (p = _DTOR_START; p < _DTOR_END; p++)
        (*p)();
}

void _aemu_cstart(void)
{
    static char empty_name[] = "";
    int argc;
    aemu_fn *p;

    aemu_is_present = host_u32(0) == AEMU_HOST_MAGIC
                      && host_u16(4) == AEMU_HOST_VERSION;
    argc = aemu_is_present ? host_args(NULL, 0) : 1;
    {
        char *argv[argc + 1];           /* lives until exit() */
        if (aemu_is_present)
            host_args(argv, argc);
        else
            argv[0] = empty_name;       /* C11 5.1.2.2.1: name unknown */
        argv[argc] = NULL;

        /* Constructors: .init_array forwards, then .ctors backwards (gcc
           for cr16 emits .ctors; entries are halved code addresses, which
           is exactly what a C function pointer holds). */
        for (p = _INIT_ARRAY_START; p < _INIT_ARRAY_END; p++)
            (*p)();
        for (p = _CTOR_END; p > _CTOR_START; )
            (*--p)();
        if (_DTOR_END != _DTOR_START || _FINI_ARRAY_END != _FINI_ARRAY_START)
            atexit(run_dtors);

        exit(main(argc, argv));
    }
}

/* ---------------------------------------------------------------------- */
/* Part 2: host services and newlib stubs                                  */
/* ---------------------------------------------------------------------- */

int aemu_present(void)
{
    return aemu_is_present;
}

long aemu_svc(unsigned code, uint16_t a, uint16_t b, uint16_t c, uint16_t d,
              int *err)
{
    register uint16_t r0 __asm__("r0") = (uint16_t)code;
    register uint16_t r1 __asm__("r1") = 0;
    register uint16_t r2 __asm__("r2") = a;
    register uint16_t r3 __asm__("r3") = b;
    register uint16_t r4 __asm__("r4") = c;
    register uint16_t r5 __asm__("r5") = d;
    __asm__ volatile ("excp svc"
                      : "+r"(r0), "+r"(r1), "+r"(r2), "+r"(r3), "+r"(r4),
                        "+r"(r5)
                      :
                      : "memory");
    if (err)
        *err = (int)r4;
    return (long)(((uint32_t)r1 << 16) | r0);
}

#define LO(p) ((uint16_t)(uintptr_t)(p))
#define HI(p) ((uint16_t)((uintptr_t)(p) >> 16))

/* A 16-bit service result: 0xFFFF means failure, errno from r4. */
static int svc16(unsigned code, uint16_t a, uint16_t b, uint16_t c,
                 uint16_t d)
{
    int e;
    uint16_t r = (uint16_t)aemu_svc(code, a, b, c, d, &e);
    if (r == 0xFFFF) {
        set_errno(e ? e : EIO);
        return -1;
    }
    return (int)(int16_t)r;
}

/* At most this many bytes per read/write trap: the count register and the
   16-bit result must stay well below 0xFFFF (= -1).  Short transfers are
   normal; newlib's stdio loops. */
#define MAX_XFER 0x4000u

int _write(int fd, const void *buf, size_t n)
{
    return svc16(AEMU_SVC_WRITE, (uint16_t)fd, LO(buf), HI(buf),
                 (uint16_t)(n > MAX_XFER ? MAX_XFER : n));
}

int _read(int fd, void *buf, size_t n)
{
    return svc16(AEMU_SVC_READ, (uint16_t)fd, LO(buf), HI(buf),
                 (uint16_t)(n > MAX_XFER ? MAX_XFER : n));
}

/* newlib's open() is variadic, but it calls _open through _open_r as an
   ordinary (register-argument) function: path (r3:r2), flags r4, mode r5.
   So _open must NOT be variadic (on cr16 a variadic function receives all
   of its arguments on the stack) -- that is the bug of libgloss's stub.
   Programs call open(), never _open() with <fcntl.h>'s variadic prototype. */
int _open(const char *path, int flags, int mode)
{
    int e;
    long r = aemu_svc(AEMU_SVC_OPEN, LO(path), HI(path), (uint16_t)flags,
                      (uint16_t)mode, &e);
    if ((uint16_t)r == 0xFFFF) {
        set_errno(e ? e : EIO);
        return -1;
    }
    return (int)r;
}

int _close(int fd)
{
    return svc16(AEMU_SVC_CLOSE, (uint16_t)fd, 0, 0, 0);
}

_off_t _lseek(int fd, _off_t off, int whence)
{
    int e;
    long r = aemu_svc(AEMU_SVC_LSEEK, (uint16_t)fd, LO(off), HI(off),
                      (uint16_t)whence, &e);
    if (r == -1L) {
        set_errno(e ? e : EINVAL);
        return -1;
    }
    return r;
}

/* newlib 3.3's own _lseek_r and _times_r call _lseek/_times without a
   prototype in scope, so they truncate the 32-bit result to a 16-bit int
   (lseek beyond 32 KiB would come back negative).  These replacements are
   linked instead of libc's. */
_off_t _lseek_r(struct _reent *r, int fd, _off_t off, int whence)
{
    _off_t res;
    errno = 0;
    res = _lseek(fd, off, whence);
    if (res == -1 && errno != 0)
        r->_errno = errno;
    return res;
}

clock_t _times_r(struct _reent *r, struct tms *buf)
{
    clock_t res;
    errno = 0;
    res = _times(buf);
    if (res == (clock_t)-1 && errno != 0)
        r->_errno = errno;
    return res;
}

int _unlink(const char *path)
{
    return svc16(AEMU_SVC_UNLINK, LO(path), HI(path), 0, 0);
}

int _rename(const char *oldpath, const char *newpath)
{
    return svc16(AEMU_SVC_RENAME, LO(oldpath), HI(oldpath), LO(newpath),
                 HI(newpath));
}

/* newlib's rename() would use link() + unlink(); the host has a real
   rename service, so rename() goes straight to it. */
int rename(const char *oldpath, const char *newpath)
{
    return _rename(oldpath, newpath);
}

void _exit(int status)
{
    aemu_svc(AEMU_SVC_EXIT, (uint16_t)status, 0, 0, 0, NULL);
    for (;;)
        ;
}

/* Heap: __HEAP_START .. __HEAP_MAX from aemu.ld; fails with ENOMEM. */
static char *heap_end;

void *_sbrk(ptrdiff_t incr)
{
    char *prev = heap_end ? heap_end : _HEAP_START;
    if (incr >= 0 ? (size_t)incr > (size_t)(_HEAP_MAX - prev)
                  : (size_t)-incr > (size_t)(prev - _HEAP_START)) {
        set_errno(ENOMEM);
        return (void *)-1;
    }
    heap_end = prev + incr;
    return prev;
}

/* fds 0-2 are the console (character device, a tty: stdout is line
   buffered); anything else is taken to be a regular file. */
int _fstat(int fd, struct stat *st)
{
    if (fd < 0) {
        set_errno(EBADF);
        return -1;
    }
    memset(st, 0, sizeof *st);
    st->st_mode = fd <= 2 ? S_IFCHR | 0620 : S_IFREG | 0644;
    st->st_blksize = 1024;
    return 0;
}

int _isatty(int fd)
{
    if (fd >= 0 && fd <= 2)
        return 1;
    set_errno(fd < 0 ? EBADF : ENOTTY);
    return 0;
}

pid_t _getpid(void)
{
    return 1;
}

/* Signals are not delivered: a signal sent to ourselves (raise, abort)
   ends the program.  Under aemu through its kill service (the run ends
   "killed by signal sig"); elsewhere with exit status 128 + sig (abort()
   gives 134).  The simulator's kill service is never used: it would
   signal a *host* process. */
#define AEMU_SVC_KILL 60

int _kill(pid_t pid, int sig)
{
    if (pid != 1 && pid != 0) {
        set_errno(ESRCH);
        return -1;
    }
    if (sig == 0)
        return 0;
    if (aemu_is_present)
        aemu_svc(AEMU_SVC_KILL, 1, (uint16_t)sig, 0, 0, NULL);
    _exit(128 + sig);
}

int aemu_gettime_ns(uint64_t *ns)
{
    uint64_t v;     /* the service writes u64 little-endian, like the CPU */
    if (!aemu_is_present)
        return -1;
    aemu_svc(AEMU_SVC_GETTIME, LO(&v), HI(&v), 0, 0, NULL);
    *ns = v;
    return 0;
}

/* Under aemu: seconds since 1970 at virtual time 0, found once from the
   time service (aemu's epoch plus whole virtual seconds) and gettime (ns
   since boot), read so that both see the same virtual second. */
static uint32_t aemu_epoch(void)
{
    static uint32_t epoch;
    static int have_epoch;
    while (!have_epoch) {
        uint64_t before = 0, after = 0;
        uint32_t now;
        aemu_gettime_ns(&before);
        now = (uint32_t)aemu_svc(AEMU_SVC_TIME, 0, 0, 0, 0, NULL);
        aemu_gettime_ns(&after);
        if (before / 1000000000u == after / 1000000000u) {
            epoch = now - (uint32_t)(before / 1000000000u);
            have_epoch = 1;
        }
    }
    return epoch;
}

/* Under aemu: the virtual clock with microsecond resolution (deterministic:
   aemu's epoch plus the virtual time since boot).  Elsewhere: the host's
   time() in whole seconds (time service 0x300). */
int _gettimeofday(struct timeval *tv, void *tz)
{
    if (tv) {
        uint64_t ns = 0;
        if (aemu_is_present) {
            uint32_t epoch = aemu_epoch();
            aemu_gettime_ns(&ns);
            tv->tv_sec = (time_t)epoch + (time_t)(ns / 1000000000u);
            tv->tv_usec = (suseconds_t)((ns % 1000000000u) / 1000u);
        } else {
            tv->tv_sec = (time_t)(uint32_t)aemu_svc(AEMU_SVC_TIME, 0, 0, 0,
                                                    0, NULL);
            tv->tv_usec = 0;
        }
    }
    if (tz) {
        struct timezone *z = tz;
        z->tz_minuteswest = 0;
        z->tz_dsttime = 0;
    }
    return 0;
}

time_t _time(time_t *t)
{
    struct timeval tv;
    _gettimeofday(&tv, NULL);
    if (t)
        *t = tv.tv_sec;
    return tv.tv_sec;
}

/* times()/clock() in CLOCKS_PER_SEC (1000) ticks.  Under aemu: virtual time
   since boot.  Elsewhere: host seconds since the first call. */
clock_t _times(struct tms *buf)
{
    clock_t ticks;
    uint64_t ns;
    if (aemu_gettime_ns(&ns) == 0) {
        ticks = (clock_t)(ns / (1000000000u / CLOCKS_PER_SEC));
    } else {
        static uint32_t base;
        static int have_base;
        uint32_t now = (uint32_t)aemu_svc(AEMU_SVC_TIME, 0, 0, 0, 0, NULL);
        if (!have_base) {
            base = now;
            have_base = 1;
        }
        ticks = (clock_t)(now - base) * CLOCKS_PER_SEC;
    }
    if (buf) {
        buf->tms_utime = ticks;
        buf->tms_stime = 0;
        buf->tms_cutime = 0;
        buf->tms_cstime = 0;
    }
    return ticks;
}

/* newlib's getenv() calls _getenv (a cr16 peculiarity of this newlib);
   look the name up in environ like everywhere else (environ is empty
   unless the program calls setenv/putenv). */
char *_getenv(const char *name)
{
    return _getenv_r(_REENT, name);
}
