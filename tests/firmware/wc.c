/* wc.c -- reads standard input to the end, like wc: lines, words, bytes,
 * the longest line, letter frequencies, a checksum, and the first and
 * last lines.  The first 200 bytes are read with getchar, the rest with
 * fread.  The expected output comes from input/wc.in. */
#include <ctype.h>
#include <string.h>
#include "fw.h"

static uint32_t lines, words, bytes, longest, cur, h;
static uint32_t freq[26];
static char first[80], last[80], line[80];
static unsigned llen;
static int in_word;

static void count(int c)
{
    bytes++;
    h = mix32(h, (uint32_t)c);
    if (isalpha(c))
        freq[tolower(c) - 'a']++;
    if (isspace(c)) {
        in_word = 0;
    } else if (!in_word) {
        in_word = 1;
        words++;
    }
    if (c == '\n') {
        line[llen] = '\0';
        if (lines == 0)
            strcpy(first, line);
        strcpy(last, line);
        lines++;
        if (cur > longest)
            longest = cur;
        cur = 0;
        llen = 0;
    } else {
        cur++;
        if (llen < sizeof line - 1)
            line[llen++] = (char)c;
    }
}

int main(void)
{
    static unsigned char chunk[300];
    size_t n, k;
    int c, i;

    while (bytes < 200 && (c = getchar()) != EOF)
        count(c);
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        for (k = 0; k < n; k++)
            count(chunk[k]);

    printf("%lu lines, %lu words, %lu bytes, longest line %lu\n", (unsigned long)lines,
           (unsigned long)words, (unsigned long)bytes, (unsigned long)longest);
    printf("checksum %08lx\n", (unsigned long)h);
    printf("first: %s\nlast: %s\n", first, last);
    printf("letters:");
    for (i = 0; i < 26; i++)
        if (freq[i])
            printf(" %c%lu", 'a' + i, (unsigned long)freq[i]);
    printf("\n");
    return 0;
}
