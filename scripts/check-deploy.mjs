#!/usr/bin/env node
// Checks deploy/Dockerfile and deploy/k8s/ against the code, since neither Docker nor a cluster
// is at hand where the tests run:
//
//   node scripts/check-deploy.mjs              # the static checks (pnpm build first)
//   node scripts/check-deploy.mjs --simulate   # and runs the image's runtime tree, without Docker
//
// Static checks: every manifest parses; the probes, the HEALTHCHECK and the scrape annotation name
// GET routes of the server's API (`/health/live`, `/health/ready`, `/metrics`); ports agree
// (Dockerfile EXPOSE, containerPort, probes, Service targetPort, PORT); every environment
// variable the manifests set is one the config loader reads (`environmentOverrides`) or a known
// standard one; the ConfigMap's tidyllm.yaml passes the config schema with the Deployment's and
// the example Secret's environment; writable paths of that config are on a mounted volume when
// the root filesystem is read-only; terminationGracePeriodSeconds covers the preStop sleep and
// `server.shutdown_grace_seconds`; selectors match; the Dockerfile's pnpm is package.json's.
// `apps/server/test/Deploy.test.ts` runs them on the sources, so the manifests cannot drift
// from the routes or the config.
//
// --simulate assembles what the Dockerfile's runtime stage holds (package manifests, dist/,
// sql/, `pnpm install --prod --frozen-lockfile`, offline from the local store) in a temporary
// directory, runs `node apps/cli/dist/main.js migrate` and then `node apps/server/dist/bundle/main.js
// --no-migrate` from it (embedded PGlite, loopback, a free port), checks /health/live and
// /health/ready, stops the server by its PID with SIGTERM and removes the directory.
import { spawn, spawnSync } from "node:child_process"
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join, posix } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

export const root = join(dirname(fileURLToPath(import.meta.url)), "..")

/** Variables the manifests may set that are not config keys: read by the loader, Node or the AWS SDK. */
export const standardEnv = [
  "TIDYLLM_CONFIG", "NODE_ENV", "NODE_OPTIONS", "TZ",
  "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_STS_REGIONAL_ENDPOINTS",
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
]

/** Flags `apps/server/dist/bundle/main.js` understands. */
const serverFlags = ["--no-migrate", "--config", "-c"]

/** The names the CLI's sources give `Command.make` (its commands and subcommands). */
export const cliCommands = (base = root) => {
  const names = new Set()
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith(".ts")) for (const m of readFileSync(path, "utf8").matchAll(/Command\.make\(\s*"([\w-]+)"/g)) names.add(m[1])
    }
  }
  walk(join(base, "apps/cli/src"))
  return [...names].sort()
}

/** The manifests of `dir` (`deploy/k8s`), as `{ file, text }`, in name order. */
export const readManifests = (base = root) => {
  const dir = join(base, "deploy/k8s")
  return readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => ({ file: f, text: readFileSync(join(dir, f), "utf8") }))
}

/** The Dockerfile's instructions (continuations joined, comments dropped), by stage. */
export const parseDockerfile = (text) => {
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
  const stages = []
  const args = new Map()
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line)
    if (m === null) continue
    const [, op, rest] = m
    const instruction = op.toUpperCase()
    if (instruction === "FROM") {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(rest)
      stages.push({ image: from?.[1] ?? "", name: from?.[2] ?? String(stages.length), instructions: [] })
      continue
    }
    if (instruction === "ARG") {
      const a = /^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/.exec(rest)
      if (a !== null && a[2] !== undefined) args.set(a[1], a[2].replace(/^"|"$/g, ""))
    }
    if (stages.length === 0) { if (instruction === "ARG") continue; stages.push({ image: "", name: "(preamble)", instructions: [] }) }
    stages[stages.length - 1].instructions.push({ instruction, rest })
  }
  const expand = (s) => s.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (all, name) => args.get(name) ?? all)
  for (const s of stages) s.image = expand(s.image)
  return { stages, args }
}

const quantity = (q) => {
  if (q === undefined || q === null) return undefined
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(String(q))
  if (m === null) return undefined
  const units = { "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }
  return units[m[2]] === undefined ? undefined : Number(m[1]) * units[m[2]]
}

const isUnder = (path, dir) => {
  const p = posix.normalize(path)
  const d = posix.normalize(dir).replace(/\/$/, "")
  return p === d || p.startsWith(`${d}/`)
}

/**
 * Runs the static checks; returns the findings (empty when all is well) and what was checked.
 *
 * - `manifests`: `{ file, text }` of deploy/k8s; `dockerfile`, `dockerignore`: their text;
 * - `routes`: `{ method, path }` of the server's API; `overrides`: `environmentOverrides`;
 * - `resolveConfig(raw, env)`: the config loader's pure `resolve` (an `Either`);
 * - `packageManager`: package.json's field; `yaml`: the `yaml` package;
 * - `cliCommands`: the CLI's command names ({@link cliCommands}).
 */
export const checkDeploy = ({ manifests, dockerfile, dockerignore, routes, overrides, resolveConfig, packageManager, yaml, cliCommands: commands }) => {
  const findings = []
  const checked = []
  const fail = (where, message) => findings.push(`${where}: ${message}`)
  const getRoutes = new Set(routes.filter((r) => r.method === "GET").map((r) => r.path))
  const knownEnv = new Set([...overrides.map((o) => o.name), ...standardEnv])

  // --- parse
  const docs = []
  for (const { file, text } of manifests) {
    const parsed = yaml.parseAllDocuments(text)
    for (const d of parsed) {
      if (d.errors.length > 0) { fail(file, `invalid YAML: ${d.errors[0].message.split("\n")[0]}`); continue }
      const value = d.toJS()
      if (value === null || value === undefined) continue
      docs.push({ file, value })
      if (file === "kustomization.yaml") continue
      for (const k of ["apiVersion", "kind"]) if (typeof value[k] !== "string") fail(file, `no ${k}`)
      if (typeof value.metadata?.name !== "string") fail(file, "no metadata.name")
      if (value.metadata?.namespace !== undefined) fail(file, "sets metadata.namespace; the manifests are namespace-agnostic")
    }
  }
  const ofKind = (kind) => docs.filter((d) => d.value.kind === kind)
  const one = (kind) => {
    const all = ofKind(kind)
    if (all.length !== 1) fail("deploy/k8s", `expected one ${kind}, found ${all.length}`)
    return all[0]
  }
  const deployment = one("Deployment")
  const service = one("Service")
  const configMap = one("ConfigMap")
  const secret = one("Secret")
  const pdb = one("PodDisruptionBudget")
  const job = one("Job")
  const kustomization = docs.find((d) => d.file === "kustomization.yaml")
  if (deployment === undefined) return { findings, checked }

  // --- kustomization
  if (kustomization === undefined) fail("kustomization.yaml", "missing")
  else {
    const resources = kustomization.value.resources ?? []
    for (const r of resources) if (!manifests.some((m) => m.file === r)) fail("kustomization.yaml", `lists ${r}, which does not exist`)
    for (const d of [deployment, service, configMap, pdb]) {
      if (d !== undefined && !resources.includes(d.file)) fail("kustomization.yaml", `does not list ${d.file}`)
    }
    if (secret !== undefined && resources.includes(secret.file)) fail("kustomization.yaml", `lists ${secret.file}: an example with placeholder secrets`)
    const images = kustomization.value.images ?? []
    const image = deployment.value.spec?.template?.spec?.containers?.[0]?.image ?? ""
    for (const i of images) if (!image.startsWith(i.name)) fail("kustomization.yaml", `images: ${i.name} is not the Deployment's image ${image}`)
    checked.push("kustomization lists the manifests")
  }

  // --- Dockerfile
  const docker = parseDockerfile(dockerfile)
  const runtime = docker.stages[docker.stages.length - 1]
  const instr = (stage, name) => (stage?.instructions ?? []).filter((i) => i.instruction === name)
  const exposed = instr(runtime, "EXPOSE").flatMap((i) => i.rest.split(/\s+/)).map((p) => Number.parseInt(p, 10))
  const runtimeEnv = new Map()
  for (const i of instr(runtime, "ENV")) {
    for (const m of i.rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) runtimeEnv.set(m[1], m[2].replace(/^"|"$/g, ""))
  }
  if (!/^node:20[.-]/.test(runtime?.image ?? "") || !/bookworm-slim$/.test(runtime?.image ?? "")) fail("Dockerfile", `runtime image ${runtime?.image} is not node:20-bookworm-slim`)
  const pnpmVersion = docker.args.get("PNPM_VERSION")
  const wanted = /^pnpm@([^+]+)/.exec(packageManager ?? "")?.[1]
  if (wanted !== undefined && pnpmVersion !== wanted) fail("Dockerfile", `ARG PNPM_VERSION=${pnpmVersion}, but package.json's packageManager is pnpm@${wanted}`)
  const runs = docker.stages.flatMap((s) => instr(s, "RUN").map((i) => i.rest)).join("\n")
  if (!/pnpm install[^\n]*--frozen-lockfile/.test(runs)) fail("Dockerfile", "no `pnpm install --frozen-lockfile`")
  if (!/pnpm build/.test(runs)) fail("Dockerfile", "no `pnpm build`")
  if (!/pnpm install[^\n]*--prod/.test(runs)) fail("Dockerfile", "no production-only install for the runtime tree")
  if (!docker.stages.some((s) => instr(s, "COPY").some((i) => /(^|\s)\/app\/sql(\s|$)/.test(i.rest)))) fail("Dockerfile", "does not copy sql/ (migrations are read from disk)")
  const user = instr(runtime, "USER").at(-1)?.rest
  if (user === undefined || /^(root|0)(:|$)/.test(user)) fail("Dockerfile", "the runtime stage runs as root")
  const cmd = instr(runtime, "CMD").at(-1)?.rest
  const cmdArgs = cmd !== undefined && cmd.startsWith("[") ? JSON.parse(cmd) : undefined
  if (JSON.stringify(cmdArgs) !== JSON.stringify(["node", "apps/server/dist/bundle/main.js"])) fail("Dockerfile", `CMD is ${cmd}, not ["node", "apps/server/dist/bundle/main.js"]`)
  const health = instr(runtime, "HEALTHCHECK").at(-1)?.rest ?? ""
  const healthPath = /['"](\/[\w/.-]*)['"]/.exec(health)?.[1]
  if (healthPath !== "/health/live") fail("Dockerfile", `HEALTHCHECK probes ${healthPath ?? "nothing"}, not /health/live`)
  if (runtimeEnv.get("HOST") !== "0.0.0.0") fail("Dockerfile", "the runtime does not set HOST=0.0.0.0")
  for (const name of runtimeEnv.keys()) if (!knownEnv.has(name)) fail("Dockerfile", `ENV ${name} is neither read by the config loader nor a standard variable`)
  for (const pattern of ["node_modules", "**/dist", ".env"]) {
    if (!dockerignore.split(/\r?\n/).map((l) => l.trim()).includes(pattern)) fail(".dockerignore", `does not exclude ${pattern}`)
  }
  checked.push("Dockerfile: base image, pnpm version, install/build, sql/, non-root user, CMD, HEALTHCHECK, HOST")

  // --- the Deployment's pod
  const podSpec = deployment.value.spec?.template?.spec ?? {}
  const podLabels = deployment.value.spec?.template?.metadata?.labels ?? {}
  const container = podSpec.containers?.[0]
  if (container === undefined) { fail(deployment.file, "no container"); return { findings, checked } }
  const where = `${deployment.file} (${container.name})`
  const replicas = deployment.value.spec?.replicas ?? 1
  if (replicas < 2) fail(deployment.file, `replicas: ${replicas}; the point is several behind one Service`)
  const matchLabels = deployment.value.spec?.selector?.matchLabels ?? {}
  for (const [k, v] of Object.entries(matchLabels)) if (podLabels[k] !== v) fail(deployment.file, `selector ${k}=${v} does not match the pod's labels`)

  // Environment: literal values, the Secret's keys (envFrom / secretKeyRef), the ConfigMap's.
  const secretName = secret?.value.metadata?.name
  const secretData = { ...(secret?.value.stringData ?? {}), ...Object.fromEntries(Object.entries(secret?.value.data ?? {}).map(([k, v]) => [k, Buffer.from(String(v), "base64").toString("utf8")])) }
  const envOf = (c, file) => {
    const env = {}
    for (const e of c.env ?? []) {
      if (!knownEnv.has(e.name)) fail(file, `env ${e.name} is neither read by the config loader nor a standard variable`)
      if (e.value !== undefined) env[e.name] = String(e.value)
      const ref = e.valueFrom?.secretKeyRef
      if (ref !== undefined) {
        if (ref.name !== secretName) fail(file, `env ${e.name} reads Secret ${ref.name}, not ${secretName}`)
        else if (!(ref.key in secretData) && ref.optional !== true) fail(file, `env ${e.name} reads key ${ref.key}, which ${secret.file} lacks`)
        else if (ref.key in secretData) env[e.name] = secretData[ref.key]
      }
    }
    for (const from of c.envFrom ?? []) {
      if (from.secretRef !== undefined) {
        if (from.secretRef.name !== secretName) fail(file, `envFrom Secret ${from.secretRef.name}, not ${secretName}`)
        else for (const [k, v] of Object.entries(secretData)) env[k] ??= v
      }
      if (from.configMapRef !== undefined) fail(file, "envFrom a ConfigMap: put settings in tidyllm.yaml instead")
    }
    return env
  }
  for (const k of Object.keys(secretData)) if (!knownEnv.has(k)) fail(secret.file, `key ${k} becomes an environment variable nobody reads`)
  const env = envOf(container, where)
  for (const name of ["DATABASE_URL", "REDIS_URL", "TIDYLLM_ADMIN_KEY"]) if (!(name in secretData)) fail(secret.file, `no ${name}`)
  checked.push("environment variable names")

  // The config file: mounted from the ConfigMap at TIDYLLM_CONFIG, valid, and what it implies.
  const volumes = new Map((podSpec.volumes ?? []).map((v) => [v.name, v]))
  const mounts = container.volumeMounts ?? []
  let configText
  const configPath = env.TIDYLLM_CONFIG
  if (configPath === undefined) fail(where, "no TIDYLLM_CONFIG")
  else {
    for (const m of mounts) {
      const v = volumes.get(m.name)
      if (v === undefined) { fail(where, `mounts volume ${m.name}, which the pod lacks`); continue }
      if (v.configMap === undefined || !isUnder(configPath, m.mountPath)) continue
      if (v.configMap.name !== configMap?.value.metadata?.name) { fail(where, `volume ${m.name} is ConfigMap ${v.configMap.name}, not ${configMap?.value.metadata?.name}`); continue }
      const rel = m.subPath !== undefined ? "" : posix.relative(m.mountPath, configPath)
      const item = (v.configMap.items ?? []).find((i) => i.path === rel)
      const key = m.subPath ?? (v.configMap.items === undefined ? rel : item?.key)
      configText = key === undefined ? undefined : configMap.value.data?.[key]
      if (configText === undefined) fail(where, `TIDYLLM_CONFIG=${configPath} is no key of ConfigMap ${v.configMap.name}`)
    }
    if (configText === undefined && !findings.some((f) => f.includes("TIDYLLM_CONFIG"))) fail(where, `TIDYLLM_CONFIG=${configPath} is not on a mounted ConfigMap`)
  }
  let config
  if (configText !== undefined) {
    const doc = yaml.parseDocument(configText, { uniqueKeys: true })
    if (doc.errors.length > 0) fail(configMap.file, `tidyllm.yaml: ${doc.errors[0].message.split("\n")[0]}`)
    else {
      const resolved = resolveConfig(doc.toJS(), env)
      if (resolved._tag === "Left") fail(configMap.file, `tidyllm.yaml with the pod's environment: ${resolved.left.message}`)
      else config = resolved.right.config
    }
    checked.push("tidyllm.yaml passes the config schema with the pod's environment")
  }

  // Ports: container, PORT, config, Dockerfile EXPOSE, probes, Service, scrape annotation.
  const httpPort = (container.ports ?? []).find((p) => p.name === "http") ?? container.ports?.[0]
  const port = httpPort?.containerPort
  if (port === undefined) fail(where, "no containerPort")
  if (config !== undefined) {
    if (config.server.port !== port) fail(where, `the server listens on ${config.server.port} (config + env), the container port is ${port}`)
    if (!["0.0.0.0", "::"].includes(config.server.host)) fail(where, `server.host is ${config.server.host}: the Service cannot reach it`)
    if (config.server.admin_key === undefined) fail(where, "no bootstrap admin key (TIDYLLM_ADMIN_KEY): bound to 0.0.0.0 the server refuses to start on an empty key store")
    if (config.storage.database_url === undefined) fail(where, "no DATABASE_URL: replicas would each run their own embedded database")
    if (config.storage.s3 === undefined) fail(where, "no storage.s3: each replica would keep its own workflows")
    if (config.storage.cache !== "redis") fail(where, `storage.cache is ${config.storage.cache}: replicas would not share the response cache`)
  }
  if (port !== undefined && !exposed.includes(port)) fail("Dockerfile", `EXPOSE ${exposed.join(" ")} does not include the container port ${port}`)
  const portMatches = (p) => p === port || (httpPort?.name !== undefined && p === httpPort.name)
  const probes = { startupProbe: undefined, livenessProbe: "/health/live", readinessProbe: "/health/ready" }
  for (const [probe, expected] of Object.entries(probes)) {
    const get = container[probe]?.httpGet
    if (get === undefined) { fail(where, `no ${probe} (httpGet)`); continue }
    if (!getRoutes.has(get.path)) fail(where, `${probe} probes ${get.path}, which is no GET route of the server`)
    if (expected !== undefined && get.path !== expected) fail(where, `${probe} probes ${get.path}, not ${expected}`)
    if (!portMatches(get.port)) fail(where, `${probe} probes port ${get.port}, not the container's ${port}`)
  }
  const annotations = deployment.value.spec?.template?.metadata?.annotations ?? {}
  if (annotations["prometheus.io/scrape"] !== "true") fail(deployment.file, "pods lack prometheus.io/scrape: \"true\"")
  if (!getRoutes.has(annotations["prometheus.io/path"])) fail(deployment.file, `prometheus.io/path ${annotations["prometheus.io/path"]} is no GET route`)
  if (Number(annotations["prometheus.io/port"]) !== port) fail(deployment.file, `prometheus.io/port ${annotations["prometheus.io/port"]} is not the container port ${port}`)
  if (service !== undefined) {
    const selector = service.value.spec?.selector ?? {}
    if (Object.keys(selector).length === 0) fail(service.file, "no selector")
    for (const [k, v] of Object.entries(selector)) if (podLabels[k] !== v) fail(service.file, `selector ${k}=${v} matches no replica`)
    for (const p of service.value.spec?.ports ?? []) if (!portMatches(p.targetPort)) fail(service.file, `targetPort ${p.targetPort} is not the container port`)
  }
  if (pdb !== undefined) {
    for (const [k, v] of Object.entries(pdb.value.spec?.selector?.matchLabels ?? {})) if (podLabels[k] !== v) fail(pdb.file, `selector ${k}=${v} matches no replica`)
    const max = pdb.value.spec?.maxUnavailable
    const min = pdb.value.spec?.minAvailable
    if (typeof max === "number" && max >= replicas) fail(pdb.file, `maxUnavailable ${max} allows every replica down`)
    if (typeof min === "number" && min >= replicas) fail(pdb.file, `minAvailable ${min} blocks every drain with ${replicas} replicas`)
  }
  checked.push("probes, ports, scrape annotations, Service and PodDisruptionBudget selectors")

  // Arguments: only flags the server knows; no command that bypasses the image's CMD.
  for (const a of container.args ?? []) if (a.startsWith("-") && !serverFlags.includes(a.split("=")[0])) fail(where, `unknown server flag ${a}`)
  if (container.command !== undefined && JSON.stringify(container.command.slice(0, 2)) !== JSON.stringify(cmdArgs)) fail(where, `command ${JSON.stringify(container.command)} is not the image's CMD`)

  // Shutdown: the kubelet waits long enough for the preStop sleep and the server's grace.
  const grace = podSpec.terminationGracePeriodSeconds ?? 30
  const preStop = container.lifecycle?.preStop?.exec?.command
  const sleep = Array.isArray(preStop) && preStop[0] === "sleep" ? Number(preStop[1]) : 0
  const shutdownGrace = config?.server.shutdown_grace_seconds ?? 10
  if (grace < sleep + shutdownGrace + 5) fail(where, `terminationGracePeriodSeconds ${grace} < preStop ${sleep} s + server.shutdown_grace_seconds ${shutdownGrace} s + 5 s to drain`)
  checked.push("terminationGracePeriodSeconds covers preStop and server.shutdown_grace_seconds")

  // Resources and security.
  for (const r of ["cpu", "memory"]) {
    const req = quantity(container.resources?.requests?.[r])
    const lim = quantity(container.resources?.limits?.[r])
    if (req === undefined || lim === undefined) fail(where, `no ${r} request and limit`)
    else if (req > lim) fail(where, `${r} request above its limit`)
  }
  const sc = { ...(podSpec.securityContext ?? {}), ...(container.securityContext ?? {}) }
  if (sc.runAsNonRoot !== true) fail(where, "runAsNonRoot is not true")
  if (user !== undefined && sc.runAsUser !== undefined && String(sc.runAsUser) !== user.split(":")[0]) fail(where, `runAsUser ${sc.runAsUser} is not the image's USER ${user}`)
  if (sc.allowPrivilegeEscalation !== false) fail(where, "allowPrivilegeEscalation is not false")
  if (sc.readOnlyRootFilesystem === true) {
    const writable = mounts.filter((m) => m.readOnly !== true && volumes.get(m.name)?.configMap === undefined && volumes.get(m.name)?.secret === undefined).map((m) => m.mountPath)
    const needs = ["/tmp"]
    if (config !== undefined) {
      if (config.storage.database_url === undefined || config.storage.s3 === undefined) needs.push(config.storage.data_dir)
      if (config.storage.cache === "file") needs.push(config.ai_processing.cache_dir)
    }
    for (const path of needs) {
      const abs = path.startsWith("/") ? path : posix.join("/app", path)
      if (!writable.some((w) => isUnder(abs, w))) fail(where, `readOnlyRootFilesystem, but ${abs} is on no writable volume`)
    }
  }
  checked.push("resources, securityContext, writable paths")

  // The migration Job: the CLI of the same image, the same environment and config.
  if (job !== undefined) {
    const jc = job.value.spec?.template?.spec?.containers?.[0]
    if (jc === undefined) fail(job.file, "no container")
    else {
      if (jc.image !== container.image) fail(job.file, `image ${jc.image} is not the Deployment's ${container.image}`)
      const command = [...(jc.command ?? []), ...(jc.args ?? [])]
      if (command[0] !== "node" || command[1] !== "apps/cli/dist/main.js" || command[2] !== "migrate") fail(job.file, `runs ${JSON.stringify(command)}, not node apps/cli/dist/main.js migrate`)
      if (!commands.includes(command[2])) fail(job.file, `the CLI has no ${command[2]} command`)
      const jenv = envOf(jc, `${job.file} (${jc.name})`)
      if (jenv.TIDYLLM_CONFIG !== env.TIDYLLM_CONFIG) fail(job.file, "TIDYLLM_CONFIG differs from the Deployment's")
      if (jenv.DATABASE_URL === undefined) fail(job.file, "no DATABASE_URL")
      const jsc = { ...(job.value.spec?.template?.spec?.securityContext ?? {}), ...(jc.securityContext ?? {}) }
      if (jsc.runAsNonRoot !== true) fail(job.file, "runAsNonRoot is not true")
    }
    checked.push("migration Job")
  }
  return { findings, checked }
}

// ---------------------------------------------------------------------------------------------
// Command line

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer()
  s.once("error", reject)
  s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)) })
})

/** The Dockerfile's runtime tree in `dir`: manifests, dist/, sql/, production dependencies. */
export const assembleRuntimeTree = (dir, base = root) => {
  for (const f of ["package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml"]) cpSync(join(base, f), join(dir, f))
  cpSync(join(base, "sql"), join(dir, "sql"), { recursive: true })
  for (const group of ["packages", "apps"]) {
    for (const name of readdirSync(join(base, group)).sort()) {
      const pkg = join(base, group, name)
      if (!existsSync(join(pkg, "package.json"))) continue
      if (!existsSync(join(pkg, "dist"))) throw new Error(`${group}/${name}/dist is missing: run \`pnpm build\` first`)
      cpSync(join(pkg, "package.json"), join(dir, group, name, "package.json"))
      cpSync(join(pkg, "dist"), join(dir, group, name, "dist"), { recursive: true, filter: (src) => !src.endsWith(".tsbuildinfo") })
    }
  }
  const install = spawnSync("pnpm", ["install", "--prod", "--frozen-lockfile", "--offline", "--reporter=append-only"], {
    cwd: dir, encoding: "utf8", env: { ...process.env, CI: "true" }, timeout: 300_000
  })
  if (install.status !== 0) throw new Error(`pnpm install --prod --frozen-lockfile --offline failed:\n${(install.stdout + install.stderr).slice(-3000)}`)
}

/** Assembles the runtime tree, migrates with its CLI and serves from it until both health routes answer. */
const simulate = async () => {
  const dir = mkdtempSync(join(tmpdir(), "tidyllm-image-"))
  const data = join(dir, "data")
  const env = { ...process.env, NODE_ENV: "production", HOST: "127.0.0.1", TIDYLLM_DATA_DIR: data, TIDYLLM_CACHE_DIR: join(dir, "cache") }
  for (const k of ["DATABASE_URL", "TIDYLLM_CONFIG", "REDIS_URL", "S3_BUCKET", "TIDYLLM_ADMIN_KEY", "TIDYLLM_AUTH", "LLM_DEFAULT_PROVIDER"]) delete env[k]
  let child
  try {
    const t0 = Date.now()
    assembleRuntimeTree(dir)
    console.log(`simulate: runtime tree assembled in ${((Date.now() - t0) / 1000).toFixed(1)} s (pnpm install --prod --frozen-lockfile --offline)`)
    const migrate = spawnSync(process.execPath, ["apps/cli/dist/main.js", "migrate"], { cwd: dir, env, encoding: "utf8", timeout: 120_000 })
    if (migrate.status !== 0) throw new Error(`tidyllm migrate exited ${migrate.status}:\n${(migrate.stdout + migrate.stderr).slice(-3000)}`)
    console.log(`simulate: node apps/cli/dist/main.js migrate: ${migrate.stdout.trim().split("\n").at(-1)}`)
    const port = await freePort()
    child = spawn(process.execPath, ["apps/server/dist/bundle/main.js", "--no-migrate"], { cwd: dir, env: { ...env, PORT: String(port) }, stdio: ["ignore", "pipe", "pipe"] })
    let log = ""
    child.stdout.on("data", (d) => { log += d })
    child.stderr.on("data", (d) => { log += d })
    const base = `http://127.0.0.1:${port}`
    const started = Date.now()
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited (code ${child.exitCode})\n${log.slice(-3000)}`)
      try { if ((await fetch(`${base}/health/live`)).status === 200) break } catch { /* not listening yet */ }
      if (Date.now() - started > 60_000) throw new Error(`/health/live did not answer within 60 s\n${log.slice(-3000)}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    const ready = await fetch(`${base}/health/ready`)
    const body = await ready.text()
    if (ready.status !== 200) throw new Error(`/health/ready: ${ready.status} ${body}`)
    console.log(`simulate: node apps/server/dist/bundle/main.js --no-migrate: /health/live 200, /health/ready 200 ${body} after ${((Date.now() - started) / 1000).toFixed(1)} s`)
    const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })))
    process.kill(child.pid, "SIGTERM")
    const timer = setTimeout(() => { try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ } }, 20_000)
    const { code, signal } = await exited
    clearTimeout(timer)
    if (code !== 0) throw new Error(`after SIGTERM the server exited with ${code ?? signal}\n${log.slice(-3000)}`)
    console.log("simulate: SIGTERM → exit 0")
    return true
  } finally {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ }
    }
    rmSync(dir, { recursive: true, force: true })
  }
}

const main = async (args) => {
  for (const f of ["apps/server/dist/Api.js", "apps/server/dist/config/Load.js"]) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run \`pnpm build\` first`)
  }
  const { Api } = await import(pathToFileURL(join(root, "apps/server/dist/Api.js")).href)
  const Load = await import(pathToFileURL(join(root, "apps/server/dist/config/Load.js")).href)
  const yaml = createRequire(join(root, "apps/server/package.json"))("yaml")
  const { findings, checked } = checkDeploy({
    manifests: readManifests(root),
    dockerfile: readFileSync(join(root, "deploy/Dockerfile"), "utf8"),
    dockerignore: readFileSync(join(root, ".dockerignore"), "utf8"),
    routes: apiRoutes(Api),
    overrides: Load.environmentOverrides,
    resolveConfig: Load.resolve,
    packageManager: JSON.parse(readFileSync(join(root, "package.json"), "utf8")).packageManager,
    yaml,
    cliCommands: cliCommands(root)
  })
  for (const f of findings) console.log(f)
  console.log(findings.length > 0 ? `deploy: ${findings.length} finding(s)` : `deploy: ok (${checked.join("; ")})`)
  if (findings.length > 0) return 1
  if (args.includes("--simulate")) await simulate()
  return 0
}

/** `{ method, path }` of every endpoint of an `HttpApi`. */
export const apiRoutes = (api) =>
  Object.values(api.groups).flatMap((g) => Object.values(g.endpoints).map((e) => ({ method: e.method, path: e.path })))

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`deploy: ${e instanceof Error ? e.message : String(e)}`)
      process.exit(1)
    }
  )
}
