/**
 * What a checkpoint's pickle may reference: an allowlist of Python globals (tensor and parameter rebuild functions,
 * storage types, OrderedDict, set, torch.device, …). Any other GLOBAL is an error naming it, so nothing in a file
 * can make the reader do more than build plain data.
 */
import { safetensorsItemSize } from './safetensors.js';
import { PickleDict, PickleGlobal, STORAGE_DTYPES, TorchDevice, TorchStorage, TorchTensor, type PickleValue } from './torch-tensor.js';

/** Raised inside the VM; the caller adds the file, byte position and opcode. */
export class PickleFault extends Error {}

export type Callable = (args: PickleValue[], vm: PickleContext) => PickleValue;

/** What allowlisted callables may use from the reader. */
export interface PickleContext {
  call(fn: PickleValue, args: PickleValue[]): PickleValue;
}

export function describeValue(v: PickleValue): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return Object.isFrozen(v) ? `tuple of ${v.length}` : `list of ${v.length}`;
  if (v instanceof PickleDict) return v.pythonClass;
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Set) return 'set';
  if (v instanceof TorchTensor) return 'tensor';
  if (v instanceof TorchStorage) return 'storage';
  if (v instanceof TorchDevice) return 'torch.device';
  if (v instanceof PickleGlobal) return `global ${v.qualifiedName}`;
  return typeof v === 'string' ? 'str' : typeof v === 'bigint' ? 'int' : typeof v;
}

export function asInt(v: PickleValue, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new PickleFault(`${what} must be an int, got ${describeValue(v)}`);
  return v;
}

function asIntList(v: PickleValue, what: string): number[] {
  if (!Array.isArray(v)) throw new PickleFault(`${what} must be a tuple of ints, got ${describeValue(v)}`);
  return v.map((x, i) => {
    const n = asInt(x, `${what}[${i}]`);
    if (n < 0) throw new PickleFault(`${what}[${i}] is negative (${n})`);
    return n;
  });
}

function rebuildTensor(args: PickleValue[], minArgs: number, maxArgs: number, fn: string): TorchTensor {
  if (args.length < minArgs || args.length > maxArgs) {
    throw new PickleFault(`${fn} takes ${minArgs}${maxArgs > minArgs ? `–${maxArgs}` : ''} arguments, got ${args.length}`);
  }
  const [storage, offsetV, sizeV, strideV, requiresGrad] = args;
  if (!(storage instanceof TorchStorage)) throw new PickleFault(`${fn}: first argument must be a storage, got ${describeValue(storage)}`);
  const offset = asInt(offsetV, `${fn} storage_offset`);
  if (offset < 0) throw new PickleFault(`${fn}: negative storage_offset ${offset}`);
  const shape = asIntList(sizeV, `${fn} size`);
  const stride = asIntList(strideV, `${fn} stride`);
  if (stride.length !== shape.length) {
    throw new PickleFault(`${fn}: size [${shape}] and stride [${stride}] have different lengths`);
  }
  let numel = 1;
  let last = offset;
  for (let k = 0; k < shape.length; k++) {
    numel *= shape[k];
    last += (shape[k] - 1) * stride[k];
  }
  if (!Number.isSafeInteger(numel * safetensorsItemSize(storage.dtype))) throw new PickleFault(`${fn}: size [${shape}] is too large`);
  if (numel > 0 && last >= storage.numel) {
    throw new PickleFault(
      `tensor of size [${shape}], stride [${stride}], offset ${offset} reaches storage element ${last}, ` +
        `but storage '${storage.key}' has only ${storage.numel} elements`,
    );
  }
  const rg = requiresGrad === undefined ? false : requiresGrad;
  if (typeof rg !== 'boolean') throw new PickleFault(`${fn}: requires_grad must be a bool, got ${describeValue(rg)}`);
  return new TorchTensor(storage.dtype, Object.freeze(shape), Object.freeze(stride), offset, storage, rg);
}

function asIterable(v: PickleValue | undefined, what: string): PickleValue[] {
  if (v === undefined) return [];
  if (Array.isArray(v)) return v;
  if (v instanceof Set) return [...v];
  throw new PickleFault(`${what} needs a list, tuple or set, got ${describeValue(v)}`);
}

const TENSOR_CLASSES = new Set(['torch.Tensor', 'torch._tensor.Tensor', 'torch.nn.parameter.Parameter']);

// Allowlisted callables. Names are module.qualname as they appear in GLOBAL / STACK_GLOBAL.
export const CALLABLES: Readonly<Record<string, Callable>> = {
  'torch._utils._rebuild_tensor_v2': (a) => rebuildTensor(a, 6, 7, '_rebuild_tensor_v2'),
  'torch._utils._rebuild_tensor': (a) => rebuildTensor(a, 4, 4, '_rebuild_tensor'),
  'torch._utils._rebuild_parameter': (a) => rebuildParameter(a, 3),
  'torch._utils._rebuild_parameter_with_state': (a) => rebuildParameter(a, 4),
  'torch._tensor._rebuild_from_type_v2': (a, vm) => {
    // Tensor.__reduce_ex__ for tensors carrying Python state: (func, type, args, state).
    const [func, cls, args, state] = a;
    if (!(cls instanceof PickleGlobal) || !TENSOR_CLASSES.has(cls.qualifiedName)) {
      throw new PickleFault(`_rebuild_from_type_v2: tensor class must be torch.Tensor or Parameter, got ${describeValue(cls ?? null)}`);
    }
    if (!Array.isArray(args)) throw new PickleFault('_rebuild_from_type_v2: args must be a tuple');
    const hasState = state instanceof PickleDict ? state.size > 0 : state !== null && state !== undefined;
    if (hasState) throw new PickleFault('_rebuild_from_type_v2: tensors with Python attributes are not supported');
    return vm.call(func ?? null, args);
  },
  'collections.OrderedDict': (a) => {
    const d = new PickleDict('collections.OrderedDict');
    for (const pair of asIterable(a[0], 'OrderedDict')) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new PickleFault('OrderedDict items must be (key, value) pairs');
      d.set(pair[0], pair[1]);
    }
    return d;
  },
  'torch.device': (a) => {
    const [type, index] = a;
    if (typeof type !== 'string') throw new PickleFault(`torch.device: type must be a str, got ${describeValue(type ?? null)}`);
    if (index !== undefined && index !== null) return new TorchDevice(type, asInt(index, 'torch.device index'));
    const m = /^(\w+):(\d+)$/.exec(type);
    return m ? new TorchDevice(m[1], Number(m[2])) : new TorchDevice(type, null);
  },
  'torch.Size': (a) => Object.freeze(asIntList(a[0] ?? [], 'torch.Size')) as PickleValue[],
  'builtins.set': (a) => new Set(asIterable(a[0], 'set')),
  'builtins.frozenset': (a) => new Set(asIterable(a[0], 'frozenset')),
  // Protocol 2 writes b'' as bytes() and other bytes as _codecs.encode(latin-1 text, 'latin1').
  'builtins.bytes': (a) => {
    if (a.length > 0) throw new PickleFault('bytes(...) with arguments is not supported');
    return new Uint8Array(0);
  },
  '_codecs.encode': (a) => {
    const [text, encoding] = a;
    if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
      throw new PickleFault("_codecs.encode is only supported as encode(str, 'latin1')");
    }
    return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
  },
};

function rebuildParameter(a: PickleValue[], n: number): TorchTensor {
  if (a.length !== n) throw new PickleFault(`_rebuild_parameter takes ${n} arguments, got ${a.length}`);
  const [data, requiresGrad] = a;
  if (!(data instanceof TorchTensor)) throw new PickleFault(`_rebuild_parameter: data must be a tensor, got ${describeValue(data)}`);
  if (typeof requiresGrad !== 'boolean') throw new PickleFault('_rebuild_parameter: requires_grad must be a bool');
  return data.withRequiresGrad(requiresGrad);
}

// Python 2 module names that protocol-2 pickles use for builtins (pickle's fix_imports).
const MODULE_ALIASES: Readonly<Record<string, string>> = { __builtin__: 'builtins' };

export function resolveGlobal(module: string, name: string): PickleGlobal {
  const mod = MODULE_ALIASES[module] ?? module;
  const full = `${mod}.${name}`;
  const allowed = full in CALLABLES || TENSOR_CLASSES.has(full) || (mod === 'torch' && name in STORAGE_DTYPES);
  if (!allowed) {
    throw new PickleFault(
      `disallowed global '${module}.${name}': only tensors, storages and plain containers can be loaded ` +
        '(this reader never imports or calls arbitrary Python objects)',
    );
  }
  return new PickleGlobal(mod, name);
}
