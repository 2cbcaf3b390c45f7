// The server as one bundle: `dist/bundle/main.js` (the entry) and its chunks, made from the compiled
// `dist/main.js` by esbuild after `tsc -b` (`pnpm build` runs both). This is what the image, `pnpm
// start` and the benchmarks run; `dist/main.js` stays a working, unbundled entry.
//
// Why: a bundle holds only the modules the server reaches (esbuild drops the rest of `effect`'s
// index, of `@effect/platform` and of the SDKs) and minified source, which V8 keeps in memory
// beside the bytecode. Importing the server takes ~101 MiB of RSS (27-30 MiB of live heap) instead
// of ~164 (51), and the heap's old generation, which V8 lets grow to a multiple of what is live,
// grows from a smaller base under load (docs/performance.md).
//
// - Code loaded only when configured (OpenTelemetry, Redis, S3) stays in chunks of its own,
//   imported on first use as before (`splitting`).
// - PGlite stays outside: it finds its WebAssembly and data files next to its own module.
// - CommonJS dependencies bundled into ESM need `require`, `__filename` and `__dirname`; the banner
//   defines them for every chunk.
// - The source maps chain to the TypeScript (`node --enable-source-maps`).
import { build } from "esbuild"
import { rmSync } from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const outdir = `${root}dist/bundle`
rmSync(outdir, { recursive: true, force: true })
const result = await build({
  absWorkingDir: root,
  entryPoints: ["dist/main.js"],
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Not `minifyIdentifiers` (names stay readable in stack traces and logs; +2 MiB of heap) and not
  // `keepNames`: it wraps every function made at run time in a call that sets its name, ~25 % more
  // CPU per request.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: "linked",
  external: ["@electric-sql/pglite", "pg-native"],
  banner: {
    js: [
      "import { createRequire as __tidyllmRequire } from \"node:module\";",
      "import { fileURLToPath as __tidyllmPath } from \"node:url\";",
      "const require = __tidyllmRequire(import.meta.url);",
      "const __filename = __tidyllmPath(import.meta.url);",
      "const __dirname = __tidyllmPath(new URL(\".\", import.meta.url));"
    ].join(" ")
  },
  logLevel: "warning",
  metafile: true
})
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0)
console.log(`bundle: dist/bundle/main.js and ${Object.keys(result.metafile.outputs).length - 1} more files, ${(bytes / 1048576).toFixed(1)} MiB`)
