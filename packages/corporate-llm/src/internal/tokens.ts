import type { LlmRequest } from "@tidyllm/core"

const encoder = new TextEncoder()
const bytes = (s: string): number => encoder.encode(s).length

/** The parts of a call that the provider turns into input tokens besides the message texts. */
export interface Extras {
  readonly tools?: ReadonlyArray<LlmRequest.ToolDefinition> | undefined
  readonly response_format?: LlmRequest.ResponseFormat | undefined
}

const messageBytes = (m: LlmRequest.ChatMessage): number =>
  bytes(m.content) +
  (m.tool_calls === undefined ? 0 : bytes(JSON.stringify(m.tool_calls))) +
  (m.tool_call_id === undefined ? 0 : bytes(m.tool_call_id)) +
  (m.name === undefined ? 0 : bytes(m.name))

const extrasBytes = (extras: Extras | undefined): number =>
  (extras?.tools === undefined ? 0 : bytes(JSON.stringify(extras.tools)) + 16 * extras.tools.length) +
  (extras?.response_format === undefined ? 0 : bytes(JSON.stringify(extras.response_format)))

/**
 * An upper bound of the input tokens of a conversation: BPE tokenizers emit at most one token
 * per UTF-8 byte, plus a few framing tokens per message. Tool definitions, tool calls and a
 * response schema are sent to the model too and count the same way. Reserving against this
 * bound (not a typical estimate) is what keeps a budget from ever being overshot.
 */
export const inputTokensUpperBound = (messages: ReadonlyArray<LlmRequest.ChatMessage>, extras?: Extras): number =>
  messages.reduce((n, m) => n + messageBytes(m) + 8, 16) + extrasBytes(extras)

/** A typical estimate (≈ 4 characters a token), for context-window checks and the mock's usage. */
export const inputTokensTypical = (messages: ReadonlyArray<LlmRequest.ChatMessage>, extras?: Extras): number =>
  messages.reduce((n, m) => n + Math.ceil(messageBytes(m) / 4) + 4, 3) + Math.ceil(extrasBytes(extras) / 4)

/** An upper bound of the tokens of texts to embed. */
export const embeddingTokensUpperBound = (input: ReadonlyArray<string>): number =>
  input.reduce((n, s) => n + bytes(s) + 2, 0)
