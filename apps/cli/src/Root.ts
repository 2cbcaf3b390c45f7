/**
 * The root command `tidyllm` and its global option `--config`, and how a subcommand gets the
 * loaded configuration and the services built from it (through the server's composition root;
 * the CLI chooses no adapters of its own).
 */
import { Command, Options } from "@effect/cli"
import { Effect, Layer, Option } from "effect"
import * as Layers from "@tidyllm/server/Layers"
import * as Load from "@tidyllm/server/config/Load"
import { CliEnvironment } from "./CliEnvironment.js"

/** `--config <file>` (`-c`): the YAML configuration; default `$TIDYLLM_CONFIG`, else `./tidyllm.yaml` when present. */
export const configOption = Options.text("config").pipe(
  Options.withAlias("c"),
  Options.withPseudoName("file"),
  Options.withDescription("configuration file (default: $TIDYLLM_CONFIG, else ./tidyllm.yaml when present)"),
  Options.optional
)

/** The root command; its subcommands read `--config` from it. */
export const root = Command.make("tidyllm", { config: configOption })

/** The configuration, loaded from `--config`, `.env` and the environment and validated. */
export const loadConfig = Effect.gen(function*() {
  const { config } = yield* root
  const environment = yield* CliEnvironment
  return yield* Load.load({ configPath: Option.getOrUndefined(config), env: environment.env, cwd: environment.cwd })
})

/** The full service layer (store, gateways #1 and #2) for a loaded configuration. */
export const services = (loaded: Load.Loaded, options: Omit<Layers.Options, "awsCredentials"> = {}): Layer.Layer<Layers.Services, Layers.BuildError> =>
  Layers.layer(loaded.config, { ...options, awsCredentials: loaded.awsCredentials })
