/**
 * deploy/Dockerfile and deploy/k8s/ against the server (`scripts/check-deploy.mjs`): the probes
 * name real routes, the ports agree, every environment variable is one the loader reads, and the
 * ConfigMap's tidyllm.yaml passes the config schema. No Docker or cluster is needed; each check
 * is also shown to fail on a manifest broken on purpose.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import * as YAML from "yaml"
import * as Deploy from "../../../scripts/check-deploy.mjs"
import { Api } from "../src/Api.js"
import * as Load from "../src/config/Load.js"

const read = (file: string) => readFileSync(join(Deploy.root, file), "utf8")

const inputs = {
  manifests: Deploy.readManifests(Deploy.root),
  dockerfile: read("deploy/Dockerfile"),
  dockerignore: read(".dockerignore"),
  routes: Deploy.apiRoutes(Api),
  overrides: Load.environmentOverrides,
  resolveConfig: Load.resolve,
  packageManager: (JSON.parse(read("package.json")) as { packageManager?: string }).packageManager,
  yaml: YAML,
  cliCommands: Deploy.cliCommands(Deploy.root)
}

/** The findings after replacing `from` by `to` in one manifest (which must contain it). */
const findingsWith = (file: string, from: string | RegExp, to: string): ReadonlyArray<string> => {
  const manifests = inputs.manifests.map((m) => {
    if (m.file !== file) return m
    const text = m.text.replace(from, to)
    expect(text, `${file} does not contain ${String(from)}`).not.toBe(m.text)
    return { ...m, text }
  })
  return Deploy.checkDeploy({ ...inputs, manifests }).findings
}

describe("deployment manifests", () => {
  it("the Dockerfile and the Kubernetes manifests agree with the server's routes, ports and config", () => {
    const { findings, checked } = Deploy.checkDeploy(inputs)
    expect(findings).toEqual([])
    expect(checked.length).toBeGreaterThanOrEqual(8)
    expect(inputs.manifests.map((m) => m.file)).toEqual(
      ["configmap.yaml", "deployment.yaml", "kustomization.yaml", "migrate-job.yaml", "pdb.yaml", "secret.example.yaml", "service.yaml"]
    )
  })

  it("fails on a probe at a route the server does not have, or at the wrong health route", () => {
    expect(findingsWith("deployment.yaml", "path: /health/ready", "path: /healthz"))
      .toEqual(expect.arrayContaining([expect.stringMatching(/readinessProbe probes \/healthz, which is no GET route/)]))
    expect(findingsWith("deployment.yaml", /path: \/health\/live\n(\s+)port: http\n(\s+)periodSeconds: 10/, "path: /health/ready\n$1port: http\n$2periodSeconds: 10"))
      .toEqual([expect.stringMatching(/livenessProbe probes \/health\/ready, not \/health\/live/)])
    // A route renamed in the API breaks the manifests that name it.
    const routes = inputs.routes.filter((r) => r.path !== "/health/ready")
    expect(Deploy.checkDeploy({ ...inputs, routes }).findings).toEqual([expect.stringMatching(/readinessProbe probes \/health\/ready, which is no GET route/)])
  })

  it("fails on ports that disagree", () => {
    const findings = findingsWith("deployment.yaml", "containerPort: 8080", "containerPort: 9090")
    expect(findings).toEqual(expect.arrayContaining([
      expect.stringMatching(/the server listens on 8080 \(config \+ env\), the container port is 9090/),
      expect.stringMatching(/EXPOSE 8080 does not include the container port 9090/),
      expect.stringMatching(/prometheus.io\/port 8080 is not the container port 9090/)
    ]))
    expect(findingsWith("service.yaml", "targetPort: http", "targetPort: 8081")).toEqual([expect.stringMatching(/targetPort 8081/)])
  })

  it("fails on an environment variable the loader does not read, and on a config the schema refuses", () => {
    expect(findingsWith("deployment.yaml", "name: NODE_OPTIONS", "name: TIDYLLM_LOGLEVEL"))
      .toEqual([expect.stringMatching(/env TIDYLLM_LOGLEVEL is neither read by the config loader nor a standard variable/)])
    expect(findingsWith("secret.example.yaml", "REDIS_URL:", "REDIS_ADDR:")).toEqual(expect.arrayContaining([
      expect.stringMatching(/key REDIS_ADDR becomes an environment variable nobody reads/),
      expect.stringMatching(/no REDIS_URL/)
    ]))
    expect(findingsWith("configmap.yaml", "      shutdown_grace_seconds: 20", "      shutdown_grace_second: 20"))
      .toEqual([expect.stringMatching(/tidyllm.yaml with the pod's environment: .*server\.shutdown_grace_second/s)])
    expect(findingsWith("configmap.yaml", "      log_level: info", "      log_level: verbose"))
      .toEqual([expect.stringMatching(/observability\.log_level/)])
  })

  it("fails when the kubelet would kill a replica before its shutdown grace is over", () => {
    expect(findingsWith("deployment.yaml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 25"))
      .toEqual([expect.stringMatching(/terminationGracePeriodSeconds 25 < preStop 5 s \+ server.shutdown_grace_seconds 20 s \+ 5 s/)])
  })

  it("fails when a writable path of the config is on the read-only root filesystem", () => {
    expect(findingsWith("configmap.yaml", "data_dir: /tmp/tidyllm", "data_dir: /var/lib/tidyllm")).toEqual([])
    // Without S3 the workflows go to data_dir, which must then be writable (and replicas stop sharing them).
    expect(findingsWith("configmap.yaml", /\n {6}s3:\n(.*\n){3}/, "\n")).toEqual(expect.arrayContaining([
      expect.stringMatching(/no storage.s3/)
    ]))
    const noS3AndVarLib = inputs.manifests.map((m) =>
      m.file === "configmap.yaml" ? { ...m, text: m.text.replace(/\n {6}s3:\n(.*\n){3}/, "\n").replace("data_dir: /tmp/tidyllm", "data_dir: /var/lib/tidyllm") } : m
    )
    expect(Deploy.checkDeploy({ ...inputs, manifests: noS3AndVarLib }).findings)
      .toEqual(expect.arrayContaining([expect.stringMatching(/readOnlyRootFilesystem, but \/var\/lib\/tidyllm is on no writable volume/)]))
  })

  it("fails when the Dockerfile's pnpm is not package.json's, or its CMD or HEALTHCHECK moved", () => {
    const check = (dockerfile: string) => Deploy.checkDeploy({ ...inputs, dockerfile }).findings
    expect(check(inputs.dockerfile.replace(/ARG PNPM_VERSION=\S+/, "ARG PNPM_VERSION=9.0.0")))
      .toEqual([expect.stringMatching(/ARG PNPM_VERSION=9.0.0, but package.json's packageManager is pnpm@/)])
    expect(check(inputs.dockerfile.replace("'/health/live'", "'/healthz'"))).toEqual([expect.stringMatching(/HEALTHCHECK probes \/healthz/)])
    expect(check(inputs.dockerfile.replace("USER 1000:1000", "USER root"))).toEqual([
      expect.stringMatching(/the runtime stage runs as root/),
      expect.stringMatching(/runAsUser 1000 is not the image's USER root/)
    ])
  })

  it("fails when the migration Job runs a command the CLI does not have", () => {
    expect(findingsWith("migrate-job.yaml", "\"migrate\"]", "\"migrations\"]")).toEqual([
      expect.stringMatching(/runs \["node","apps\/cli\/dist\/main.js","migrations"\], not node apps\/cli\/dist\/main.js migrate/),
      expect.stringMatching(/the CLI has no migrations command/)
    ])
  })
})
