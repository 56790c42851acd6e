/** Errors the engine throws. Each names the thing at fault (op, tensor, file, flag). */
export class SbgcError extends Error {
  override name = 'SbgcError';
}

/** A GPU validation/OOM error or a lost device, surfaced at the next flush with the ops of that batch. */
export class GpuError extends SbgcError {
  override name = 'GpuError';
  constructor(
    message: string,
    readonly ops: string[],
  ) {
    super(message);
  }
}

export class ShapeError extends SbgcError {
  override name = 'ShapeError';
}

export class DTypeError extends SbgcError {
  override name = 'DTypeError';
}

export class DeviceLimitError extends SbgcError {
  override name = 'DeviceLimitError';
}

/** A problem with one input file or source; the message starts with its name, and the byte offset where known. */
export class SourceError extends SbgcError {
  override name = 'SourceError';
  constructor(
    readonly source: string,
    detail: string,
    readonly byteOffset?: number,
  ) {
    super(`${source}: ${detail}`);
  }

  /** The file at fault (the same as `source`). */
  get file(): string {
    return this.source;
  }
}
