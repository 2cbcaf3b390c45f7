/** Token usage as providers report it. */
import { Schema } from "effect"

/** Tokens consumed by one model call. */
export const TokenUsage = Schema.Struct({
  input_tokens: Schema.NonNegativeInt,
  output_tokens: Schema.NonNegativeInt
})
export type TokenUsage = typeof TokenUsage.Type

/** No tokens. */
export const empty: TokenUsage = { input_tokens: 0, output_tokens: 0 }

/** Total of input and output tokens. */
export const total = (u: TokenUsage): number => u.input_tokens + u.output_tokens
