/** Translation between the OpenAI wire format and the gateways' requests and responses. */
import { Either } from "effect"
import { Errors, type LlmRequest } from "@tidyllm/core"
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionUsage } from "./Api.js"

const invalid = (message: string, field: string) => Either.left(new Errors.InvalidRequest({ message, field }))

/** Refuses the OpenAI features whose absence would silently change the answer. */
const unsupported = (body: ChatCompletionRequest): Either.Either<void, Errors.InvalidRequest> => {
  if (body.n != null && body.n !== 1) return invalid(`n = ${body.n} is not supported: the gateway returns one choice per request`, "n")
  if (body.functions != null && body.functions.length > 0) return invalid("the legacy 'functions' field is not supported: send 'tools'", "functions")
  if (body.function_call != null && body.function_call !== "none" && body.function_call !== "auto") {
    return invalid("the legacy 'function_call' field is not supported: send 'tool_choice'", "function_call")
  }
  if (body.logprobs === true) return invalid("'logprobs' is not supported by this gateway", "logprobs")
  if (body.modalities != null && body.modalities.some((m) => m !== "text")) return invalid("only the 'text' modality is supported", "modalities")
  if (body.audio != null) return invalid("audio output is not supported", "audio")
  return Either.void
}

/** The messages as gateway messages: text parts only, `developer` as `system`, tool calls and results kept. */
const messagesOf = (body: ChatCompletionRequest): Either.Either<Array<LlmRequest.ChatMessage>, Errors.InvalidRequest> => {
  const out: Array<LlmRequest.ChatMessage> = []
  for (const [i, m] of body.messages.entries()) {
    if (m.role === "function") {
      return invalid(`messages[${i}]: the legacy role 'function' is not supported: send role 'tool' with 'tool_call_id'`, `messages[${i}].role`)
    }
    if (m.tool_calls != null && m.tool_calls.length > 0 && m.role !== "assistant") {
      return invalid(`messages[${i}]: only 'assistant' messages carry 'tool_calls'`, `messages[${i}].tool_calls`)
    }
    if (m.role === "tool" && m.tool_call_id === undefined) {
      return invalid(`messages[${i}]: a 'tool' message needs the 'tool_call_id' of the call it answers`, `messages[${i}].tool_call_id`)
    }
    const role = m.role === "developer" ? "system" : m.role
    let content: string
    if (m.content == null) {
      if (role !== "assistant") return invalid(`messages[${i}].content is required for role '${m.role}'`, `messages[${i}].content`)
      content = ""
    } else if (typeof m.content === "string") {
      content = m.content
    } else {
      const texts: Array<string> = []
      for (const [j, part] of m.content.entries()) {
        if (part.type !== "text") {
          return invalid(`messages[${i}].content[${j}]: content parts of type '${part.type}' are not supported (only 'text')`, `messages[${i}].content[${j}].type`)
        }
        if (part.text === undefined) return invalid(`messages[${i}].content[${j}].text is required`, `messages[${i}].content[${j}].text`)
        texts.push(part.text)
      }
      content = texts.join("")
    }
    out.push({
      role,
      content,
      ...(m.tool_calls == null || m.tool_calls.length === 0 ? {} : { tool_calls: m.tool_calls }),
      ...(m.role === "tool" && m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
      ...(m.name === undefined || m.name === "" ? {} : { name: m.name })
    })
  }
  return Either.right(out)
}

/** The reason given in `metadata.reason`, if it is a string. */
const reasonOf = (body: ChatCompletionRequest): Either.Either<string | undefined, Errors.InvalidRequest> => {
  const reason = body.metadata?.["reason"]
  if (reason === undefined || reason === null) return Either.right(undefined)
  return typeof reason === "string" ? Either.right(reason) : invalid("metadata.reason must be a string", "metadata.reason")
}

/** The gateway #2 request for an OpenAI chat completion request (backend `auto`). */
export const toAiRequest = (body: ChatCompletionRequest): Either.Either<LlmRequest.AIRequest, Errors.InvalidRequest> =>
  Either.gen(function*() {
    yield* unsupported(body)
    const messages = yield* messagesOf(body)
    const reason = yield* reasonOf(body)
    const max_tokens = body.max_completion_tokens ?? body.max_tokens ?? undefined
    const stop = body.stop == null ? undefined : typeof body.stop === "string" ? [body.stop] : body.stop
    const request: LlmRequest.AIRequest = {
      model: body.model,
      messages,
      backend: "auto",
      ...(max_tokens === undefined ? {} : { max_tokens }),
      ...(body.temperature == null ? {} : { temperature: body.temperature }),
      ...(body.top_p == null ? {} : { top_p: body.top_p }),
      ...(stop === undefined || stop.length === 0 ? {} : { stop }),
      ...(body.tools == null || body.tools.length === 0 ? {} : { tools: body.tools }),
      ...(body.tool_choice == null || body.tools == null || body.tools.length === 0 ? {} : { tool_choice: body.tool_choice }),
      ...(body.response_format == null || body.response_format.type === "text" ? {} : { response_format: body.response_format }),
      ...(body.seed == null ? {} : { seed: body.seed }),
      ...(reason === undefined ? {} : { reason }),
      ...(body.user === undefined ? {} : { user_id: body.user }),
      ...(body.metadata == null ? {} : { metadata: body.metadata })
    }
    return request
  })

/** OpenAI's finish reasons for the providers' (`end_turn`, `max_tokens`, …). */
export const finishReason = (reason: string): string => {
  switch (reason) {
    case "length": case "max_tokens": case "model_context_window_exceeded": return "length"
    case "content_filter": case "content_filtered": case "guardrail_intervened": return "content_filter"
    case "tool_calls": case "tool_use": return "tool_calls"
    default: return "stop"
  }
}

/** OpenAI usage for gateway usage. */
export const usageOf = (u: { readonly input_tokens: number; readonly output_tokens: number }): CompletionUsage => ({
  prompt_tokens: u.input_tokens,
  completion_tokens: u.output_tokens,
  total_tokens: u.input_tokens + u.output_tokens
})

/** A completion id (`chatcmpl-…`). */
export const completionId = (seed: string): string => `chatcmpl-${seed.replace(/-/g, "")}`

/** The OpenAI `chat.completion` for a gateway response. */
export const toChatCompletion = (response: LlmRequest.LLMResponse, created: number): ChatCompletion => {
  const data = response.data
  return {
    id: completionId(response.metadata.audit_id),
    object: "chat.completion",
    created,
    model: response.metadata.model,
    choices: [{
      index: 0,
      message: {
        role: "assistant",
        content: data?.tool_calls !== undefined && data.response === "" ? null : data?.response ?? "",
        refusal: null,
        ...(data?.tool_calls === undefined ? {} : { tool_calls: data.tool_calls })
      },
      finish_reason: finishReason(data?.finish_reason ?? "stop"),
      logprobs: null
    }],
    usage: usageOf(data?.usage ?? { input_tokens: 0, output_tokens: 0 }),
    system_fingerprint: null,
    tidyllm: response.metadata
  }
}

/** What every chunk of one stream shares. */
export interface ChunkHeader {
  readonly id: string
  readonly created: number
  readonly model: string
  /** `stream_options.include_usage`: every chunk carries `usage: null`, and a usage chunk comes last. */
  readonly includeUsage: boolean
}

const chunk = (h: ChunkHeader, choices: ChatCompletionChunk["choices"], extra: Partial<ChatCompletionChunk> = {}): ChatCompletionChunk => ({
  id: h.id,
  object: "chat.completion.chunk",
  created: h.created,
  model: h.model,
  choices,
  system_fingerprint: null,
  ...(h.includeUsage ? { usage: null } : {}),
  ...extra
})

/** The first chunk: the assistant role. */
export const roleChunk = (h: ChunkHeader) => chunk(h, [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null, logprobs: null }])

/** A piece of text. */
export const deltaChunk = (h: ChunkHeader, text: string) => chunk(h, [{ index: 0, delta: { content: text }, finish_reason: null, logprobs: null }])

/** A piece of a tool call (OpenAI's delta shape: id, type and name on a call's first piece). */
export const toolCallChunk = (
  h: ChunkHeader,
  d: { readonly index: number; readonly id?: string | undefined; readonly name?: string | undefined; readonly arguments: string }
) =>
  chunk(h, [{
    index: 0,
    delta: {
      tool_calls: [{
        index: d.index,
        ...(d.id === undefined ? {} : { id: d.id, type: "function" as const }),
        function: { ...(d.name === undefined ? {} : { name: d.name }), arguments: d.arguments }
      }]
    },
    finish_reason: null,
    logprobs: null
  }])

/**
 * The closing chunks: `finish_reason` with the gateway metadata (and the usage, unless a separate
 * usage chunk follows as `include_usage` asks).
 */
export const finalChunks = (h: ChunkHeader, response: LlmRequest.LLMResponse): ReadonlyArray<ChatCompletionChunk> => {
  const usage = usageOf(response.data?.usage ?? { input_tokens: 0, output_tokens: 0 })
  const finish = chunk(h, [{ index: 0, delta: {}, finish_reason: finishReason(response.data?.finish_reason ?? "stop"), logprobs: null }], {
    tidyllm: response.metadata,
    ...(h.includeUsage ? {} : { usage })
  })
  return h.includeUsage ? [finish, chunk(h, [], { usage })] : [finish]
}
