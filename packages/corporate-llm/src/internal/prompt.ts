import { createHash } from "node:crypto"
import { Redaction } from "@tidyllm/core"
import type { Config, LlmRequest } from "@tidyllm/core"

/** The prompt as the audit level allows it to be stored. */
export const auditPrompt = (messages: ReadonlyArray<LlmRequest.ChatMessage>, level: Config.AuditLevel): string => {
  const text = messages.map((m) => `${m.role}: ${m.content}`).join("\n")
  switch (level) {
    case "full": return text
    case "redacted": return Redaction.redact(text)
    case "hash": return `sha256:${createHash("sha256").update(text).digest("hex")}`
  }
}
