/**
 * A small pickle VM (protocols 2–5, the opcodes torch.save writes), written here rather than taken from npm: the
 * packages there are unmaintained, `any`-typed and resolve unknown globals to stubs, whereas a checkpoint reader
 * must refuse them. Globals go through the allowlist (pickle-allow-list.ts); errors name the byte and opcode.
 */
import { CALLABLES, describeValue, PickleFault, resolveGlobal, type PickleContext } from './pickle-allow-list.js';
import { PickleDict, PickleGlobal, TorchCheckpointError, type PickleValue } from './torch-tensor.js';

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT',
  0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE',
  0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND',
  0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET',
  0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT',
  0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

// Opcodes deliberately left out, with the reason given in the error.
const UNSUPPORTED_WHY: Readonly<Record<string, string>> = {
  INST: 'it instantiates arbitrary classes', OBJ: 'it instantiates arbitrary classes',
  EXT1: 'extension registry codes name arbitrary objects', EXT2: 'extension registry codes name arbitrary objects',
  EXT4: 'extension registry codes name arbitrary objects', PERSID: 'torch storage ids need BINPERSID',
  STRING: 'protocol-0 text strings; torch.save writes protocol 2', UNICODE: 'protocol-0 text strings; torch.save writes protocol 2',
  NEXT_BUFFER: 'out-of-band buffers are not stored in checkpoints', READONLY_BUFFER: 'out-of-band buffers are not stored in checkpoints',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Runs a pickle. `persistentLoad` resolves BINPERSID ids (torch's storage references). Errors name `source`,
 * the byte offset and the opcode.
 */
export function unpickle(bytes: Uint8Array, source: string, persistentLoad?: (pid: PickleValue) => PickleValue): PickleValue {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let op = -1;
  let opAt = 0;
  let stack: PickleValue[] = [];
  const marks: PickleValue[][] = [];
  const memo = new Map<number, PickleValue>();

  const need = (n: number): void => {
    if (n < 0 || pos + n > bytes.length) {
      throw new PickleFault(`truncated: needs ${n} more bytes at byte ${pos}, but the pickle is ${bytes.length} bytes`);
    }
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = (): number => take(1)[0];
  const u16 = (): number => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const i32 = (): number => { need(4); const v = dv.getInt32(pos, true); pos += 4; return v; };
  /** A signed 32-bit length (LONG4, BINSTRING): negative is corrupt. */
  const length32 = (opName: string): number => {
    const n = i32();
    if (n < 0) throw new PickleFault(`negative ${opName} length`);
    return n;
  };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleFault(`length ${v} is too large`);
    return Number(v);
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleFault('truncated: unterminated text line');
    const s = decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const decode = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      throw new PickleFault('string is not valid UTF-8');
    }
  };
  const pop = (): PickleValue => {
    if (stack.length === 0) throw new PickleFault('stack underflow');
    return stack.pop() as PickleValue;
  };
  const top = (): PickleValue => {
    if (stack.length === 0) throw new PickleFault('stack underflow');
    return stack[stack.length - 1];
  };
  // Callers must bind the result before touching `stack`: this swaps `stack` for the enclosing frame.
  const popMark = (): PickleValue[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) throw new PickleFault('no MARK on the stack');
    stack = prev;
    return items;
  };
  const tuple = (items: PickleValue[]): PickleValue[] => Object.freeze(items) as PickleValue[];
  const signedLE = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return intValue(v);
  };
  const intValue = (v: bigint): number | bigint =>
    v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  const parseIntText = (s: string): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) throw new PickleFault(`bad integer literal ${JSON.stringify(s)}`);
    return intValue(BigInt(t));
  };
  const memoGet = (i: number): PickleValue => {
    if (!memo.has(i)) throw new PickleFault(`memo key ${i} is not defined`);
    return memo.get(i) as PickleValue;
  };
  const setItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!(target instanceof PickleDict)) throw new PickleFault(`SETITEM(S) on ${describeValue(target)}`);
    if (items.length % 2) throw new PickleFault('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const appendItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(target) || Object.isFrozen(target)) throw new PickleFault(`APPEND(S) on ${describeValue(target)}`);
    for (const x of items) target.push(x);
  };
  const ctx: PickleContext = {
    call(fn, args) {
      if (!(fn instanceof PickleGlobal)) throw new PickleFault(`cannot call ${describeValue(fn)}`);
      const impl = CALLABLES[fn.qualifiedName];
      if (!impl) throw new PickleFault(`${fn.qualifiedName} is allowed as a value but cannot be called`);
      return impl(args, ctx);
    },
  };
  const callArgs = (v: PickleValue): PickleValue[] => {
    if (!Array.isArray(v)) throw new PickleFault(`call arguments must be a tuple, got ${describeValue(v)}`);
    return v;
  };

  try {
    for (;;) {
      opAt = pos;
      op = u8();
      switch (op) {
        case 0x80: { // PROTO
          const p = u8();
          if (p > 5) throw new PickleFault(`unsupported pickle protocol ${p}`);
          break;
        }
        case 0x95: u64(); break; // FRAME: a length hint only; opcodes continue inline
        case 0x2e: { // STOP
          if (marks.length > 0) throw new PickleFault('STOP with an unclosed MARK');
          if (stack.length !== 1) throw new PickleFault(`STOP with ${stack.length} values on the stack (expected 1)`);
          if (pos !== bytes.length) throw new PickleFault(`${bytes.length - pos} trailing bytes after STOP`);
          return stack[0];
        }
        case 0x28: marks.push(stack); stack = []; break; // MARK
        case 0x30: pop(); break; // POP
        case 0x31: popMark(); break; // POP_MARK
        case 0x32: stack.push(top()); break; // DUP
        case 0x4e: stack.push(null); break; // NONE
        case 0x88: stack.push(true); break; // NEWTRUE
        case 0x89: stack.push(false); break; // NEWFALSE
        case 0x49: { // INT (text); "00"/"01" are protocol 0's False/True
          const s = line();
          stack.push(s === '00' ? false : s === '01' ? true : parseIntText(s));
          break;
        }
        case 0x4a: stack.push(i32()); break; // BININT
        case 0x4b: stack.push(u8()); break; // BININT1
        case 0x4d: stack.push(u16()); break; // BININT2
        case 0x4c: stack.push(parseIntText(line())); break; // LONG (text)
        case 0x8a: stack.push(signedLE(take(u8()))); break; // LONG1
        case 0x8b: stack.push(signedLE(take(length32('LONG4')))); break; // LONG4
        case 0x46: { // FLOAT (text)
          const s = line();
          const v = Number(s);
          if (Number.isNaN(v) && !/^[+-]?nan$/i.test(s)) throw new PickleFault(`bad float literal ${JSON.stringify(s)}`);
          stack.push(v);
          break;
        }
        case 0x47: need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
        case 0x58: stack.push(decode(take(u32()))); break; // BINUNICODE
        case 0x8c: stack.push(decode(take(u8()))); break; // SHORT_BINUNICODE
        case 0x8d: stack.push(decode(take(u64()))); break; // BINUNICODE8
        // Python 2 str; torch.load decodes these with encoding='utf-8', and so do we.
        case 0x54: stack.push(decode(take(length32('BINSTRING')))); break; // BINSTRING
        case 0x55: stack.push(decode(take(u8()))); break; // SHORT_BINSTRING
        case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
        case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
        case 0x8e: case 0x96: stack.push(take(u64()).slice()); break; // BINBYTES8, BYTEARRAY8
        case 0x5d: stack.push([]); break; // EMPTY_LIST
        case 0x6c: { const items = popMark(); stack.push(items); break; } // LIST
        case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
        case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
        case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
        case 0x74: { const items = popMark(); stack.push(tuple(items)); break; } // TUPLE
        case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
        case 0x86: { const b = pop(); const a = pop(); stack.push(tuple([a, b])); break; } // TUPLE2
        case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(tuple([a, b, c])); break; } // TUPLE3
        case 0x7d: stack.push(new PickleDict()); break; // EMPTY_DICT
        case 0x64: { const d = new PickleDict(); setItems(d, popMark()); stack.push(d); break; } // DICT
        case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
        case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
        case 0x8f: stack.push(new Set()); break; // EMPTY_SET
        case 0x90: { // ADDITEMS
          const items = popMark();
          const s = top();
          if (!(s instanceof Set)) throw new PickleFault(`ADDITEMS on ${describeValue(s)}`);
          for (const x of items) s.add(x);
          break;
        }
        case 0x91: { const items = popMark(); stack.push(new Set(items)); break; } // FROZENSET
        case 0x63: { const module = line(); const name = line(); stack.push(resolveGlobal(module, name)); break; } // GLOBAL
        case 0x93: { // STACK_GLOBAL
          const name = pop();
          const module = pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw new PickleFault('STACK_GLOBAL needs two strings');
          stack.push(resolveGlobal(module, name));
          break;
        }
        case 0x52: { const args = callArgs(pop()); const fn = pop(); stack.push(ctx.call(fn, args)); break; } // REDUCE
        case 0x81: { const args = callArgs(pop()); const cls = pop(); stack.push(ctx.call(cls, args)); break; } // NEWOBJ
        case 0x92: { // NEWOBJ_EX
          const kwargs = pop();
          const args = callArgs(pop());
          const cls = pop();
          if (!(kwargs instanceof PickleDict) || kwargs.size > 0) throw new PickleFault('NEWOBJ_EX with keyword arguments is not supported');
          stack.push(ctx.call(cls, args));
          break;
        }
        case 0x62: { // BUILD
          let state = pop();
          const inst = top();
          // (instance dict, slots dict) form: only the instance dict matters for the containers we build.
          if (Array.isArray(state) && state.length === 2) state = state[0];
          if (state === null) break;
          if (!(inst instanceof PickleDict) || !(state instanceof PickleDict)) {
            throw new PickleFault(`BUILD of ${describeValue(inst)} with ${describeValue(state)} state is not supported`);
          }
          inst.attributes ??= new PickleDict();
          for (const [k, v] of state) inst.attributes.set(k, v);
          break;
        }
        case 0x51: { // BINPERSID
          const pid = pop();
          if (!persistentLoad) throw new PickleFault('persistent id without a persistent_load');
          stack.push(persistentLoad(pid));
          break;
        }
        case 0x67: { // GET (text)
          const s = line();
          if (!/^\d+$/.test(s)) throw new PickleFault(`bad memo key ${JSON.stringify(s)}`);
          stack.push(memoGet(Number(s)));
          break;
        }
        case 0x68: stack.push(memoGet(u8())); break; // BINGET
        case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
        case 0x70: { // PUT (text)
          const s = line();
          if (!/^\d+$/.test(s)) throw new PickleFault(`bad memo key ${JSON.stringify(s)}`);
          memo.set(Number(s), top());
          break;
        }
        case 0x71: memo.set(u8(), top()); break; // BINPUT
        case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
        case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
        default: {
          const name = OPCODE_NAMES[op];
          if (!name) throw new PickleFault(`unknown opcode 0x${op.toString(16).padStart(2, '0')} (corrupt pickle?)`);
          throw new PickleFault(`opcode ${name} is not supported (${UNSUPPORTED_WHY[name] ?? 'not needed for checkpoints'})`);
        }
      }
    }
  } catch (e) {
    if (e instanceof PickleFault) {
      const at = OPCODE_NAMES[op] ? ` (opcode ${OPCODE_NAMES[op]} at byte ${opAt})` : ` (at byte ${opAt})`;
      throw new TorchCheckpointError(source, `pickle: ${e.message}${at}`);
    }
    throw e;
  }
}
