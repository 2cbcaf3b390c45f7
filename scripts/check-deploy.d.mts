// Types of scripts/check-deploy.mjs, for the tests that call it.

/** The repository root. */
export declare const root: string
/** Variables the manifests may set that are not config keys. */
export declare const standardEnv: ReadonlyArray<string>

export interface Manifest {
  readonly file: string
  readonly text: string
}

export declare const readManifests: (base?: string) => ReadonlyArray<Manifest>
export declare const cliCommands: (base?: string) => ReadonlyArray<string>
export declare const apiRoutes: (api: unknown) => ReadonlyArray<{ readonly method: string; readonly path: string }>
export declare const parseDockerfile: (text: string) => {
  readonly stages: ReadonlyArray<{ readonly image: string; readonly name: string; readonly instructions: ReadonlyArray<{ readonly instruction: string; readonly rest: string }> }>
  readonly args: ReadonlyMap<string, string>
}
export declare const assembleRuntimeTree: (dir: string, base?: string) => void

/** The static checks of deploy/Dockerfile and deploy/k8s: findings (empty when all is well) and what was checked. */
export declare const checkDeploy: (input: {
  readonly manifests: ReadonlyArray<Manifest>
  readonly dockerfile: string
  readonly dockerignore: string
  readonly routes: ReadonlyArray<{ readonly method: string; readonly path: string }>
  readonly overrides: ReadonlyArray<{ readonly name: string; readonly path: ReadonlyArray<string> }>
  /** The config loader's pure `resolve` (an Effect `Either`). */
  readonly resolveConfig: (raw: unknown, env: Readonly<Record<string, string | undefined>>) => unknown
  readonly packageManager: string | undefined
  /** The `yaml` package. */
  readonly yaml: unknown
  readonly cliCommands: ReadonlyArray<string>
}) => { readonly findings: ReadonlyArray<string>; readonly checked: ReadonlyArray<string> }
