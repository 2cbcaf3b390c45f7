// Types of scripts/config-reference.mjs, for the tests that call it.

/** The repository root. */
export declare const root: string
export declare const START: string
export declare const END: string

/** One source file the JSDoc is read from. */
export interface Source {
  readonly file: string
  readonly text: string
}

/** A `Schema.Struct({ … })` literal found in a source file. */
export interface ParsedStruct {
  readonly name: string
  readonly file: string
  readonly keys: ReadonlyArray<string>
  readonly docs: ReadonlyMap<string, string>
  readonly doc: string | undefined
}

export declare const parseSource: (text: string, file?: string) => {
  readonly structs: ReadonlyArray<ParsedStruct>
  readonly constDocs: ReadonlyMap<string, string>
}
export declare const readSources: (base?: string) => ReadonlyArray<Source>
export declare const typeText: (ast: unknown) => string

/** Generates the reference; throws when an override names a key the schema does not have. */
export declare const generate: (input: {
  /** The config module: `GatewayConfig` and the other exported schemas. */
  readonly config: { readonly GatewayConfig: unknown } & Readonly<Record<string, unknown>>
  readonly overrides: ReadonlyArray<{ readonly name: string; readonly path: ReadonlyArray<string> }>
  readonly sources: ReadonlyArray<Source>
}) => string

export declare const extract: (readme: string) => string | undefined
export declare const replace: (readme: string, reference: string) => string
export declare const diff: (current: string, expected: string, max?: number) => ReadonlyArray<string>
