import { createHash } from "node:crypto"
import type { Config, LlmRequest } from "@tidyllm/core"

/** The prompt as the audit level allows it to be stored; `redact` masks PII at `redacted`. */
export const auditPrompt = (
  messages: ReadonlyArray<LlmRequest.ChatMessage>,
  level: Config.AuditLevel,
  redact: (text: string) => string
): string => {
  const text = messages.map((m) => {
    const calls = m.tool_calls === undefined ? "" : m.tool_calls.map((c) => ` [tool call ${c.function.name}(${c.function.arguments})]`).join("")
    return `${m.role}: ${m.content}${calls}`
  }).join("\n")
  switch (level) {
    case "full": return text
    case "redacted": return redact(text)
    case "hash": return `sha256:${createHash("sha256").update(text).digest("hex")}`
  }
}
