// loss.ts: softmax cross-entropy on the host, in float64: the mean loss over a batch of logits
// [rows, classes], the number of correct argmax predictions, and dL/dlogits = (softmax - onehot) / rows.

export interface LossResult {
  loss: number;
  correct: number;
  /** [rows, classes], float32; only when asked for. */
  dlogits: Float32Array | null;
}

export function softmaxCrossEntropy(logits: Float32Array, labels: Uint8Array, classes: number, withGrad: boolean): LossResult {
  const rows = labels.length;
  if (logits.length !== rows * classes) throw new Error(`softmaxCrossEntropy: ${logits.length} logits for ${rows} rows of ${classes}`);
  const dlogits = withGrad ? new Float32Array(rows * classes) : null;
  let loss = 0;
  let correct = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * classes;
    let max = -Infinity;
    let arg = 0;
    for (let c = 0; c < classes; c++) {
      if (logits[o + c]! > max) {
        max = logits[o + c]!;
        arg = c;
      }
    }
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[o + c]! - max);
    const label = labels[r]!;
    loss += Math.log(sum) - (logits[o + label]! - max);
    if (arg === label) correct++;
    if (dlogits) {
      for (let c = 0; c < classes; c++) dlogits[o + c] = (Math.exp(logits[o + c]! - max) / sum - (c === label ? 1 : 0)) / rows;
    }
  }
  return { loss: loss / Math.max(1, rows), correct, dlogits };
}
