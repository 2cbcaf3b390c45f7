/** Request checks against the model catalog that the handlers make before calling a gateway. */
import { Effect, Option } from "effect"
import { Errors, type ModelCatalog } from "@tidyllm/core"

/**
 * Fails with `UnknownModel` (400) when `model` is not in the catalog at all. Gateway #2 would
 * otherwise try every backend and answer 502 `all_backends_failed` for what is a client error.
 */
export const ensureKnown = (catalog: ModelCatalog.Service, model: string | undefined): Effect.Effect<void, Errors.UnknownModel> =>
  model === undefined || Option.isSome(catalog.resolve(model))
    ? Effect.void
    : Effect.fail(new Errors.UnknownModel({ message: `model '${model}' is not in the model catalog (GET /v1/models lists them)`, model }))
