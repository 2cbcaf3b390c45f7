/**
 * A real Redis on loopback for the integration tests: `REDIS_URL` if set, else the machine's own
 * on 127.0.0.1:6379 if it answers PING, else a `redis-server` spawned here (nothing on disk) and
 * killed by PID when the suite ends.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync } from "node:fs"
import { createConnection, createServer } from "node:net"

/** The binary tests spawn. */
export const redisServerBinary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].find((p) => existsSync(p))

/** A Redis the tests may use. */
export interface RedisServer {
  readonly url: string
  /** `true` when this process started it (so it may be stopped and restarted). */
  readonly spawned: boolean
  /** Stops a spawned server (SIGTERM to its PID, SIGKILL if it lingers); a no-op for one found running. */
  readonly stop: () => Promise<void>
  /** Starts a stopped spawned server again, on the same port. */
  readonly restart: () => Promise<void>
}

/** Whether a Redis answers PING at host:port within `timeoutMs`. */
export const answersPing = (host: string, port: number, timeoutMs = 500): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ host, port })
    let reply = ""
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.on("error", () => done(false))
    socket.on("connect", () => socket.write("PING\r\n"))
    socket.on("data", (chunk) => {
      reply += chunk.toString("utf8")
      if (reply.includes("\r\n")) done(reply.startsWith("+PONG"))
    })
  })

/** A TCP port nothing listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const waitFor = async (check: () => Promise<boolean>, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** Spawns a private `redis-server` on a free loopback port (no persistence). */
export const spawnRedis = async (): Promise<RedisServer> => {
  const binary = redisServerBinary
  if (binary === undefined) throw new Error("no redis-server binary on this machine")
  const port = await freePort()
  let child: ChildProcess | undefined
  const start = async () => {
    const c = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" })
    child = c
    const exited = new Promise<boolean>((resolve) => c.once("exit", () => resolve(false)))
    await Promise.race([
      waitFor(() => answersPing("127.0.0.1", port), 10_000, `redis-server on port ${port}`),
      exited.then(() => { throw new Error(`redis-server on port ${port} exited at start`) })
    ])
  }
  const stop = async () => {
    const c = child
    child = undefined
    if (c?.pid === undefined || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()))
    process.kill(c.pid, "SIGTERM")
    const timer = setTimeout(() => { if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, "SIGKILL") }, 3000)
    await exited
    clearTimeout(timer)
  }
  await start()
  return { url: `redis://127.0.0.1:${port}`, spawned: true, stop, restart: start }
}

/** `REDIS_URL`, else the machine's Redis on 6379, else a spawned one. */
export const findRedis = async (): Promise<RedisServer> => {
  const given = process.env["REDIS_URL"]
  const none = () => Promise.resolve()
  if (given !== undefined && given !== "") return { url: given, spawned: false, stop: none, restart: none }
  if (await answersPing("127.0.0.1", 6379)) return { url: "redis://127.0.0.1:6379", spawned: false, stop: none, restart: none }
  return spawnRedis()
}
