/* args.c -- argc/argv as passed by aemu's loader through the BSP's host
 * block (expected/args.args holds the arguments, one per line).  argv[0]
 * is the program name, which depends on how the program was started, so
 * only its presence is printed.  Numeric arguments are summed (strtol).
 * Under the reference simulator there is no host block: argc = 1 and
 * argv[0] = "". */
#include <stdlib.h>
#include <string.h>
#include "fw.h"

int main(int argc, char **argv)
{
    int i;
    long sum = 0;
    unsigned total_len = 0;

    printf("argc = %d\n", argc);
    printf("argv[0] %s\n", argv[0] != NULL ? "present" : "MISSING");
    for (i = 1; i < argc; i++) {
        char *end;
        long v = strtol(argv[i], &end, 0);
        printf("argv[%d] = \"%s\" (%u chars)%s\n", i, argv[i], (unsigned)strlen(argv[i]),
               *argv[i] != '\0' && *end == '\0' ? " number" : "");
        if (*argv[i] != '\0' && *end == '\0')
            sum += v;
        total_len += (unsigned)strlen(argv[i]);
    }
    printf("argv[argc] is %s\n", argv[argc] == NULL ? "NULL" : "NOT NULL");
    printf("sum of numbers %ld, characters %u\n", sum, total_len);
    return argc > 1 ? 0 : 2;
}
