import { describe, expect, it } from 'vitest';
import { formatRunFile, type ImageRecord, type RunFile } from '../../cli/run-file.js';

describe('run-file', () => {
  it('writes plain JSON with one line per image record', () => {
    const file: RunFile<ImageRecord & { v: number }> = {
      format: 'f/1',
      model: { source: 's', description: 'd', kind: 'analytic', untrained: false, shape: [1, 1, 1], numClasses: 2 },
      input: { id: 'i', description: 'd', space: 'model' },
      settings: { a: 1 },
      complete: true,
      summary: { n: 2 },
      images: [{ index: 0, source: 'a', v: NaN }, { index: 1, source: 'b', v: 2 }],
      timing: { seconds: 1, parts: 1 },
    };
    const text = formatRunFile(file);
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(file)));
    expect(text.split('\n').filter((l) => l.includes('"index"'))).toHaveLength(2);
    expect(JSON.parse(formatRunFile({ ...file, images: [] })).images).toEqual([]);
  });
});
