// args.ts: `--name value` flags of the small bench scripts (graph.ts, backward-small-m.ts), and the
// flag set shared by the option benches (options.ts, fp16-accumulation.ts).

/** The value after `--name` on the command line, or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

/** The flags of the option benches: timed shapes, the error-measurement shape, rounds, output. */
export interface OptionBenchArgs {
  shapes: string[];
  errorShape: string;
  rounds: number;
  iters: number;
  json: string | null;
  /** One tiny shape on the CPU backend, two rounds of two iterations (CI). */
  cpuSmoke: boolean;
}

/**
 * Parses argv over `defaults`: --shapes a,b --error-shape s --rounds n --iters n --json path
 * --cpu-smoke, plus the script's own flags in `extra` (flag -> setter of its value). Unknown
 * flags throw.
 */
export function parseOptionBenchArgs<T extends OptionBenchArgs>(
  argv: string[],
  defaults: T,
  extra: Record<string, (a: T, value: string) => void> = {},
): T {
  const a = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === "--cpu-smoke") {
      a.cpuSmoke = true;
      continue;
    }
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    switch (flag) {
      case "--shapes": a.shapes = value.split(","); break;
      case "--error-shape": a.errorShape = value; break;
      case "--rounds": a.rounds = Number(value); break;
      case "--iters": a.iters = Number(value); break;
      case "--json": a.json = value; break;
      default:
        if (!extra[flag]) throw new Error(`unknown flag ${flag}`);
        extra[flag]!(a, value);
    }
  }
  if (a.cpuSmoke) Object.assign(a, { shapes: ["16x64x96"], errorShape: "16x64x96", rounds: 2, iters: 2 });
  return a;
}
