import { describe, expect, it } from 'vitest';
import { planChunks } from '../../cli/evaluation-loop.js';
import { arrayImageSource } from '../../cli/image-input.js';

describe('evaluation loop', () => {
  const source = (count: number, offset = 0) => {
    const s = arrayImageSource('t', 't', new Float64Array(count), null, [1, 1, 1]);
    return { ...s, globalIndex: (p: number) => offset + p };
  };

  it('chunks are aligned to multiples of the batch in the global index and skip done images', () => {
    expect(planChunks(source(7), 3, () => false)).toEqual([[0, 3], [3, 6], [6, 7]]);
    // Entries 0..4 are global 10..14: the first block ends at global 12.
    expect(planChunks(source(5, 10), 3, () => false)).toEqual([[0, 2], [2, 5]]);
    // Done images split chunks; fully done blocks vanish.
    expect(planChunks(source(7), 3, (g) => g === 1 || g === 3 || g === 4 || g === 5)).toEqual([[0, 1], [2, 3], [6, 7]]);
    expect(planChunks(source(4), 2, () => true)).toEqual([]);
  });
});
