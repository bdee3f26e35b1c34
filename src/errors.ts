// errors.ts: the one error class of the library and the one place where a native status
// becomes an exception. The native side's message (fsg_last_error) is read by a decoder that
// ffi.ts registers at load, so this module imports nothing and ffi.ts can throw our class.

/** Status codes of the C ABI (fused_swiglu.h, enum fsg_status). */
export const Status = {
  FSG_OK: 0,
  FSG_ERR_INVALID_ARGUMENT: 1,
  FSG_ERR_SHAPE: 2,
  FSG_ERR_DTYPE: 3,
  FSG_ERR_LAYOUT: 4,
  FSG_ERR_ALIAS: 5,
  FSG_ERR_DEVICE_MISMATCH: 6,
  FSG_ERR_TOO_LARGE: 7,
  FSG_ERR_NO_DEVICE: 8,
  FSG_ERR_OUT_OF_MEMORY: 9,
  FSG_ERR_CUDA: 10,
  FSG_ERR_NOT_READY: 11,
  FSG_ERR_INTERNAL: 12,
} as const;

export type StatusCode = keyof typeof Status;

const codeByStatus = new Map<number, StatusCode>(
  (Object.entries(Status) as [StatusCode, number][]).map(([k, v]) => [v, k]),
);

/** Name of a status number, e.g. 2 -> "FSG_ERR_SHAPE" ("FSG_STATUS_<n>" for unknown ones). */
export function statusName(status: number): string {
  return codeByStatus.get(status) ?? `FSG_STATUS_${status}`;
}

/** Every failure of the library, native or detected in TypeScript. */
export class FusedSwiGLUError extends Error {
  override readonly name = "FusedSwiGLUError";
  /** Symbolic status, e.g. "FSG_ERR_SHAPE". */
  readonly code: string;
  /** Numeric status (fsg_status). */
  readonly status: number;

  constructor(code: StatusCode | string, message: string, status?: number) {
    super(message);
    this.code = code;
    this.status = status ?? (Status as Record<string, number>)[code] ?? Status.FSG_ERR_INTERNAL;
  }
}

/** Throws a FusedSwiGLUError raised by the TypeScript layer itself. */
export function fail(code: StatusCode, message: string): never {
  throw new FusedSwiGLUError(code, message);
}

let lastErrorMessage: () => string = () => "";

/** Registered by ffi.ts once the library is loaded: reads fsg_last_error(). */
export function registerLastErrorSource(source: () => string): void {
  lastErrorMessage = source;
}

/** Converts a native status into an exception (FSG_OK returns normally). */
export function check(status: number, fnName: string): void {
  if (status === Status.FSG_OK) return;
  const code = statusName(status);
  const detail = lastErrorMessage();
  throw new FusedSwiGLUError(code, `${fnName} failed with ${code}: ${detail || "(no message)"}`, status);
}
