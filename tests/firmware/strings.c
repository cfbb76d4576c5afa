/* strings.c -- <string.h>, <ctype.h>, strtol & co., and printf/snprintf
 * formatting: widths, precision, flags, padding, negative numbers, long
 * values, characters and strings.  Only formats newlib (built without
 * C99 I/O and long long support) and glibc print identically are used:
 * no %lld, %zu, %hh, %j, %p, %a, and no strerror texts. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "fw.h"

static int sign(int v) { return (v > 0) - (v < 0); }

/* Not constants, so that gcc does not warn about the truncations that are
   tested on purpose. */
const char *volatile world = "world!!!";
const char *volatile long_text = "truncated output";

int main(void)
{
    char buf[128], buf2[64];
    int n;

    printf("== string.h\n");
    strcpy(buf, "Hello");
    strcat(buf, ", ");
    strncat(buf, world, 6);
    printf("[%s] len=%u\n", buf, (unsigned)strlen(buf));
    printf("cmp %d %d %d %d\n", sign(strcmp("abc", "abd")), sign(strcmp("abc", "abc")),
           sign(strcmp("b", "abc")), sign(strncmp("abcdef", "abcxyz", 3)));
    printf("cmp8 %d %d\n", sign(memcmp("\x80", "\x7f", 1)), sign(strcmp("\xff", "a")));
    /* Only needles of 1 or >= 5 characters: newlib 3.3's strstr is broken
       for 2-4 character needles on a 16-bit-int target (it builds a hash
       with (c << 16) and (c << 24) in int), on hardware as well. */
    printf("chr [%s] [%s] [%s] [%s]\n", strchr(buf, 'o'), strrchr(buf, 'o'), strstr(buf, "world"),
           strstr(buf, "o"));
    printf("spn %u %u\n", (unsigned)strspn("12345abc", "0123456789"),
           (unsigned)strcspn("hello world", " "));
    memset(buf2, 'x', 10);
    buf2[10] = '\0';
    memcpy(buf2 + 2, "ABCD", 4);
    printf("mem [%s]\n", buf2);
    strcpy(buf, "0123456789");
    memmove(buf + 2, buf, 6);               /* overlapping, forwards */
    printf("memmove1 [%s]\n", buf);
    memmove(buf, buf + 3, 5);               /* overlapping, backwards */
    printf("memmove2 [%s]\n", buf);
    strncpy(buf2, "short", 10);
    printf("strncpy [%s] pad=%d\n", buf2, buf2[7]);
    {
        char text[] = "  the quick,,brown fox ; jumps  ";
        char *tok = strtok(text, " ,;");
        while (tok) {
            printf("<%s>", tok);
            tok = strtok(NULL, " ,;");
        }
        printf("\n");
    }

    printf("== ctype\n");
    {
        const char *s = "aZ09 _!\t\n~";
        for (; *s; s++)
            printf("%d%d%d%d%d%d%c%c ", !!isalpha((unsigned char)*s), !!isdigit((unsigned char)*s),
                   !!isspace((unsigned char)*s), !!isupper((unsigned char)*s),
                   !!ispunct((unsigned char)*s), !!isxdigit((unsigned char)*s),
                   isprint((unsigned char)*s) ? toupper((unsigned char)*s) : '.',
                   isprint((unsigned char)*s) ? tolower((unsigned char)*s) : '.');
        printf("\n");
    }

    printf("== strtol / strtoul / atoi\n");
    {
        static const char *nums[] = { "0", "-1", "  +42xyz", "0x7fffffff", "-2147483648",
                                      "0777", "1010", "zz", "-0x10", "99999999999" };
        unsigned i;
        for (i = 0; i < sizeof nums / sizeof nums[0]; i++) {
            char *end;
            long v0 = strtol(nums[i], &end, 0);
            int used = (int)(end - nums[i]);
            long v2 = strtol(nums[i], NULL, 2);
            /* strtoul of a negative number wraps modulo ULONG_MAX + 1 and
               strtol/strtoul saturate at LONG_MAX/ULONG_MAX, all of which
               depend on the width of long: clamp to 32 bits, skip '-'. */
            unsigned long u36 = nums[i][0] == '-' ? 0 : strtoul(nums[i], NULL, 36);
            if (v0 > 2147483647L)
                v0 = 2147483647L;
            if (u36 > 0xFFFFFFFFUL)
                u36 = 0xFFFFFFFFUL;
            printf("%-14s base0 %ld (%d chars) base2 %ld base36 %lu\n", nums[i], v0, used, v2,
                   u36);
        }
        printf("atoi %d %d %ld\n", atoi("1234"), atoi("-32767"), atol("-100000"));
    }

    printf("== printf integers\n");
    printf("[%d] [%5d] [%-5d] [%05d] [%+d] [% d] [%+5d] [%-+6d]\n", 42, 42, 42, 42, 42, 42, -42, 42);
    printf("[%d] [%d] [%i] [%u] [%u]\n", -32767 - 1, 32767, -1, 65535u, 0u);
    printf("[%ld] [%ld] [%lu] [%lu]\n", -2147483647L - 1, 2147483647L, 4294967295UL, 0UL);
    printf("[%x] [%X] [%#x] [%#X] [%08x] [%#08x] [%-8x]\n", 0xbeefu, 0xbeefu, 0xbeefu, 0xbeefu,
           0xbeefu, 0xbeefu, 0xbeefu);
    printf("[%lx] [%lX] [%#lx] [%12lx]\n", 0xdeadbeefUL, 0xdeadbeefUL, 0x1UL, 0xcafeUL);
    printf("[%o] [%#o] [%lo] [%#o]\n", 8u, 8u, 01234567UL, 0u);
    printf("[%.3d] [%.0d] [%5.3d] [%-5.3d] [%.5ld] [%+.2d]\n", 7, 0, -7, 7, -123L, 5);
    printf("[%*d] [%-*d] [%.*d] [%*.*d]\n", 6, 12, 6, 12, 4, 12, 7, 3, -12);
    printf("[%hd] [%hu] [%hx]\n", (short)-5, (unsigned short)65535, (unsigned short)0xabcd);
    printf("[%c%c%c] [%3c] [%-3c] [%%]\n", 'a', 'b', 'c', 'x', 'y');

    printf("== printf strings\n");
    printf("[%s] [%10s] [%-10s] [%.3s] [%10.3s] [%-10.3s] [%s]\n", "text", "text", "text",
           "text", "text", "text", "");
    printf("[%*s] [%-*s] [%.*s]\n", 8, "ab", 8, "ab", 2, "abcdef");

    printf("== snprintf\n");
    n = snprintf(buf, sizeof buf, "%s=%d;%s=%ld", "a", 1, "b", -2L);
    printf("%d [%s]\n", n, buf);
    n = snprintf(buf, 8, "%s", long_text);
    printf("%d [%s]\n", n, buf);
    n = snprintf(NULL, 0, "%05d|%-4s|%x", -42, "ok", 255u);
    printf("needs %d\n", n);
    n = sprintf(buf, "%d %s %c", -1, "two", '3');
    printf("sprintf %d [%s]\n", n, buf);
    {
        int a = 0, b = 0;
        char w[16];
        n = sscanf("17 -4 word", "%d %d %15s", &a, &b, w);
        printf("sscanf %d: %d %d %s\n", n, a, b, w);
    }
    puts("puts adds a newline");
    fputs("fputs does not\n", stdout);
    putchar('!');
    putchar('\n');
    return 0;
}
