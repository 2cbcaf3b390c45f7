import type { LlmRequest } from "@tidyllm/core"

const encoder = new TextEncoder()

/**
 * An upper bound of the input tokens of a conversation: BPE tokenizers emit at most one token
 * per UTF-8 byte, plus a few framing tokens per message. Reserving against this bound (not a
 * typical estimate) is what keeps a budget from ever being overshot.
 */
export const inputTokensUpperBound = (messages: ReadonlyArray<LlmRequest.ChatMessage>): number =>
  messages.reduce((n, m) => n + encoder.encode(m.content).length + 8, 16)

/** A typical estimate (≈ 4 characters a token), for context-window checks and the mock's usage. */
export const inputTokensTypical = (messages: ReadonlyArray<LlmRequest.ChatMessage>): number =>
  messages.reduce((n, m) => n + Math.ceil(m.content.length / 4) + 4, 3)
