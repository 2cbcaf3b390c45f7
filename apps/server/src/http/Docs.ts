/**
 * `GET /docs`: Swagger UI over the contract at `/docs/openapi.json`, its script and stylesheet
 * served from the `swagger-ui-dist` package on disk, read when asked for.
 *
 * Not `HttpApiSwagger.layer` of `@effect/platform`: it holds Swagger UI's script (~1.7 M
 * characters) as a string constant, and builds the whole page with it and the contract at start-up.
 * With its module's source, that is ~7 MiB of live heap for a page that is seldom opened, and
 * under load V8 lets the old generation grow to a multiple of what is live (docs/performance.md).
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { readFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { Effect } from "effect"
import { title } from "../Api.js"

/** The routes served here, as `[method, path]`. */
export const routes: ReadonlyArray<readonly ["GET", string]> = [
  ["GET", "/docs"],
  ["GET", "/docs/openapi.json"],
  ["GET", "/docs/swagger-ui-bundle.js"],
  ["GET", "/docs/swagger-ui.css"]
]

const page = `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>${title} Documentation</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.onload = () => { window.ui = SwaggerUIBundle({ url: "/docs/openapi.json", dom_id: "#swagger-ui" }) }
  </script>
</body>
</html>`

const resolve = createRequire(import.meta.url).resolve

/** A file of `swagger-ui-dist`, read from disk at each request (the browser caches it for a day). */
const asset = (file: string, contentType: string) => {
  const path = resolve(`swagger-ui-dist/${file}`)
  return Effect.map(
    Effect.orDie(Effect.tryPromise(() => readFile(path))),
    (bytes) => HttpServerResponse.uint8Array(bytes, { contentType, headers: { "cache-control": "public, max-age=86400" } })
  )
}

/** The page and its assets on the API's router (`/docs/openapi.json` is `HttpApiBuilder.middlewareOpenApi`'s). */
export const layer = HttpApiBuilder.Router.use((router) =>
  Effect.all([
    router.get("/docs", Effect.sync(() => HttpServerResponse.html(page))),
    router.get("/docs/swagger-ui-bundle.js", asset("swagger-ui-bundle.js", "text/javascript; charset=utf-8")),
    router.get("/docs/swagger-ui.css", asset("swagger-ui.css", "text/css; charset=utf-8"))
  ], { discard: true })
)
