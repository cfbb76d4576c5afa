/* fileio.c -- file I/O through the host services, on relative paths in
 * the current directory (aemu runs it with --fs-root DIR): open with
 * O_CREAT/O_TRUNC/O_EXCL, write, lseek (SEEK_SET/CUR/END, beyond 32 KiB),
 * read back, overwrite in the middle, stdio fopen/fprintf/fgets/fseek/ftell,
 * rename, unlink, and the errors ENOENT/EEXIST/EBADF.  Every return value
 * is checked: the BSP's stubs return the host's real results. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "fw.h"

static const char *errname(int e)
{
    return e == ENOENT ? "ENOENT" : e == EEXIST ? "EEXIST" : e == EBADF ? "EBADF"
         : e == 0 ? "0" : "other";
}

static uint8_t buf[4096], pattern[4096];

int main(void)
{
    int fd, i, n, bad;
    long pos, sq;
    uint32_t total;
    FILE *f;
    char line[64];

    fd = open("fileio.tmp", O_CREAT | O_TRUNC | O_WRONLY, 0644);
    printf("open for writing: %s\n", fd >= 3 ? "ok" : "FAILED");
    for (i = 0; i < (int)sizeof buf; i++)
        buf[i] = (uint8_t)((unsigned)i * 13u + ((unsigned)i >> 8));
    total = 0;
    for (i = 0; i < 10; i++) {                      /* 40960 bytes */
        n = (int)write(fd, buf, sizeof buf);
        total += (uint32_t)n;
    }
    printf("wrote %lu bytes\n", (unsigned long)total);
    printf("close: %d\n", close(fd));

    fd = open("fileio.tmp", O_RDWR);
    pos = lseek(fd, 0, SEEK_END);
    printf("size by SEEK_END: %ld\n", pos);
    pos = lseek(fd, 40000, SEEK_SET);
    n = (int)read(fd, buf, 100);
    printf("at 40000 read %d bytes: %u %u %u, now at %ld\n", n, buf[0], buf[1], buf[99],
           (long)lseek(fd, 0, SEEK_CUR));
    pos = lseek(fd, -1000, SEEK_CUR);
    printf("SEEK_CUR -1000: %ld\n", pos);
    pos = lseek(fd, 100, SEEK_SET);
    n = (int)write(fd, "OVERWRITTEN", 11);
    printf("overwrite at %ld: %d\n", pos, n);
    lseek(fd, 96, SEEK_SET);
    n = (int)read(fd, buf, 20);
    printf("read back %d:", n);
    for (i = 0; i < n; i++)
        printf(" %02x", buf[i]);
    printf("\n");
    pos = lseek(fd, 0, SEEK_SET);
    bad = 0;
    total = 0;
    for (i = 0; i < (int)sizeof pattern; i++)
        pattern[i] = (uint8_t)((unsigned)i * 13u + ((unsigned)i >> 8));
    while ((n = (int)read(fd, buf, sizeof buf)) > 0) {
        if (total == 0)
            memcpy(pattern + 100, "OVERWRITTEN", 11);
        if (n != (int)sizeof buf || memcmp(buf, pattern, sizeof buf) != 0)
            bad++;
        if (total == 0)
            for (i = 100; i < 111; i++)
                pattern[i] = (uint8_t)((unsigned)i * 13u + ((unsigned)i >> 8));
        total += (uint32_t)n;
    }
    printf("read all: %lu bytes, %d bad blocks, last read %d\n", (unsigned long)total, bad, n);
    printf("close: %d\n", close(fd));

    errno = 0;
    fd = open("fileio.tmp", O_CREAT | O_EXCL | O_WRONLY, 0644);
    printf("O_EXCL on existing file: %d %s\n", fd, errname(errno));
    errno = 0;
    printf("rename: %d\n", rename("fileio.tmp", "fileio2.tmp"));
    fd = open("fileio.tmp", O_RDONLY);
    printf("open old name: %d %s\n", fd, errname(errno));
    errno = 0;
    n = close(99);
    printf("close(99): %d %s\n", n, errname(errno));

    f = fopen("fileio2.tmp", "r+");
    printf("fopen: %s\n", f ? "ok" : "FAILED");
    fseek(f, 0, SEEK_END);
    printf("ftell at end: %ld\n", ftell(f));
    fseek(f, 0, SEEK_SET);
    fprintf(f, "line %d: %s\n", 1, "stdio");
    fprintf(f, "line %d: %lx\n", 2, 0xabcdefUL);
    fflush(f);
    fseek(f, 0, SEEK_SET);
    while (fgets(line, sizeof line, f) && line[0] == 'l')
        printf("fgets: %s", line);
    printf("ftell: %ld\n", ftell(f));
    printf("fclose: %d\n", fclose(f));

    f = fopen("fileio3.tmp", "w");
    for (i = 0; i < 100; i++)
        fprintf(f, "%d,%ld\n", i, (long)i * i);
    fclose(f);
    f = fopen("fileio3.tmp", "r");
    total = 0;
    while (fscanf(f, "%d,%ld", &i, &sq) == 2)
        total += (uint32_t)sq;
    fclose(f);
    printf("sum of squares via fprintf/fscanf: %lu\n", (unsigned long)total);

    n = unlink("fileio2.tmp");
    printf("unlink: %d", n);
    n = unlink("fileio3.tmp");
    printf(" %d\n", n);
    errno = 0;
    n = unlink("fileio2.tmp");
    printf("unlink again: %d %s\n", n, errname(errno));
    return 0;
}
