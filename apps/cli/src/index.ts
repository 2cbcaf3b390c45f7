export * as Cli from "./Cli.js"
export * as CliEnvironment from "./CliEnvironment.js"
export * as CliError from "./CliError.js"
export * as Root from "./Root.js"
