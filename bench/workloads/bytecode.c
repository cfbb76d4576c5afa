/* bytecode.c - a small stack-machine interpreter running a fixed bytecode
 * program REPS times.  Exercises a switch dispatched through a jump table
 * (indirect jumps), byte fetches, a 32-bit operand stack in memory and
 * data-dependent branches.
 *
 * The guest program keeps a 32-bit LCG state x and an accumulator in the
 * VM's memory and runs an inner loop of N iterations:
 *     x = x * 69069 + 1;  acc += (x >> 7) ^ i;  if (x & 0x100) acc ^= acc << 3;
 */
#include "bench.h"

#ifndef REPS
#define REPS 100
#endif

enum {
    OP_HALT, OP_PUSH8, OP_PUSH32, OP_LOAD, OP_STORE, OP_ADD, OP_SUB, OP_MUL,
    OP_AND, OP_XOR, OP_SHL, OP_SHR, OP_DUP, OP_SWAP, OP_DROP, OP_JNZ, OP_JZ,
    OP_JMP, OP_DEC, OP_OVER
};

#define MEM_X 0
#define MEM_ACC 1
#define MEM_I 2

/* operand bytes follow the opcode; jump targets are absolute byte offsets */
static const uint8_t program[] = {
    /* 0 */ OP_PUSH8, 200, OP_STORE, MEM_I,                 /* i = 200 */
    /* 4: loop */
    OP_LOAD, MEM_X, OP_PUSH32, 0x00, 0x01, 0x0D, 0xCD, OP_MUL,  /* x * 69069 */
    OP_PUSH8, 1, OP_ADD, OP_DUP, OP_STORE, MEM_X,           /* x = x*69069+1 */
    /* stack: x */
    OP_DUP, OP_PUSH8, 7, OP_SHR, OP_LOAD, MEM_I, OP_XOR,    /* x, (x>>7)^i */
    OP_LOAD, MEM_ACC, OP_ADD, OP_STORE, MEM_ACC,            /* acc += ...; stack: x */
    OP_PUSH32, 0x00, 0x00, 0x01, 0x00, OP_AND,              /* x & 0x100 */
    OP_JZ, 49,
    OP_LOAD, MEM_ACC, OP_DUP, OP_PUSH8, 3, OP_SHL, OP_XOR, OP_STORE, MEM_ACC,
    OP_JMP, 49,
    /* 49: */
    OP_LOAD, MEM_I, OP_DEC, OP_DUP, OP_STORE, MEM_I,        /* --i */
    OP_JNZ, 4,
    OP_HALT,
};

static uint32_t run(uint32_t *mem)
{
    uint32_t stack[16];
    uint16_t sp = 0, pc = 0;
    uint32_t a, b;
    uint32_t steps = 0;
    for (;;) {
        uint8_t op = program[pc++];
        steps++;
        switch (op) {
        case OP_HALT:
            return steps;
        case OP_PUSH8:
            stack[sp++] = program[pc++];
            break;
        case OP_PUSH32:
            a = ((uint32_t)program[pc] << 24) | ((uint32_t)program[pc + 1] << 16)
                | ((uint32_t)program[pc + 2] << 8) | program[pc + 3];
            pc = (uint16_t)(pc + 4);
            stack[sp++] = a;
            break;
        case OP_LOAD:
            stack[sp++] = mem[program[pc++]];
            break;
        case OP_STORE:
            mem[program[pc++]] = stack[--sp];
            break;
        case OP_ADD:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a + b;
            break;
        case OP_SUB:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a - b;
            break;
        case OP_MUL:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a * b;
            break;
        case OP_AND:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a & b;
            break;
        case OP_XOR:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a ^ b;
            break;
        case OP_SHL:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a << (b & 31u);
            break;
        case OP_SHR:
            b = stack[--sp]; a = stack[--sp]; stack[sp++] = a >> (b & 31u);
            break;
        case OP_DUP:
            a = stack[sp - 1]; stack[sp++] = a;
            break;
        case OP_SWAP:
            a = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = a;
            break;
        case OP_DROP:
            sp--;
            break;
        case OP_OVER:
            a = stack[sp - 2]; stack[sp++] = a;
            break;
        case OP_DEC:
            stack[sp - 1] -= 1;
            break;
        case OP_JNZ:
            a = stack[--sp];
            pc = a ? program[pc] : (uint16_t)(pc + 1);
            break;
        case OP_JZ:
            a = stack[--sp];
            pc = a ? (uint16_t)(pc + 1) : program[pc];
            break;
        case OP_JMP:
            pc = program[pc];
            break;
        default:
            return 0xFFFFFFFFUL;
        }
    }
}

static uint32_t work(uint32_t seed)
{
    uint32_t mem[4];
    uint32_t check = 0;
    uint16_t r;
    mem[MEM_X] = seed;
    mem[MEM_ACC] = 0;
    for (r = 0; r < REPS; r++) {
        uint32_t steps = run(mem);
        check = (check ^ steps) * 0x01000193UL + mem[MEM_ACC];
    }
    return check ^ mem[MEM_X];
}

BENCH_MAIN("bytecode")
