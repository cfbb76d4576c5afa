/* bytecode.c -- a small stack virtual machine (dense switch dispatch, so a
 * jump table) with calls, locals, loops and conditional jumps, running
 * little programs: Fibonacci numbers, gcd by Euclid, factorial modulo a
 * prime, Collatz sequence lengths, and a recursive Fibonacci through the
 * VM's own call stack.  Jump targets in the programs are code indices. */
#include "fw.h"

enum {
    HALT, PUSH, POP, DUP, SWAP, OVER, ADD, SUB, MUL, DIV, MOD, NEG, LT, EQ, NOT,
    JMP, JZ, JNZ, LOAD, STORE, PRINT, CALL, RET, ARG, INC, DEC, ROT, NOP,
};

static const char *const opnames[] = {
    "halt", "push", "pop", "dup", "swap", "over", "add", "sub", "mul", "div", "mod", "neg",
    "lt", "eq", "not", "jmp", "jz", "jnz", "load", "store", "print", "call", "ret", "arg",
    "inc", "dec", "rot", "nop",
};

#define STACK 256
struct vm {
    int32_t stack[STACK];
    int sp;
    int32_t vars[16];
    uint16_t rstack[64];        /* return addresses */
    uint16_t fp[64];            /* frame: stack index of the arguments */
    int rsp;
    uint32_t steps;
    uint32_t opcount[NOP + 1];
};

static void out(int32_t v)
{
    printf(" %ld", (long)v);
}

static int32_t run(struct vm *m, const int32_t *code)
{
    uint16_t pc = 0;
    m->sp = 0;
    m->rsp = 0;
    for (;;) {
        int32_t op = code[pc++], a, b;
        m->steps++;
        m->opcount[op]++;
        switch (op) {
        case HALT: return m->sp ? m->stack[m->sp - 1] : 0;
        case PUSH: m->stack[m->sp++] = code[pc++]; break;
        case POP: m->sp--; break;
        case DUP: m->stack[m->sp] = m->stack[m->sp - 1]; m->sp++; break;
        case SWAP: a = m->stack[m->sp - 1]; m->stack[m->sp - 1] = m->stack[m->sp - 2];
                   m->stack[m->sp - 2] = a; break;
        case OVER: m->stack[m->sp] = m->stack[m->sp - 2]; m->sp++; break;
        case ADD: b = m->stack[--m->sp]; m->stack[m->sp - 1] += b; break;
        case SUB: b = m->stack[--m->sp]; m->stack[m->sp - 1] -= b; break;
        case MUL: b = m->stack[--m->sp]; m->stack[m->sp - 1] *= b; break;
        case DIV: b = m->stack[--m->sp]; m->stack[m->sp - 1] /= b; break;
        case MOD: b = m->stack[--m->sp]; m->stack[m->sp - 1] %= b; break;
        case NEG: m->stack[m->sp - 1] = -m->stack[m->sp - 1]; break;
        case LT: b = m->stack[--m->sp]; m->stack[m->sp - 1] = m->stack[m->sp - 1] < b; break;
        case EQ: b = m->stack[--m->sp]; m->stack[m->sp - 1] = m->stack[m->sp - 1] == b; break;
        case NOT: m->stack[m->sp - 1] = !m->stack[m->sp - 1]; break;
        case JMP: pc = (uint16_t)code[pc]; break;
        case JZ: pc = m->stack[--m->sp] == 0 ? (uint16_t)code[pc] : (uint16_t)(pc + 1); break;
        case JNZ: pc = m->stack[--m->sp] != 0 ? (uint16_t)code[pc] : (uint16_t)(pc + 1); break;
        case LOAD: m->stack[m->sp++] = m->vars[code[pc++]]; break;
        case STORE: m->vars[code[pc++]] = m->stack[--m->sp]; break;
        case PRINT: out(m->stack[--m->sp]); break;
        case CALL:                       /* CALL addr nargs */
            m->rstack[m->rsp] = (uint16_t)(pc + 2);
            m->fp[m->rsp++] = (uint16_t)(m->sp - code[pc + 1]);
            pc = (uint16_t)code[pc];
            break;
        case RET:                        /* result on top replaces the arguments */
            a = m->stack[m->sp - 1];
            m->sp = m->fp[--m->rsp];
            m->stack[m->sp++] = a;
            pc = m->rstack[m->rsp];
            break;
        case ARG: m->stack[m->sp] = m->stack[m->fp[m->rsp - 1] + code[pc++]]; m->sp++; break;
        case INC: m->stack[m->sp - 1]++; break;
        case DEC: m->stack[m->sp - 1]--; break;
        case ROT: a = m->stack[m->sp - 3]; m->stack[m->sp - 3] = m->stack[m->sp - 2];
                  m->stack[m->sp - 2] = m->stack[m->sp - 1]; m->stack[m->sp - 1] = a; break;
        case NOP: break;
        default:
            printf(" bad opcode %ld at %u\n", (long)op, (unsigned)(pc - 1));
            return -1;
        }
    }
}

/* fib: a=0 b=1; repeat n times { print a; (a, b) = (b, a + b) } */
static const int32_t prog_fib[] = {
    PUSH, 0, STORE, 0, PUSH, 1, STORE, 1, PUSH, 30, STORE, 2,
    /* 12 */ LOAD, 0, PRINT,
    LOAD, 0, LOAD, 1, DUP, STORE, 0, ADD, STORE, 1,
    LOAD, 2, DEC, DUP, STORE, 2, JNZ, 12,
    LOAD, 0, HALT,
};

/* gcd(a, b) as a function, called for several pairs; prints each result. */
static const int32_t prog_gcd[] = {
    PUSH, 1071, PUSH, 462, CALL, 40, 2, PRINT,
    PUSH, 123456, PUSH, 7890, CALL, 40, 2, PRINT,
    PUSH, 1000000, PUSH, 9765625, CALL, 40, 2, PRINT,
    PUSH, 17, PUSH, 5, CALL, 40, 2, PRINT,
    /* 32 */ PUSH, 0, HALT, NOP, NOP, NOP, NOP, NOP,
    /* 40: gcd(a, b): while b: (a, b) = (b, a % b) */
    ARG, 0, ARG, 1,
    /* 44 */ DUP, JZ, 55, SWAP, OVER, MOD, JMP, 44,
    /* 52 */ NOP, NOP, NOP,
    /* 55 */ POP, RET,
};

/* factorials modulo 1000003 for n = 1..20, and the sum of them */
static const int32_t prog_fact[] = {
    PUSH, 1, STORE, 0, PUSH, 1, STORE, 1, PUSH, 0, STORE, 2,
    /* 12 */ LOAD, 0, LOAD, 1, MUL, PUSH, 1000003, MOD, DUP, STORE, 0, DUP, PRINT,
    /* 25 */ LOAD, 2, ADD, STORE, 2,
    /* 30 */ LOAD, 1, INC, DUP, STORE, 1, PUSH, 21, LT, JNZ, 12,
    /* 41 */ LOAD, 2, HALT,
};

/* Collatz: for n = 1..30 print the number of steps to reach 1 (x even:
   x / 2, odd: 3x + 1); returns the total.  vars: 0 n, 1 x, 2 steps, 3 total */
static const int32_t prog_collatz[] = {
    PUSH, 1, STORE, 0, PUSH, 0, STORE, 3,
    /* 8 */ LOAD, 0, STORE, 1, PUSH, 0, STORE, 2,
    /* 16 */ LOAD, 1, PUSH, 1, EQ, JNZ, 55,
    /* 23 */ LOAD, 2, INC, STORE, 2,
    /* 28 */ LOAD, 1, PUSH, 2, MOD, JZ, 46,
    /* 35 */ LOAD, 1, PUSH, 3, MUL, INC, STORE, 1, JMP, 16,
    /* 45 */ NOP,
    /* 46 */ LOAD, 1, PUSH, 2, DIV, STORE, 1, JMP, 16,
    /* 55 */ LOAD, 2, PRINT, LOAD, 3, LOAD, 2, ADD, STORE, 3,
    /* 65 */ LOAD, 0, INC, DUP, STORE, 0, PUSH, 31, LT, JNZ, 8,
    /* 76 */ LOAD, 3, HALT,
};

/* recursive fib(n) = n < 2 ? n : fib(n - 1) + fib(n - 2), for n = 12 */
static const int32_t prog_rfib[] = {
    PUSH, 12, CALL, 6, 1, HALT,
    /* 6 */ ARG, 0, PUSH, 2, LT, JZ, 16, ARG, 0, RET,
    /* 16 */ ARG, 0, DEC, CALL, 6, 1,
    /* 22 */ ARG, 0, PUSH, 2, SUB, CALL, 6, 1,
    /* 30 */ ADD, RET,
};

static uint32_t hash_ops(const struct vm *m)
{
    uint32_t h = 0;
    int i;
    for (i = 0; i <= NOP; i++)
        h = mix32(h, m->opcount[i]);
    return h;
}

int main(void)
{
    static struct vm m;
    int32_t r;
    unsigned i;

    printf("fib:");
    r = run(&m, prog_fib);
    printf("\n  -> %ld after %lu steps\n", (long)r, (unsigned long)m.steps);

    printf("gcd:");
    r = run(&m, prog_gcd);
    printf("\n  -> %ld\n", (long)r);

    printf("fact:");
    r = run(&m, prog_fact);
    printf("\n  -> %ld\n", (long)r);

    printf("collatz:");
    r = run(&m, prog_collatz);
    printf("\n  -> %ld\n", (long)r);

    printf("rfib(12):");
    r = run(&m, prog_rfib);
    printf(" %ld\n", (long)r);

    printf("total steps %lu, op histogram hash %08lx\n", (unsigned long)m.steps,
           (unsigned long)hash_ops(&m));
    for (i = 0; i <= NOP; i++)
        if (m.opcount[i] > 2000)
            printf("  %-5s %lu\n", opnames[i], (unsigned long)m.opcount[i]);
    return 0;
}
