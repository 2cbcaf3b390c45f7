export * as BedrockProvider from "./BedrockProvider.js"
export { MockProvider } from "@tidyllm/corporate-llm"
