/** Errors the engine throws. Each names the thing at fault (op, tensor, file, flag). */
export class SbgcError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SbgcError';
  }
}

/** A GPU validation/OOM error or a lost device, surfaced at the next flush with the ops of that batch. */
export class GpuError extends SbgcError {
  constructor(message: string, readonly ops: string[]) {
    super(message);
    this.name = 'GpuError';
  }
}

export class ShapeError extends SbgcError {
  constructor(message: string) {
    super(message);
    this.name = 'ShapeError';
  }
}

export class DTypeError extends SbgcError {
  constructor(message: string) {
    super(message);
    this.name = 'DTypeError';
  }
}

export class DeviceLimitError extends SbgcError {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceLimitError';
  }
}
